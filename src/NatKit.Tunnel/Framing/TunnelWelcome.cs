using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using NatKit.Packets;

namespace NatKit.Tunnel.Framing;

/// <summary>
/// The server's answer to a good hello: the client's inner address and prefix, the server's own address on the
/// tunnel (the next hop, whose ICMP errors the client will see), the MTU to set on the client's TUN device, the
/// keepalive interval, the session id the client is to present on reconnects, the features both sides use, and the
/// routes the server offers (the client chooses which to install).
/// </summary>
/// <remarks>Layout: type 0x02, version, features, prefix length, address (4), gateway (4), MTU (2), keepalive seconds
/// (2), session id (16), route count (1, at most <see cref="MaxRoutes"/>), routes (address 4, length 1 each).</remarks>
public sealed record TunnelWelcome(byte Version, TunnelFeatures Features, Ipv4Address Address, int PrefixLength,
    Ipv4Address Gateway, int Mtu, int KeepaliveSeconds, Guid SessionId, IReadOnlyList<Ipv4Prefix> Routes)
{
    /// <summary>Most routes one welcome carries.</summary>
    public const int MaxRoutes = 64;

    /// <summary>Smallest MTU a client may be told (RFC 791's 68).</summary>
    public const int MinMtu = 68;

    private const int Fixed = 33;

    public int Length => Fixed + (5 * Routes.Count);

    /// <summary>The client's network (its address with the host part cleared).</summary>
    public Ipv4Prefix Network => new(Address, PrefixLength);

    /// <summary>The client's address with its prefix length, as <c>ip addr</c> takes it ("10.99.0.2/16").</summary>
    public string AddressWithPrefix => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{Address}/{PrefixLength}");

    /// <summary>Writes the message; returns its length.</summary>
    /// <exception cref="ArgumentException">A field is out of range (the server's own configuration).</exception>
    public int Write(Span<byte> destination)
    {
        if (PrefixLength is < 0 or > 32 || Mtu is < MinMtu or > 65535 || KeepaliveSeconds is < 0 or > 65535 ||
            Routes.Count > MaxRoutes)
        {
            throw new ArgumentException($"welcome out of range: prefix /{PrefixLength}, MTU {Mtu}, keepalive {KeepaliveSeconds} s, {Routes.Count} routes");
        }

        destination[0] = TunnelMessage.WelcomeType;
        destination[1] = Version;
        destination[2] = (byte)Features;
        destination[3] = (byte)PrefixLength;
        Address.Write(destination[4..]);
        Gateway.Write(destination[8..]);
        BinaryPrimitives.WriteUInt16BigEndian(destination[12..], (ushort)Mtu);
        BinaryPrimitives.WriteUInt16BigEndian(destination[14..], (ushort)KeepaliveSeconds);
        _ = SessionId.TryWriteBytes(destination[16..32], bigEndian: true, out _);
        destination[Fixed - 1] = (byte)Routes.Count;
        var at = Fixed;
        foreach (var r in Routes)
        {
            r.Network.Write(destination[at..]);
            destination[at + 4] = (byte)r.Length;
            at += 5;
        }

        return at;
    }

    /// <summary>Parses a welcome; on failure <paramref name="error"/> says what is wrong, in one sentence.</summary>
    public static bool TryParse(ReadOnlySpan<byte> message, [NotNullWhen(true)] out TunnelWelcome? welcome,
        [NotNullWhen(false)] out string? error)
    {
        welcome = null;
        if (message.Length < Fixed || message[0] != TunnelMessage.WelcomeType)
        {
            error = $"a welcome is at least {Fixed} bytes starting with 0x02; got {message.Length} bytes";
            return false;
        }

        var prefix = message[3];
        var mtu = BinaryPrimitives.ReadUInt16BigEndian(message[12..]);
        var count = message[Fixed - 1];
        if (prefix > 32)
        {
            error = $"the welcome's prefix length {prefix} is over 32";
            return false;
        }

        if (mtu < MinMtu)
        {
            error = $"the welcome's MTU {mtu} is under {MinMtu}";
            return false;
        }

        if (count > MaxRoutes || message.Length != Fixed + (5 * count))
        {
            error = $"the welcome says {count} routes (at most {MaxRoutes}) but carries {message.Length - Fixed} bytes of them";
            return false;
        }

        var routes = new Ipv4Prefix[count];
        for (var i = 0; i < count; i++)
        {
            var at = Fixed + (5 * i);
            if (message[at + 4] > 32)
            {
                error = $"route {i + 1} of the welcome has prefix length {message[at + 4]}";
                return false;
            }

            routes[i] = new Ipv4Prefix(Ipv4Address.Read(message[at..]), message[at + 4]);
        }

        welcome = new TunnelWelcome(message[1], (TunnelFeatures)message[2], Ipv4Address.Read(message[4..]), prefix,
            Ipv4Address.Read(message[8..]), mtu, BinaryPrimitives.ReadUInt16BigEndian(message[14..]),
            new Guid(message[16..32], bigEndian: true), routes);
        error = null;
        return true;
    }
}
