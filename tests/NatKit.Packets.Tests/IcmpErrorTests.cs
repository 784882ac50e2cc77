using System.Buffers.Binary;

namespace NatKit.Packets.Tests;

public sealed class IcmpErrorTests
{
    private static readonly Ipv4Header Router = new(Ipv4Address.Parse("198.51.100.1"), KnownVectors.Client);

    [Fact]
    public void Rfc1812_TimeExceeded_QuotesWholeShortDatagram_AndEmbeddedViewsParse()
    {
        var original = KnownVectors.Udp;
        var buffer = new byte[600];
        var n = PacketBuilder.WriteIpv4TimeExceeded(buffer, Router, original);
        Assert.Equal(20 + 8 + original.Length, n);
        Assert.True(Ipv4Packet.TryParse(buffer.AsSpan(0, n), out var ip));
        Assert.True(IcmpV4Message.TryParse(ip.Payload, out var icmp));
        Assert.True(icmp.IsChecksumValid);
        Assert.Equal(IcmpV4Type.TimeExceeded, icmp.Type);
        Assert.True(icmp.IsError);
        Assert.True(icmp.TryGetQuotedPacket(out var quoted));
        Assert.False(quoted.IsTruncated);
        Assert.Equal(KnownVectors.Client, quoted.Source);
        Assert.True(QuotedTransportHeader.TryParse(quoted.Payload, quoted.Protocol, out var l4));
        Assert.Equal(40000, l4.SourcePort);
        Assert.Equal(53, l4.DestinationPort);
        Assert.True(l4.TryGetChecksum(out var c) && c == 0x3350);
    }

    [Fact]
    public void Rfc1812_Error_QuotesAtMost576BytesInTotal()
    {
        var original = new byte[1500];
        var h = new Ipv4Header(KnownVectors.Client, KnownVectors.Server);
        PacketBuilder.WriteIpv4Udp(original, h, 1, 2, new byte[1500 - 28]);
        var buffer = new byte[2000];
        var n = PacketBuilder.WriteIpv4DestinationUnreachable(buffer, Router, IcmpV4UnreachableCode.Port, original);
        Assert.Equal(576, n);
        Assert.True(Ipv4Packet.TryParse(buffer.AsSpan(0, n), out var ip));
        Assert.True(IcmpV4Message.TryParse(ip.Payload, out var icmp));
        Assert.True(icmp.TryGetQuotedPacket(out var quoted));
        Assert.True(quoted.IsTruncated);
        Assert.Equal(1500, quoted.TotalLength);
        Assert.Equal(576 - 28 - 20, quoted.Payload.Length);
        Assert.False(UdpDatagram.TryParse(quoted.Payload, out _));
    }

    [Fact]
    public void Rfc792_Error_QuotesHeaderPlus8Bytes_WhenDestinationIsSmall()
    {
        var original = new byte[1500];
        PacketBuilder.WriteIpv4Tcp(original, new Ipv4Header(KnownVectors.Client, KnownVectors.Server),
            new TcpHeader(1234, 80, 99, 0, TcpFlags.Ack), new byte[1000]);
        var buffer = new byte[56];
        var n = PacketBuilder.WriteIpv4IcmpError(buffer, Router, IcmpV4Type.TimeExceeded, 0, 0, original);
        Assert.Equal(56, n);
        Assert.True(Ipv4Packet.TryParse(buffer, out var ip));
        Assert.True(IcmpV4Message.TryParse(ip.Payload, out var icmp));
        Assert.True(icmp.TryGetQuotedPacket(out var quoted));
        Assert.Equal(8, quoted.Payload.Length);
        Assert.True(QuotedTransportHeader.TryParse(quoted.Payload, IpProtocol.Tcp, out var l4));
        Assert.Equal(1234, l4.SourcePort);
        Assert.False(l4.HasChecksum);
        Assert.False(l4.TryGetChecksum(out _));
        Assert.False(l4.TrySetChecksum(1));
        Assert.Throws<ArgumentException>(() => PacketBuilder.WriteIpv4IcmpError(new byte[55], Router, IcmpV4Type.TimeExceeded, 0, 0, original));
    }

    [Fact]
    public void Rfc1191_FragmentationNeeded_CarriesNextHopMtu()
    {
        var buffer = new byte[600];
        var n = PacketBuilder.WriteIpv4FragmentationNeeded(buffer, Router, 1400, KnownVectors.TcpSyn);
        Assert.True(Ipv4Packet.TryParse(buffer.AsSpan(0, n), out var ip));
        Assert.True(IcmpV4Message.TryParse(ip.Payload, out var icmp));
        Assert.Equal(IcmpV4Type.DestinationUnreachable, icmp.Type);
        Assert.Equal((byte)IcmpV4UnreachableCode.FragmentationNeeded, icmp.Code);
        Assert.Equal(1400, icmp.NextHopMtu);
        Assert.Equal(1400u, icmp.RestOfHeader);
        Assert.True(icmp.IsChecksumValid);
    }

    [Fact]
    public void Rfc5508_EmbeddedRewrite_WithIncrementalChecksums_MatchesRecomputation()
    {
        // A NAT translating an inbound error: the quoted datagram's source (the internal host after reverse
        // translation) and port change; the quoted IP and UDP checksums and the ICMP checksum are patched.
        var buffer = new byte[600];
        var n = PacketBuilder.WriteIpv4DestinationUnreachable(buffer, Router, IcmpV4UnreachableCode.Port, KnownVectors.Udp);
        Ipv4Packet.TryParse(buffer.AsSpan(0, n), out var ip);
        IcmpV4Message.TryParse(ip.Payload, out var icmp);
        icmp.TryGetQuotedPacket(out var quoted);
        QuotedTransportHeader.TryParse(quoted.Payload, quoted.Protocol, out var l4);
        var newSource = Ipv4Address.Parse("10.0.0.5");
        const ushort newPort = 5555;

        var icmpSum = icmp.Checksum;
        var oldSource = quoted.Source;
        var oldIpSum = quoted.HeaderChecksum;
        quoted.RewriteSource(newSource);
        icmpSum = Checksum.Update(icmpSum, oldSource, newSource);
        icmpSum = Checksum.Update(icmpSum, oldIpSum, quoted.HeaderChecksum);
        l4.TryGetChecksum(out var oldL4Sum);
        var newL4Sum = Checksum.UpdateUdp(Checksum.UpdateUdp(oldL4Sum, oldSource.Value, newSource.Value), l4.SourcePort, newPort);
        icmpSum = Checksum.Update(icmpSum, l4.SourcePort, newPort);
        icmpSum = Checksum.Update(icmpSum, oldL4Sum, newL4Sum);
        l4.SourcePort = newPort;
        l4.TrySetChecksum(newL4Sum);
        icmp.Checksum = icmpSum;

        Assert.True(quoted.IsHeaderChecksumValid);
        Assert.True(UdpDatagram.TryParse(quoted.Payload, out var udp) && udp.IsChecksumValid(quoted.Source, quoted.Destination));
        Assert.Equal(icmp.ComputeChecksum(), icmp.Checksum);
    }

    [Fact]
    public void QuotedTransport_RejectsShortQuotesAndUnknownProtocols()
    {
        var bytes = new byte[8];
        Assert.False(QuotedTransportHeader.TryParse(bytes.AsSpan(0, 7), IpProtocol.Udp, out _));
        Assert.False(QuotedTransportHeader.TryParse(bytes, IpProtocol.Esp, out _));
        Assert.True(QuotedTransportHeader.TryParse(bytes, IpProtocol.Icmp, out var icmp));
        BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(4), 0xBEEF);
        Assert.Equal(0xBEEF, icmp.IcmpIdentifier);
        Assert.True(icmp.HasChecksum);
    }
}
