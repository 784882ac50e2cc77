namespace NatKit.Packets.Tests;

/// <summary>
/// Hand-made packets whose checksums were computed independently, with Python's struct module and the RFC 1071
/// word sum (see docs/packets.md), not with NatKit.
/// </summary>
internal static class KnownVectors
{
    /// <summary>192.0.2.1:40000 -> 198.51.100.7:53 UDP "hello", ID 0x1234, DF, TTL 64.</summary>
    public static byte[] Udp => Convert.FromHexString("450000211234400040113c5cc0000201c63364079c400035000d335068656c6c6f");

    /// <summary>192.0.2.1:49152 -> 198.51.100.7:80 TCP SYN seq 0x01020304, window 65535, MSS 1460, ID 1.</summary>
    public static byte[] TcpSyn => Convert.FromHexString("4500002c0001000040068e8fc0000201c6336407c000005001020304000000006002ffffe7930000020405b4");

    /// <summary>192.0.2.1 -> 198.51.100.7 ICMP echo request id 0x4242 seq 7 "abc".</summary>
    public static byte[] IcmpEcho => Convert.FromHexString("4500001f0000000040018ea2c0000201c63364070800f15342420007616263");

    public static readonly Ipv4Address Client = Ipv4Address.Parse("192.0.2.1");
    public static readonly Ipv4Address Server = Ipv4Address.Parse("198.51.100.7");
}

/// <summary>IPv6 vectors, also computed with Python (see docs/packets.md).</summary>
internal static class KnownVectors6
{
    public static readonly Ipv6Address A = Ipv6Address.Parse("2001:db8::1");
    public static readonly Ipv6Address B = Ipv6Address.Parse("2001:db8::2");

    /// <summary>A -> B ICMPv6 echo request id 0x1234 seq 1 "ping", traffic class 0x12, flow label 0xABCDE.</summary>
    public static byte[] IcmpEcho => Convert.FromHexString(
        "612abcde000c3a4020010db800000000000000000000000120010db80000000000000000000000028000333e1234000170696e67");

    /// <summary>A -> B: Hop-by-Hop (8), Destination Options (16), Fragment (offset 0, M, id 0xDEADBEEF), UDP 5000 -> 53 "xyz" at 72.</summary>
    public static byte[] UdpWithChain => Convert.FromHexString(
        "60000000002b004020010db800000000000000000000000120010db80000000000000000000000023c000104000000002c01010c00000000000000000000000011000001deadbeef13880035000b9e2c78797a");
}
