using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Numerics;

namespace NatKit.Cli;

/// <summary>
/// Reads flag values the way a user writes them and refuses a bad one with one sentence that names the flag (or
/// config key) and says what would be right, as a <see cref="CliException"/> (exit code 2). Every verb's
/// addresses, ports and counts go through here, so IPv6 (<c>::1</c>, <c>[::1]:3478</c>) works everywhere.
/// </summary>
internal static class CliFlags
{
    /// <summary>ADDRESS, ADDRESS:PORT, IPV6, [IPV6] or [IPV6]:PORT; <paramref name="defaultPort"/> when absent. Port 0
    /// asks the system for a free one.</summary>
    public static IPEndPoint EndPoint(string text, int defaultPort, string flag)
    {
        ArgumentNullException.ThrowIfNull(text);
        var t = text.Trim();
        string host;
        string? port = null;
        if (t.StartsWith('['))
        {
            var close = t.IndexOf(']', StringComparison.Ordinal);
            if (close < 0 || (close + 1 < t.Length && t[close + 1] != ':'))
            {
                throw new CliException($"{flag} {text}: expected ADDRESS[:PORT], with an IPv6 address in brackets like [::1]:3478.");
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
            if (last > 0 && last < t.Length - 1 && t[(last + 1)..].All(char.IsAsciiDigit) && t.Length - last - 1 <= 5 &&
                t[..last] is { } before && !before.EndsWith(':') && IPAddress.TryParse(before, out var v6) &&
                v6.AddressFamily == AddressFamily.InterNetworkV6)
            {
                // "::1:1080" is an address, but far more likely [::1]:1080 meant: ask instead of guessing
                throw new CliException($"{flag} {text}: an IPv6 address with a port needs brackets: write [{before}]:{t[(last + 1)..]} (or [{t}] for the address alone).");
            }
        }

        if (!TryParseAddress(host, out var address))
        {
            throw new CliException($"{flag} {text}: '{host}' is not an IP address; expected ADDRESS[:PORT] like 127.0.0.1:3478 or [::1]:3478.");
        }

        return new IPEndPoint(address, port is null ? defaultPort : Port(port, flag, text, allowZero: true));
    }

    /// <summary>An IP address, or null when the flag is absent.</summary>
    public static IPAddress? Address(string? text, string flag)
    {
        if (text is null)
        {
            return null;
        }

        var t = text.Trim();
        if (t.StartsWith('[') && t.EndsWith(']'))
        {
            t = t[1..^1];
        }

        return TryParseAddress(t, out var a)
            ? a
            : throw new CliException($"{flag} {text}: not an IP address; give one like 192.0.2.1 or 2001:db8::1.");
    }

    /// <summary>A dotted-quad IPv4 or a plain IPv6 address (no brackets or port, which IPAddress.TryParse would
    /// accept and drop, and no "1" read as 0.0.0.1).</summary>
    public static bool TryParseAddress(string text, [NotNullWhen(true)] out IPAddress? address)
    {
        address = null;
        if (text.Contains(':', StringComparison.Ordinal))
        {
            return !text.Contains('[', StringComparison.Ordinal) && IPAddress.TryParse(text, out address) &&
                   address.AddressFamily == AddressFamily.InterNetworkV6;
        }

        return text.Count(c => c == '.') == 3 && IPAddress.TryParse(text, out address) &&
               address.AddressFamily == AddressFamily.InterNetwork;
    }

    /// <summary>An address of one family, or null when the flag is absent; <paramref name="why"/> finishes the
    /// sentence for an address of the other family ("it is announced for IPv4 relays").</summary>
    public static IPAddress? Address(string? text, string flag, AddressFamily family, string why)
    {
        var a = Address(text, flag);
        return a is null || a.AddressFamily == family
            ? a
            : throw new CliException($"{flag} {text}: must be an {Family(family)} address: {why}.");
    }

    /// <summary>"IPv4" or "IPv6".</summary>
    public static string Family(AddressFamily family) => family == AddressFamily.InterNetworkV6 ? "IPv6" : "IPv4";

    /// <summary>A port 1-65535 (0 too when <paramref name="allowZero"/>).</summary>
    public static int Port(string text, string flag, string? whole = null, bool allowZero = false)
    {
        var shown = whole ?? text;
        if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var p))
        {
            throw new CliException($"{flag} {shown}: '{text}' is not a port number; use 1-65535.");
        }

        return p is >= 1 and <= 65535 || (allowZero && p == 0)
            ? p
            : throw new CliException($"{flag} {shown}: port {text} is out of range; use 1-65535{(allowZero ? " (0 for any free port)" : "")}.");
    }

    /// <summary>MIN-MAX, both ports, MIN at most MAX.</summary>
    public static (int Min, int Max) PortRange(string text, string flag)
    {
        ArgumentNullException.ThrowIfNull(text);
        var parts = text.Split('-');
        if (parts.Length != 2)
        {
            throw new CliException($"{flag} {text}: expected a port range MIN-MAX like 49152-65535.");
        }

        var min = Port(parts[0].Trim(), flag, text);
        var max = Port(parts[1].Trim(), flag, text);
        return min <= max
            ? (min, max)
            : throw new CliException($"{flag} {text}: the first port must not be above the second; write it {max}-{min}.");
    }

    /// <summary>A count or time that must be above zero.</summary>
    public static int Positive(int value, string flag) =>
        value > 0 ? value : throw new CliException($"{flag} {value}: must be a positive whole number.");

    /// <summary>A count or rate where 0 means "off" or "unlimited".</summary>
    public static T NotNegative<T>(T value, string flag, string zeroMeans)
        where T : INumber<T> =>
        value >= T.Zero ? value : throw new CliException($"{flag} {value}: must be 0 ({zeroMeans}) or more.");
}
