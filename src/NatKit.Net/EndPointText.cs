using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace NatKit.Net;

/// <summary>
/// Addresses and endpoints as people write them in flags and config files: <c>ADDRESS</c>, <c>ADDRESS:PORT</c>,
/// <c>IPV6</c>, <c>[IPV6]</c> or <c>[IPV6]:PORT</c>. Stricter than <see cref="IPEndPoint.TryParse(string, out IPEndPoint?)"/>:
/// no "1" read as 0.0.0.1, no brackets or port silently dropped. A mistake comes back as the end of a sentence that
/// the caller starts with the flag or key it came from.
/// </summary>
public static class EndPointText
{
    /// <summary>Parses <paramref name="text"/>, <paramref name="defaultPort"/> when it gives none; port 0 asks the
    /// system for a free one. Returns null (and sets <paramref name="endPoint"/>), or what is wrong ("'x' is not an IP address; expected ...").</summary>
    public static string? TryParse(string text, int defaultPort, out IPEndPoint? endPoint)
    {
        ArgumentNullException.ThrowIfNull(text);
        endPoint = null;
        var t = text.Trim();
        string host;
        string? port = null;
        if (t.StartsWith('['))
        {
            var close = t.IndexOf(']', StringComparison.Ordinal);
            if (close < 0 || (close + 1 < t.Length && t[close + 1] != ':'))
            {
                return "expected ADDRESS[:PORT], with an IPv6 address in brackets like [::1]:3478.";
            }

            host = t[1..close];
            port = close + 1 < t.Length ? t[(close + 2)..] : null;
        }
        else if (t.Count(c => c == ':') == 1)
        {
            var colon = t.IndexOf(':', StringComparison.Ordinal);
            host = t[..colon];
            port = t[(colon + 1)..];
        }
        else
        {
            host = t; // IPv4 alone, or IPv6 without brackets (and so without a port)
            var last = t.LastIndexOf(':');
            if (last > 0 && last < t.Length - 1 && t.Length - last - 1 <= 5 && t[(last + 1)..].All(char.IsAsciiDigit) &&
                t[..last] is { } before && !before.EndsWith(':') && IPAddress.TryParse(before, out var v6) &&
                v6.AddressFamily == AddressFamily.InterNetworkV6)
            {
                // "::1:1080" is an address, but far more likely [::1]:1080 was meant: ask instead of guessing
                return $"an IPv6 address with a port needs brackets: write [{before}]:{t[(last + 1)..]} (or [{t}] for the address alone).";
            }
        }

        if (!TryParseAddress(host, out var address))
        {
            return $"'{host}' is not an IP address; expected ADDRESS[:PORT] like 127.0.0.1:3478 or [::1]:3478.";
        }

        var number = defaultPort;
        if (port is not null && PortProblem(port, allowZero: true, out number) is { } problem)
        {
            return problem;
        }

        endPoint = new IPEndPoint(address, number);
        return null;
    }

    /// <summary>A port 1-65535 (0 too when <paramref name="allowZero"/>): null, or what is wrong.</summary>
    public static string? PortProblem(string text, bool allowZero, out int port)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out port))
        {
            return $"'{text}' is not a port number; use 1-65535.";
        }

        return port is >= 1 and <= 65535 || (allowZero && port == 0)
            ? null
            : $"port {text} is out of range; use 1-65535{(allowZero ? " (0 for any free port)" : "")}.";
    }

    /// <summary>A dotted-quad IPv4 or a plain IPv6 address (no brackets or port, which IPAddress.TryParse would
    /// accept and drop, and no "1" read as 0.0.0.1).</summary>
    public static bool TryParseAddress(string text, [NotNullWhen(true)] out IPAddress? address)
    {
        ArgumentNullException.ThrowIfNull(text);
        address = null;
        if (text.Contains(':', StringComparison.Ordinal))
        {
            return !text.Contains('[', StringComparison.Ordinal) && IPAddress.TryParse(text, out address) &&
                   address.AddressFamily == AddressFamily.InterNetworkV6;
        }

        return text.Count(c => c == '.') == 3 && IPAddress.TryParse(text, out address) &&
               address.AddressFamily == AddressFamily.InterNetwork;
    }
}
