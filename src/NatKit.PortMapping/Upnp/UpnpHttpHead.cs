using System.Globalization;
using System.Text;

namespace NatKit.PortMapping.Upnp;

/// <summary>
/// The head of an HTTP/1.x message as UPnP uses it: over TCP for the description and SOAP control, over UDP (HTTPU)
/// for SSDP. Parsed from untrusted bytes with hard limits, never throwing; lines may end in CRLF or a bare LF (some
/// devices send those), header names are case-insensitive, the first of a repeated header counts except for
/// Content-Length, where disagreeing copies make the message invalid.
/// </summary>
public sealed class UpnpHttpHead
{
    /// <summary>The most bytes a head may take, blank line included.</summary>
    public const int MaxHeadBytes = 8 * 1024;

    /// <summary>The most header fields a head may carry.</summary>
    public const int MaxFields = 64;

    private readonly List<KeyValuePair<string, string>> _fields;

    private UpnpHttpHead(string? method, string? target, int status, string? reason, string version,
        List<KeyValuePair<string, string>> fields, int length)
    {
        Method = method;
        Target = target;
        StatusCode = status;
        Reason = reason;
        Version = version;
        _fields = fields;
        Length = length;
    }

    /// <summary>A request's method (M-SEARCH, NOTIFY, GET, POST), or null for a response.</summary>
    public string? Method { get; }

    /// <summary>A request's target (<c>*</c> for SSDP, a path for HTTP), or null for a response.</summary>
    public string? Target { get; }

    /// <summary>A response's status code, or 0 for a request.</summary>
    public int StatusCode { get; }

    /// <summary>A response's reason phrase.</summary>
    public string? Reason { get; }

    /// <summary>"HTTP/1.1" or "HTTP/1.0".</summary>
    public string Version { get; }

    /// <summary>Bytes the head took, the blank line included: the body starts there.</summary>
    public int Length { get; }

    /// <summary>True for a request.</summary>
    public bool IsRequest => Method is not null;

    /// <summary>The header fields in order, names as sent.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Fields => _fields;

    /// <summary>The first value of a header (case-insensitive name), trimmed; null when absent.</summary>
    public string? this[string name]
    {
        get
        {
            foreach (var f in _fields)
            {
                if (string.Equals(f.Key, name, StringComparison.OrdinalIgnoreCase))
                {
                    return f.Value;
                }
            }

            return null;
        }
    }

    /// <summary>The Content-Length, or -1 when absent.</summary>
    public long ContentLength { get; private init; } = -1;

    /// <summary>True when the body is chunked (Transfer-Encoding: chunked).</summary>
    public bool IsChunked { get; private init; }

    /// <summary>
    /// Finds the end of a head in <paramref name="bytes"/>: the index just past the blank line, or -1 when it is not
    /// all there yet (or -2 when it is already longer than <see cref="MaxHeadBytes"/>).
    /// </summary>
    public static int FindEnd(ReadOnlySpan<byte> bytes)
    {
        var limit = Math.Min(bytes.Length, MaxHeadBytes);
        for (var i = 0; i < limit; i++)
        {
            if (bytes[i] != (byte)'\n')
            {
                continue;
            }

            if (i + 1 < bytes.Length && bytes[i + 1] == (byte)'\n')
            {
                return i + 2;
            }

            if (i + 2 < bytes.Length && bytes[i + 1] == (byte)'\r' && bytes[i + 2] == (byte)'\n')
            {
                return i + 3;
            }
        }

        return bytes.Length >= MaxHeadBytes ? -2 : -1;
    }

    /// <summary>Parses a head from the start of <paramref name="bytes"/> (an SSDP datagram, or what a TCP
    /// connection has delivered so far). False for anything malformed, incomplete or over the limits.</summary>
    public static bool TryParse(ReadOnlySpan<byte> bytes, out UpnpHttpHead head)
    {
        head = null!;
        var end = FindEnd(bytes);
        if (end < 0)
        {
            // A datagram may lack the final blank line: SSDP senders are sloppy. Accept a head that is the whole
            // datagram, if it ends with a line end.
            if (bytes.Length == 0 || bytes.Length > MaxHeadBytes || bytes[^1] != (byte)'\n')
            {
                return false;
            }

            end = bytes.Length;
        }

        var text = Encoding.Latin1.GetString(bytes[..end]);
        var lines = text.Split('\n');
        var first = Trim(lines[0]);
        if (first.Length == 0)
        {
            return false;
        }

        string? method = null, target = null, reason = null, version;
        var status = 0;
        if (first.StartsWith("HTTP/", StringComparison.Ordinal))
        {
            var parts = first.Split(' ', 3);
            if (parts.Length < 2 || !IsVersion(parts[0]) || parts[1].Length != 3 ||
                !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out status) || status < 100)
            {
                return false;
            }

            version = parts[0];
            reason = parts.Length == 3 ? parts[2] : "";
        }
        else
        {
            var parts = first.Split(' ');
            if (parts.Length != 3 || !IsToken(parts[0]) || parts[1].Length == 0 || !IsVersion(parts[2]))
            {
                return false;
            }

            method = parts[0];
            target = parts[1];
            version = parts[2];
        }

        var fields = new List<KeyValuePair<string, string>>();
        long contentLength = -1;
        var chunked = false;
        for (var i = 1; i < lines.Length; i++)
        {
            var line = Trim(lines[i]);
            if (line.Length == 0)
            {
                break;
            }

            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0 || fields.Count >= MaxFields)
            {
                return false;
            }

            var name = line[..colon];
            if (!IsToken(name))
            {
                return false;
            }

            var value = line[(colon + 1)..].Trim(' ', '\t');
            if (value.AsSpan().IndexOfAnyInRange('\0', '\x08') >= 0 || value.Contains('\r', StringComparison.Ordinal))
            {
                return false;
            }

            if (name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase))
            {
                if (!long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ||
                    (contentLength >= 0 && n != contentLength))
                {
                    return false;
                }

                contentLength = n;
            }
            else if (name.Equals("Transfer-Encoding", StringComparison.OrdinalIgnoreCase))
            {
                if (!value.Equals("chunked", StringComparison.OrdinalIgnoreCase))
                {
                    return false;
                }

                chunked = true;
            }

            fields.Add(new(name, value));
        }

        head = new UpnpHttpHead(method, target, status, reason, version, fields, end)
        {
            ContentLength = chunked ? -1 : contentLength,
            IsChunked = chunked,
        };
        return true;
    }

    /// <summary>The value of <c>max-age=N</c> in a Cache-Control header, or null.</summary>
    public int? MaxAge
    {
        get
        {
            var value = this["CACHE-CONTROL"];
            if (value is null)
            {
                return null;
            }

            foreach (var part in value.Split(','))
            {
                var p = part.Trim();
                var eq = p.IndexOf('=', StringComparison.Ordinal);
                if (eq > 0 && p[..eq].Trim().Equals("max-age", StringComparison.OrdinalIgnoreCase) &&
                    int.TryParse(p[(eq + 1)..].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var age))
                {
                    return age;
                }
            }

            return null;
        }
    }

    private static string Trim(string line) => line.EndsWith('\r') ? line[..^1] : line;

    private static bool IsVersion(string s) => s is "HTTP/1.1" or "HTTP/1.0";

    /// <summary>RFC 9110 tchar.</summary>
    private static bool IsToken(string s)
    {
        if (s.Length == 0)
        {
            return false;
        }

        foreach (var c in s)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || "!#$%&'*+-.^_`|~".Contains(c, StringComparison.Ordinal)))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Writes a head: the start line, the fields, the blank line (CRLF throughout).</summary>
    public static string Format(string startLine, IEnumerable<KeyValuePair<string, string>> fields)
    {
        ArgumentNullException.ThrowIfNull(startLine);
        ArgumentNullException.ThrowIfNull(fields);
        var b = new StringBuilder(256);
        b.Append(startLine).Append("\r\n");
        foreach (var (name, value) in fields)
        {
            if (name.AsSpan().IndexOfAny('\r', '\n') >= 0 || value.AsSpan().IndexOfAny('\r', '\n') >= 0)
            {
                throw new ArgumentException($"header {name}: a line break in a header would split the message");
            }

            b.Append(name).Append(": ").Append(value).Append("\r\n");
        }

        return b.Append("\r\n").ToString();
    }
}
