using BenchmarkDotNet.Attributes;
using NatKit.Packets;

namespace NatKit.Benchmarks.Packets;

/// <summary>
/// What a NAT does per packet of an established UDP flow: parse IPv4 and UDP, rewrite source address and port,
/// set TTL, patch both checksums incrementally (RFC 1624). The values are the same each time after the first, so
/// the packet stays valid; the work is the same. Must allocate 0 B.
/// </summary>
public class RewriteBenchmarks
{
    private readonly byte[] _packet = new byte[128];
    private readonly Ipv4Address _external = Ipv4Address.Parse("203.0.113.9");
    private int _length;

    [GlobalSetup]
    public void Setup()
    {
        var header = new Ipv4Header(Ipv4Address.Parse("10.0.0.2"), Ipv4Address.Parse("198.51.100.7"), Ttl: 255);
        _length = PacketBuilder.WriteIpv4Udp(_packet, header, 40000, 53, new byte[64]);
    }

    [Benchmark]
    public ushort ParseAndRewriteUdp()
    {
        var buffer = _packet.AsSpan(0, _length);
        if (!Ipv4Packet.TryParse(buffer, out var ip) || !UdpDatagram.TryParse(ip.Payload, out var udp))
        {
            return 0;
        }

        var old = ip.Source;
        ip.RewriteSource(_external);
        udp.UpdateChecksumForAddress(old, _external);
        udp.RewriteSourcePort(61000);
        ip.RewriteTtl(64);
        return udp.Checksum;
    }
}
