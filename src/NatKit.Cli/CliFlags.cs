using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Numerics;
using NatKit.Net;

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
        return EndPointText.TryParse(text, defaultPort, out var endPoint) is { } problem
            ? throw new CliException($"{flag} {text}: {problem}")
            : endPoint!;
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
    public static bool TryParseAddress(string text, [NotNullWhen(true)] out IPAddress? address) =>
        EndPointText.TryParseAddress(text, out address);

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
    public static int Port(string text, string flag, string? whole = null, bool allowZero = false) =>
        EndPointText.PortProblem(text, allowZero, out var port) is { } problem
            ? throw new CliException($"{flag} {whole ?? text}: {problem}")
            : port;

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
