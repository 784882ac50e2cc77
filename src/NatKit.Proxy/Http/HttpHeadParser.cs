using System.Buffers;
using System.Collections.Frozen;
using System.Text;

namespace NatKit.Proxy.Http;

/// <summary>The outcome of parsing a head, as the status code the proxy answers with.</summary>
internal enum HeadResult
{
    Ok = 0,
    BadRequest = 400,
    HeaderTooLarge = 431,
    NotImplemented = 501,
    VersionNotSupported = 505,
}

/// <summary>
/// Parses request and response heads (RFC 9112 sections 2-6) from untrusted bytes. Strict where leniency lets
/// two parsers disagree about where a message ends (request smuggling): bare CR or LF, obs-fold, whitespace
/// before the colon, Content-Length with Transfer-Encoding, duplicate or malformed Content-Length, codings
/// other than chunked. Never throws; allocates nothing.
/// </summary>
internal static class HttpHeadParser
{
    /// <summary>RFC 9110 5.6.2 tchar.</summary>
    private static readonly SearchValues<byte> NotTchar = SearchValues.Create(BuildNotTchar());

    /// <summary>Bytes never allowed in a field value: CTL except HTAB, and DEL (RFC 9110 5.5).</summary>
    private static readonly SearchValues<byte> BadValueByte = SearchValues.Create(BuildBadValue());

    /// <summary>Bytes never allowed in a request-target: CTL, SP, DEL and non-ASCII.</summary>
    private static readonly SearchValues<byte> BadTargetByte = SearchValues.Create(BuildBadTarget());

    private static readonly FrozenDictionary<string, FieldKind> Kinds = new Dictionary<string, FieldKind>(
        StringComparer.OrdinalIgnoreCase)
    {
        ["host"] = FieldKind.Host,
        ["content-length"] = FieldKind.ContentLength,
        ["transfer-encoding"] = FieldKind.TransferEncoding,
        ["connection"] = FieldKind.Connection,
        ["proxy-connection"] = FieldKind.ProxyConnection,
        ["keep-alive"] = FieldKind.KeepAlive,
        ["te"] = FieldKind.TE,
        ["trailer"] = FieldKind.Trailer,
        ["upgrade"] = FieldKind.Upgrade,
        ["proxy-authorization"] = FieldKind.ProxyAuthorization,
        ["proxy-authenticate"] = FieldKind.ProxyAuthenticate,
        ["expect"] = FieldKind.Expect,
    }.ToFrozenDictionary(StringComparer.OrdinalIgnoreCase);

    private static readonly FrozenDictionary<string, FieldKind>.AlternateLookup<ReadOnlySpan<char>> KindLookup =
        Kinds.GetAlternateLookup<ReadOnlySpan<char>>();

    /// <summary>Parses a request head: the bytes up to and including the blank line.</summary>
    public static HeadResult ParseRequest(ReadOnlySpan<byte> head, HttpHead result)
    {
        result.Reset();
        var lineEnd = NextLine(head, 0, out var line, result);
        if (lineEnd < 0)
        {
            return HeadResult.BadRequest;
        }

        var r = ParseRequestLine(line, result);
        if (r != HeadResult.Ok)
        {
            return r;
        }

        r = ParseFields(head, lineEnd, result, isRequest: true);
        if (r != HeadResult.Ok)
        {
            return r;
        }

        if (result.HasTransferEncoding && result.HasContentLength)
        {
            return Fail(result, "Content-Length with Transfer-Encoding");
        }

        if (result.HasTransferEncoding && result.VersionMinor == 0)
        {
            return Fail(result, "Transfer-Encoding in an HTTP/1.0 request");
        }

        if (result.HasTransferEncoding && !result.Chunked)
        {
            return Fail(result, "Transfer-Encoding without a final chunked");
        }

        if (result.VersionMinor == 1 && result.HostCount != 1)
        {
            return Fail(result, result.HostCount == 0 ? "missing Host" : "more than one Host");
        }

        if (result.HostCount > 1)
        {
            return Fail(result, "more than one Host");
        }

        return HeadResult.Ok;
    }

    /// <summary>Parses a response head. Errors are reported as <see cref="HeadResult.BadRequest"/>; the proxy
    /// turns them into 502.</summary>
    public static HeadResult ParseResponse(ReadOnlySpan<byte> head, HttpHead result)
    {
        result.Reset();
        var lineEnd = NextLine(head, 0, out var line, result);
        if (lineEnd < 0)
        {
            return HeadResult.BadRequest;
        }

        // HTTP-version SP 3DIGIT SP [ reason-phrase ]
        if (line.Length < 12 || !line.StartsWith("HTTP/1."u8) || (line[7] != (byte)'0' && line[7] != (byte)'1') ||
            line[8] != (byte)' ' || !IsDigit(line[9]) || !IsDigit(line[10]) || !IsDigit(line[11]) ||
            (line.Length > 12 && line[12] != (byte)' '))
        {
            return Fail(result, "bad status line");
        }

        result.VersionMinor = line[7] - '0';
        result.StatusCode = ((line[9] - '0') * 100) + ((line[10] - '0') * 10) + (line[11] - '0');
        if (result.StatusCode < 100)
        {
            return Fail(result, "bad status code");
        }

        result.Reason = line.Length > 13 ? new Segment(13, line.Length - 13) : default;
        if (line.Length > 13 && line[13..].IndexOfAny(BadValueByte) >= 0)
        {
            return Fail(result, "bad reason phrase");
        }

        var r = ParseFields(head, lineEnd, result, isRequest: false);
        if (r != HeadResult.Ok)
        {
            return r;
        }

        if (result.HasTransferEncoding && !result.Chunked)
        {
            return Fail(result, "unsupported transfer coding");
        }

        return HeadResult.Ok;
    }

    /// <summary>Finds the end of a head (after the blank line) in <paramref name="buffered"/>, or -1.</summary>
    public static int FindHeadEnd(ReadOnlySpan<byte> buffered) =>
        buffered.IndexOf("\r\n\r\n"u8) is var i and >= 0 ? i + 4 : -1;

    /// <summary>
    /// <see cref="FindHeadEnd(ReadOnlySpan{byte})"/> for a head that arrives in pieces: looks only from where the
    /// last call stopped (<paramref name="scanned"/>, less the 3 bytes a blank line may straddle) and sets
    /// <paramref name="scanned"/> to what has now been looked at, so each byte is searched about once.
    /// </summary>
    public static int FindHeadEnd(ReadOnlySpan<byte> buffered, ref int scanned)
    {
        var from = Math.Max(0, scanned - 3);
        var end = FindHeadEnd(buffered[from..]);
        scanned = buffered.Length;
        return end > 0 ? from + end : -1;
    }

    /// <summary>
    /// Parses a chunk-size line (without its CRLF): 1*HEXDIG [ chunk-ext ] (RFC 9112 7.1). Sizes that overflow,
    /// missing digits, whitespace before the size and control bytes in extensions are refused.
    /// </summary>
    public static bool TryParseChunkSize(ReadOnlySpan<byte> line, out long size)
    {
        size = 0;
        var i = 0;
        while (i < line.Length && HexValue(line[i]) >= 0)
        {
            if (i == 15)
            {
                return false; // more than 15 hex digits can overflow a long
            }

            size = (size << 4) | (long)HexValue(line[i]);
            i++;
        }

        if (i == 0)
        {
            return false;
        }

        var rest = line[i..];
        var ws = 0;
        while (ws < rest.Length && (rest[ws] == (byte)' ' || rest[ws] == (byte)'\t'))
        {
            ws++;
        }

        rest = rest[ws..];
        if (rest.IsEmpty)
        {
            return ws == 0; // whitespace is allowed only before an extension
        }

        return rest[0] == (byte)';' && rest.IndexOfAny(BadValueByte) < 0;
    }

    /// <summary>Checks one trailer field line (without CRLF) the way a header field line is checked.</summary>
    public static bool IsValidFieldLine(ReadOnlySpan<byte> line)
    {
        var colon = line.IndexOf((byte)':');
        return colon > 0 && line[..colon].IndexOfAny(NotTchar) < 0 && line[(colon + 1)..].IndexOfAny(BadValueByte) < 0;
    }

    /// <summary>Parses a Content-Length value: 1*DIGIT, no sign, no list, no overflow.</summary>
    public static bool TryParseContentLength(ReadOnlySpan<byte> value, out long length)
    {
        length = 0;
        if (value.IsEmpty || value.Length > 18)
        {
            return false;
        }

        foreach (var b in value)
        {
            if (!IsDigit(b))
            {
                return false;
            }

            length = (length * 10) + (b - '0');
        }

        return true;
    }

    private static HeadResult ParseRequestLine(ReadOnlySpan<byte> line, HttpHead result)
    {
        var sp1 = line.IndexOf((byte)' ');
        if (sp1 <= 0 || line[..sp1].IndexOfAny(NotTchar) >= 0)
        {
            return Fail(result, "bad method");
        }

        var afterMethod = line[(sp1 + 1)..];
        var sp2 = afterMethod.IndexOf((byte)' ');
        if (sp2 <= 0)
        {
            return Fail(result, "bad request line");
        }

        var target = afterMethod[..sp2];
        if (target.IndexOfAny(BadTargetByte) >= 0)
        {
            return Fail(result, "bad request target");
        }

        var version = afterMethod[(sp2 + 1)..];
        if (version.Length != 8 || !version.StartsWith("HTTP/"u8) || !IsDigit(version[5]) ||
            version[6] != (byte)'.' || !IsDigit(version[7]))
        {
            return Fail(result, "bad HTTP version");
        }

        if (version[5] != (byte)'1' || version[7] > (byte)'1')
        {
            result.Error = "HTTP version not supported";
            return HeadResult.VersionNotSupported;
        }

        result.Method = new Segment(0, sp1);
        result.Target = new Segment(sp1 + 1, sp2);
        result.VersionMinor = version[7] - '0';
        return HeadResult.Ok;
    }

    private static HeadResult ParseFields(ReadOnlySpan<byte> head, int pos, HttpHead result, bool isRequest)
    {
        while (true)
        {
            var next = NextLine(head, pos, out var line, result);
            if (next < 0)
            {
                return HeadResult.BadRequest;
            }

            if (line.IsEmpty)
            {
                return HeadResult.Ok;
            }

            if (line[0] == (byte)' ' || line[0] == (byte)'\t')
            {
                return Fail(result, "obs-fold");
            }

            var colon = line.IndexOf((byte)':');
            if (colon <= 0 || line[..colon].IndexOfAny(NotTchar) >= 0)
            {
                return Fail(result, "bad field name");
            }

            var vStart = colon + 1;
            var vEnd = line.Length;
            while (vStart < vEnd && (line[vStart] == (byte)' ' || line[vStart] == (byte)'\t'))
            {
                vStart++;
            }

            while (vEnd > vStart && (line[vEnd - 1] == (byte)' ' || line[vEnd - 1] == (byte)'\t'))
            {
                vEnd--;
            }

            var value = line[vStart..vEnd];
            if (value.IndexOfAny(BadValueByte) >= 0)
            {
                return Fail(result, "bad field value");
            }

            var field = new HeaderField
            {
                Name = new Segment(pos, colon),
                Value = new Segment(pos + vStart, vEnd - vStart),
                Kind = KindOf(line[..colon]),
            };
            if (!result.AddField(field))
            {
                result.Error = "too many header fields";
                return HeadResult.HeaderTooLarge;
            }

            var r = Interpret(field, value, result, isRequest);
            if (r != HeadResult.Ok)
            {
                return r;
            }

            pos = next;
        }
    }

    private static HeadResult Interpret(in HeaderField field, ReadOnlySpan<byte> value, HttpHead result,
        bool isRequest)
    {
        switch (field.Kind)
        {
            case FieldKind.ContentLength:
                if (!TryParseContentLength(value, out var length))
                {
                    return Fail(result, "bad Content-Length");
                }

                if (result.HasContentLength && (isRequest || length != result.ContentLength))
                {
                    return Fail(result, "duplicate Content-Length");
                }

                result.HasContentLength = true;
                result.ContentLength = length;
                break;
            case FieldKind.TransferEncoding:
                result.HasTransferEncoding = true;
                foreach (var coding in new TokenList(value))
                {
                    var c = value.Slice(coding.Start, coding.Length);
                    if (result.Chunked)
                    {
                        return Fail(result, "chunked is not the final transfer coding");
                    }

                    if (!Ascii.EqualsIgnoreCase(c, "chunked"u8))
                    {
                        result.Error = "transfer coding not implemented";
                        return isRequest ? HeadResult.NotImplemented : HeadResult.BadRequest;
                    }

                    result.Chunked = true;
                }

                if (!result.Chunked)
                {
                    return Fail(result, "empty Transfer-Encoding");
                }

                break;
            case FieldKind.Connection:
            case FieldKind.ProxyConnection:
                foreach (var t in new TokenList(value))
                {
                    var token = value.Slice(t.Start, t.Length);
                    if (Ascii.EqualsIgnoreCase(token, "close"u8))
                    {
                        result.ConnectionClose = true;
                    }
                    else if (Ascii.EqualsIgnoreCase(token, "keep-alive"u8))
                    {
                        result.ConnectionKeepAlive = true;
                    }
                    else if (field.Kind == FieldKind.Connection && Ascii.EqualsIgnoreCase(token, "upgrade"u8))
                    {
                        result.ConnectionUpgrade = true;
                    }

                    if (field.Kind == FieldKind.Connection &&
                        !result.AddConnectionToken(new Segment(field.Value.Start + t.Start, t.Length)))
                    {
                        return Fail(result, "too many Connection options");
                    }
                }

                break;
            case FieldKind.Upgrade:
                result.HasUpgrade = true;
                foreach (var t in new TokenList(value))
                {
                    var token = value.Slice(t.Start, t.Length);
                    var slash = token.IndexOf((byte)'/');
                    if (Ascii.EqualsIgnoreCase(slash >= 0 ? token[..slash] : token, "websocket"u8))
                    {
                        result.UpgradeWebSocket = true;
                    }
                }

                break;
            case FieldKind.Host:
                result.HostCount++;
                result.Host = field.Value;
                break;
            case FieldKind.Expect:
                result.ExpectContinue = Ascii.EqualsIgnoreCase(value, "100-continue"u8);
                break;
            case FieldKind.ProxyAuthorization:
                result.HasProxyAuthorization = true;
                result.ProxyAuthorization = field.Value;
                break;
            default:
                break;
        }

        return HeadResult.Ok;
    }

    /// <summary>Reads the line starting at <paramref name="pos"/>; returns the position after its CRLF, or -1
    /// (with <see cref="HttpHead.Error"/> set) for a bare CR or LF or a missing terminator.</summary>
    private static int NextLine(ReadOnlySpan<byte> head, int pos, out ReadOnlySpan<byte> line, HttpHead result)
    {
        line = default;
        if (pos >= head.Length)
        {
            result.Error = "truncated head";
            return -1;
        }

        // One scan: a good line ends at its first CR or LF, and that is a CR followed by LF.
        var rest = head[pos..];
        var end = rest.IndexOfAny((byte)'\r', (byte)'\n');
        if (end >= 0 && rest[end] == (byte)'\r' && end + 1 < rest.Length && rest[end + 1] == (byte)'\n')
        {
            line = rest[..end];
            return pos + end + 2;
        }

        var lf = rest.IndexOf((byte)'\n');
        result.Error = lf < 0 ? "truncated head" : lf == 0 || rest[lf - 1] != (byte)'\r' ? "bare LF" : "bare CR";
        return -1;
    }

    private static FieldKind KindOf(ReadOnlySpan<byte> name)
    {
        if (name.Length > 24)
        {
            return FieldKind.Other;
        }

        Span<char> chars = stackalloc char[name.Length];
        for (var i = 0; i < name.Length; i++)
        {
            chars[i] = (char)name[i];
        }

        return KindLookup.TryGetValue(chars, out var kind) ? kind : FieldKind.Other;
    }

    private static HeadResult Fail(HttpHead result, string error)
    {
        result.Error = error;
        return HeadResult.BadRequest;
    }

    private static bool IsDigit(byte b) => (uint)(b - '0') <= 9;

    private static int HexValue(byte b) => b switch
    {
        >= (byte)'0' and <= (byte)'9' => b - '0',
        >= (byte)'a' and <= (byte)'f' => b - 'a' + 10,
        >= (byte)'A' and <= (byte)'F' => b - 'A' + 10,
        _ => -1,
    };

    private static byte[] BuildNotTchar()
    {
        var list = new List<byte>();
        for (var b = 0; b < 256; b++)
        {
            var c = (char)b;
            var tchar = char.IsAsciiLetterOrDigit(c) || "!#$%&'*+-.^_`|~".Contains(c, StringComparison.Ordinal);
            if (!tchar)
            {
                list.Add((byte)b);
            }
        }

        return [.. list];
    }

    private static byte[] BuildBadValue()
    {
        var list = new List<byte>();
        for (var b = 0; b < 32; b++)
        {
            if (b != '\t')
            {
                list.Add((byte)b);
            }
        }

        list.Add(0x7F);
        return [.. list];
    }

    private static byte[] BuildBadTarget()
    {
        var list = new List<byte>();
        for (var b = 0; b < 256; b++)
        {
            if (b <= 0x20 || b >= 0x7F)
            {
                list.Add((byte)b);
            }
        }

        return [.. list];
    }
}

/// <summary>Enumerates the comma-separated, whitespace-trimmed, non-empty elements of a field value
/// (RFC 9110 5.6.1) as ranges into it.</summary>
internal ref struct TokenList
{
    private readonly ReadOnlySpan<byte> _value;
    private int _pos;

    public TokenList(ReadOnlySpan<byte> value)
    {
        _value = value;
        _pos = 0;
        Current = default;
    }

    public Segment Current { get; private set; }

    public readonly TokenList GetEnumerator() => this;

    public bool MoveNext()
    {
        while (_pos <= _value.Length)
        {
            var rest = _value[_pos..];
            var comma = rest.IndexOf((byte)',');
            var end = comma < 0 ? rest.Length : comma;
            var start = 0;
            while (start < end && (rest[start] == (byte)' ' || rest[start] == (byte)'\t'))
            {
                start++;
            }

            var stop = end;
            while (stop > start && (rest[stop - 1] == (byte)' ' || rest[stop - 1] == (byte)'\t'))
            {
                stop--;
            }

            var at = _pos;
            _pos += end + 1;
            if (stop > start)
            {
                Current = new Segment(at + start, stop - start);
                return true;
            }
        }

        return false;
    }
}
