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
