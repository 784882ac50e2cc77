using NatKit.Nat;
using NatKit.Packets;

namespace NatKit.Benchmarks.Nat;

/// <summary>Engines and packets shared by the NAT suites. Inside 10.0.0.0/8, 16 external addresses.</summary>
internal static class NatBenchSetup
{
    public static NatEngine Engine(NatPolicy policy, int maxFlows, int externals = 16)
    {
        var ext = new List<Ipv4Address>();
        for (var i = 0; i < externals; i++) ext.Add(new Ipv4Address(203, 0, 113, (byte)(i + 1)));
        return new NatEngine(new NatConfig
        {
            Policy = policy,
            InsidePrefixes = [Ipv4Prefix.Parse("10.0.0.0/8")],
            ExternalAddresses = ext,
            MaxFlows = maxFlows,
        });
    }

    /// <summary>Inside endpoint number <paramref name="i"/>: 10.x.y.z spread over hosts, port from 1024.</summary>
    public static (Ipv4Address Address, ushort Port) Inside(int i) =>
        (new Ipv4Address(0x0A000000u + 2 + (uint)(i / 16)), (ushort)(1024 + (i % 16)));

    public static readonly Ipv4Address Remote = new(198, 51, 100, 1);

    public static byte[] Udp(Ipv4Address src, ushort sport, Ipv4Address dst, ushort dport, int payload = 64)
    {
        var b = new byte[28 + payload];
        PacketBuilder.WriteIpv4Udp(b, new Ipv4Header(src, dst), sport, dport, new byte[payload]);
        return b;
    }

    public static byte[] Tcp(Ipv4Address src, ushort sport, Ipv4Address dst, ushort dport, TcpFlags flags, int payload = 64)
    {
        var b = new byte[40 + payload];
        PacketBuilder.WriteIpv4Tcp(b, new Ipv4Header(src, dst), new TcpHeader(sport, dport, 1, 1, flags), new byte[payload]);
        return b;
    }

    /// <summary>Creates <paramref name="count"/> UDP flows (one mapping each) and returns the time used.</summary>
    public static void Fill(NatEngine nat, int count, long now)
    {
        var buffer = new byte[64];
        for (var i = 0; i < count; i++)
        {
            var (a, p) = Inside(i);
            var length = WriteUdpHeaderOnly(buffer, a, p, Remote, 443);
            nat.Process(buffer, ref length, NatDirection.Outbound, now, null);
        }
    }

    public static int WriteUdpHeaderOnly(Span<byte> buffer, Ipv4Address src, ushort sport, Ipv4Address dst, ushort dport) =>
        PacketBuilder.WriteIpv4Udp(buffer, new Ipv4Header(src, dst), sport, dport, default);
}
