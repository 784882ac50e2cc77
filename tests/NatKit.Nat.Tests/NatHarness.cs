using System.Globalization;
using NatKit.Packets;

namespace NatKit.Nat.Tests;

/// <summary>Keeps every packet the engine makes.</summary>
internal sealed class CapturingSink : INatSink
{
    public List<(byte[] Bytes, NatSide Side)> Sent { get; } = [];

    public void Emit(ReadOnlySpan<byte> packet, NatSide side) => Sent.Add((packet.ToArray(), side));
}

/// <summary>What came out of one Process call: the verdict and the rewritten addresses.</summary>
internal readonly record struct Seen(NatVerdict Verdict, NatEndpoint Source, NatEndpoint Destination, byte[] Bytes)
{
    public bool Forwarded => Verdict.IsForward;
}

/// <summary>
/// Drives a <see cref="NatEngine"/> with packets built by NatKit.Packets' builders, on virtual time.
/// Inside is 192.168.1.0/24, external addresses are 203.0.113.1.., remotes are anything else.
/// </summary>
internal sealed class NatHarness : IDisposable
{
    public static readonly Ipv4Address Ext1 = Ipv4Address.Parse("203.0.113.1");
    public static readonly Ipv4Address Ext2 = Ipv4Address.Parse("203.0.113.2");

    public NatHarness(NatPolicy policy, int externals = 1, Func<NatConfig, NatConfig>? tweak = null)
    {
        var ext = new List<Ipv4Address>();
        for (var i = 0; i < externals; i++) ext.Add(new Ipv4Address(203, 0, 113, (byte)(i + 1)));
        var config = new NatConfig
        {
            Policy = policy,
            InsidePrefixes = [Ipv4Prefix.Parse("192.168.1.0/24")],
            ExternalAddresses = ext,
            InsideAddress = Ipv4Address.Parse("192.168.1.1"),
        };
        if (tweak is not null) config = tweak(config);
        Nat = new NatEngine(config, Now);
    }

    public NatEngine Nat { get; }

    public long Now { get; private set; }

    public CapturingSink Sink { get; } = new();

    public static NatEndpoint Ep(string text)
    {
        var colon = text.LastIndexOf(':');
        return new NatEndpoint(Ipv4Address.Parse(text[..colon]), ushort.Parse(text[(colon + 1)..], CultureInfo.InvariantCulture));
    }

    public void Advance(TimeSpan by)
    {
        Now += (long)by.TotalMilliseconds;
        Nat.Tick(Now, Sink);
    }

    public void AdvanceMs(long ms)
    {
        Now += ms;
        Nat.Tick(Now, Sink);
    }

    public static byte[] BuildUdp(string from, string to, int payload = 8, byte ttl = 64, bool df = false, ushort id = 0)
    {
        var f = Ep(from);
        var t = Ep(to);
        var buffer = new byte[20 + 8 + payload];
        var data = new byte[payload];
        for (var i = 0; i < payload; i++) data[i] = (byte)(i * 7);
        var n = PacketBuilder.WriteIpv4Udp(buffer, new Ipv4Header(f.Address, t.Address, ttl, id, df), f.Port, t.Port, data);
        return buffer[..n];
    }

    public static byte[] BuildTcp(string from, string to, TcpFlags flags, int payload = 0, uint seq = 1000, uint ack = 0)
    {
        var f = Ep(from);
        var t = Ep(to);
        var buffer = new byte[20 + 20 + payload];
        var n = PacketBuilder.WriteIpv4Tcp(buffer, new Ipv4Header(f.Address, t.Address), new TcpHeader(f.Port, t.Port, seq, ack, flags), new byte[payload]);
        return buffer[..n];
    }

    /// <summary>"from"/"to" ports are ignored except that the echo identifier is <paramref name="id"/>.</summary>
    public static byte[] BuildEcho(string from, string to, ushort id, bool reply = false, ushort seq = 1)
    {
        var buffer = new byte[20 + 8 + 16];
        var n = PacketBuilder.WriteIpv4IcmpEcho(buffer, new Ipv4Header(Ipv4Address.Parse(from), Ipv4Address.Parse(to)), id, seq, new byte[16], reply);
        return buffer[..n];
    }

    public Seen Udp(NatDirection d, string from, string to, int payload = 8, byte ttl = 64, bool df = false) =>
        Run(BuildUdp(from, to, payload, ttl, df), d);

    public Seen Out(string from, string to) => Udp(NatDirection.Outbound, from, to);

    public Seen In(string from, string to) => Udp(NatDirection.Inbound, from, to);

    public Seen Tcp(NatDirection d, string from, string to, TcpFlags flags) => Run(BuildTcp(from, to, flags), d);

    public Seen Echo(NatDirection d, string from, string to, ushort id, bool reply = false) => Run(BuildEcho(from, to, id, reply), d);

    public Seen Run(byte[] packet, NatDirection d)
    {
        var buffer = packet.ToArray();
        var length = buffer.Length;
        var verdict = Nat.Process(buffer, ref length, d, Now, Sink);
        var bytes = buffer[..length];
        return new Seen(verdict, Source(bytes), Destination(bytes), bytes);
    }

    /// <summary>Source endpoint of an IPv4 packet (ICMP echo: the identifier as port).</summary>
    public static NatEndpoint Source(byte[] bytes)
    {
        if (!Ipv4Packet.TryParse(bytes, out var ip)) return default;
        return new NatEndpoint(ip.Source, PortOf(ip, source: true));
    }

    public static NatEndpoint Destination(byte[] bytes)
    {
        if (!Ipv4Packet.TryParse(bytes, out var ip)) return default;
        return new NatEndpoint(ip.Destination, PortOf(ip, source: false));
    }

    private static ushort PortOf(Ipv4Packet ip, bool source)
    {
        if (!ip.IsFirstFragment) return 0;
        if (ip.Protocol == IpProtocol.Icmp)
        {
            return IcmpV4Message.TryParse(ip.Payload, out var icmp) && icmp.IsQuery ? icmp.Identifier : (ushort)0;
        }

        if (!QuotedTransportHeader.TryParse(ip.Payload, ip.Protocol, out var q)) return 0;
        return source ? q.SourcePort : q.DestinationPort;
    }

    /// <summary>Every checksum in the packet is right, by full recomputation (IP header, TCP/UDP with
    /// pseudo-header, ICMP, and a quoted packet's header).</summary>
    public static void AssertChecksums(byte[] bytes)
    {
        Assert.True(Ipv4Packet.TryParse(bytes, out var ip), "parses as IPv4");
        Assert.True(ip.IsHeaderChecksumValid, "IPv4 header checksum");
        if (ip.IsFragment) return;
        switch (ip.Protocol)
        {
            case IpProtocol.Udp:
                Assert.True(UdpDatagram.TryParse(ip.Payload, out var udp));
                // Every packet the tests build carries a UDP checksum: the NAT must never turn it into 0 ("none").
                Assert.True(udp.Checksum != 0 && udp.IsChecksumValid(ip.Source, ip.Destination), "UDP checksum present and valid");
                break;
            case IpProtocol.Tcp:
                Assert.True(TcpSegment.TryParse(ip.Payload, out var tcp));
                Assert.True(tcp.IsChecksumValid(ip.Source, ip.Destination), "TCP checksum");
                break;
            case IpProtocol.Icmp:
                Assert.True(IcmpV4Message.TryParse(ip.Payload, out var icmp));
                Assert.True(icmp.IsChecksumValid, "ICMP checksum");
                if (icmp.TryGetQuotedPacket(out var inner))
                {
                    Assert.True(inner.IsHeaderChecksumValid, "quoted IPv4 header checksum");
                    if (!inner.IsTruncated && inner.Protocol == IpProtocol.Udp && UdpDatagram.TryParse(inner.Payload, out var iu) && iu.Checksum != 0)
                    {
                        Assert.True(iu.IsChecksumValid(inner.Source, inner.Destination), "quoted UDP checksum");
                    }
                }

                break;
        }
    }

    public void Dispose() => Nat.Dispose();
}
