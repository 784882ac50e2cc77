using System.Buffers.Binary;
using FsCheck;
using FsCheck.Fluent;

namespace NatKit.Packets.Tests;

public sealed class TransportTests
{
    [Fact]
    public void Rfc768_KnownDatagram_ParsesAndVerifies()
    {
        Assert.True(Ipv4Packet.TryParse(KnownVectors.Udp, out var ip));
        Assert.True(UdpDatagram.TryParse(ip.Payload, out var udp));
        Assert.Equal(40000, udp.SourcePort);
        Assert.Equal(53, udp.DestinationPort);
        Assert.Equal(13, udp.Length);
        Assert.Equal(0x3350, udp.Checksum);
        Assert.Equal("hello"u8.ToArray(), udp.Payload.ToArray());
        Assert.True(udp.IsChecksumValid(ip.Source, ip.Destination));
        Assert.Equal(udp.Checksum, udp.ComputeChecksum(ip.Source, ip.Destination));
        Assert.False(udp.IsChecksumValid(ip.Source, new Ipv4Address(ip.Destination.Value + 1)));
    }

    [Fact]
    public void Rfc768_LengthOutOfRange_IsRejected_AndTruncationsToo()
    {
        var udp = KnownVectors.Udp.AsSpan(20).ToArray();
        for (var n = 0; n < udp.Length; n++)
        {
            Assert.False(UdpDatagram.TryParse(udp.AsSpan(0, n), out _));
        }

        foreach (var bad in new ushort[] { 0, 7, 14, 0xFFFF })
        {
            BinaryPrimitives.WriteUInt16BigEndian(udp.AsSpan(4), bad);
            Assert.False(UdpDatagram.TryParse(udp, out _), $"length {bad}");
        }

        BinaryPrimitives.WriteUInt16BigEndian(udp.AsSpan(4), 8);
        Assert.True(UdpDatagram.TryParse(udp, out var empty));
        Assert.Equal(0, empty.Payload.Length);
    }

    [Fact]
    public void Rfc768_ZeroChecksum_MeansNoneOverIpv4_ButIsInvalidOverIpv6()
    {
        var buffer = new byte[64];
        var n = PacketBuilder.WriteIpv4Udp(buffer, new Ipv4Header(KnownVectors.Client, KnownVectors.Server), 1, 2, "x"u8, computeChecksum: false);
        Ipv4Packet.TryParse(buffer.AsSpan(0, n), out var ip);
        UdpDatagram.TryParse(ip.Payload, out var udp);
        Assert.Equal(0, udp.Checksum);
        Assert.True(udp.IsChecksumValid(ip.Source, ip.Destination));
        Assert.False(udp.IsChecksumValid(Ipv6Address.Loopback, Ipv6Address.Loopback));
    }

    [Fact]
    public void Rfc9293_KnownSyn_ParsesAndVerifies()
    {
        Assert.True(Ipv4Packet.TryParse(KnownVectors.TcpSyn, out var ip));
        Assert.True(TcpSegment.TryParse(ip.Payload, out var tcp));
        Assert.Equal(49152, tcp.SourcePort);
        Assert.Equal(80, tcp.DestinationPort);
        Assert.Equal(0x01020304u, tcp.SequenceNumber);
        Assert.Equal(0u, tcp.AcknowledgmentNumber);
        Assert.Equal(24, tcp.HeaderLength);
        Assert.Equal(TcpFlags.Syn, tcp.Flags);
        Assert.True(tcp.Syn);
        Assert.False(tcp.Ack);
        Assert.Equal(65535, tcp.WindowSize);
        Assert.Equal(0xE793, tcp.Checksum);
        Assert.True(tcp.IsChecksumValid(ip.Source, ip.Destination));
        Assert.Equal(0, tcp.Payload.Length);
        var options = new TlvOptionReader(tcp.Options);
        Assert.True(options.TryReadNext(out var kind, out var data));
        Assert.Equal(2, kind);
        Assert.Equal(1460, BinaryPrimitives.ReadUInt16BigEndian(data));
        Assert.False(options.TryReadNext(out _, out _));
        Assert.False(options.IsMalformed);
    }

    [Fact]
    public void Rfc9293_DataOffsetOutOfRange_IsRejected_AndTruncationsToo()
    {
        var tcp = KnownVectors.TcpSyn.AsSpan(20).ToArray();
        for (var n = 0; n < tcp.Length; n++)
        {
            Assert.False(TcpSegment.TryParse(tcp.AsSpan(0, n), out _), $"{n} bytes");
        }

        foreach (var offset in new[] { 0, 4, 7, 15 })
        {
            tcp[12] = (byte)(offset << 4);
            Assert.False(TcpSegment.TryParse(tcp, out _), $"data offset {offset}");
        }
    }

    [Fact]
    public void Rfc792_KnownEcho_ParsesAndVerifies()
    {
        Assert.True(Ipv4Packet.TryParse(KnownVectors.IcmpEcho, out var ip));
        Assert.True(IcmpV4Message.TryParse(ip.Payload, out var icmp));
        Assert.Equal(IcmpV4Type.EchoRequest, icmp.Type);
        Assert.Equal(0, icmp.Code);
        Assert.Equal(0x4242, icmp.Identifier);
        Assert.Equal(7, icmp.SequenceNumber);
        Assert.Equal(0xF153, icmp.Checksum);
        Assert.True(icmp.IsChecksumValid);
        Assert.True(icmp.IsQuery);
        Assert.False(icmp.IsError);
        Assert.False(icmp.TryGetQuotedPacket(out _));
        for (var n = 0; n < 8; n++)
        {
            Assert.False(IcmpV4Message.TryParse(ip.Payload[..n], out _));
        }
    }

    [Fact]
    public void Rfc792_TlvOptions_StopAtBadLength()
    {
        var reader = new TlvOptionReader([1, 1, 8, 1, 0xAA]);
        Assert.False(reader.TryReadNext(out _, out _));
        Assert.True(reader.IsMalformed);
        reader = new TlvOptionReader([1, 8]);
        Assert.False(reader.TryReadNext(out _, out _));
        Assert.True(reader.IsMalformed);
        reader = new TlvOptionReader([7, 0]);
        Assert.False(reader.TryReadNext(out _, out _));
        Assert.True(reader.IsMalformed);
        reader = new TlvOptionReader([0, 7, 0]);
        Assert.False(reader.TryReadNext(out _, out _));
        Assert.False(reader.IsMalformed);
    }

    [Fact]
    public void Builder_Udp_RoundTrips() =>
        Check.One(Generators.Config, Prop.ForAll(Generators.Arb(
            from h in Generators.Ipv4
            from sp in Generators.UInt16
            from dp in Generators.UInt16
            from payload in Generators.Bytes(300)
            from withChecksum in Generators.Bool
            select (h, sp, dp, payload, withChecksum)), t =>
        {
            var buffer = new byte[400];
            var n = PacketBuilder.WriteIpv4Udp(buffer, t.h, t.sp, t.dp, t.payload, t.withChecksum);
            return n == 28 + t.payload.Length
                   && Ipv4Packet.TryParse(buffer.AsSpan(0, n), out var ip) && ip.Protocol == IpProtocol.Udp
                   && ip.IsHeaderChecksumValid && ip.Source == t.h.Source && ip.Destination == t.h.Destination
                   && UdpDatagram.TryParse(ip.Payload, out var udp)
                   && udp.SourcePort == t.sp && udp.DestinationPort == t.dp && udp.Payload.SequenceEqual(t.payload)
                   && (udp.Checksum != 0) == t.withChecksum && udp.IsChecksumValid(ip.Source, ip.Destination)
                   && (!t.withChecksum || Checksum.Add(ip.PseudoHeaderSum(), udp.Buffer) == 0xFFFF);
        }));

    [Fact]
    public void Builder_Tcp_RoundTrips() =>
        Check.One(Generators.Config, Prop.ForAll(Generators.Arb(
            from h in Generators.Ipv4
            from tcp in Generators.Tcp
            from options in Generators.TcpOptions
            from payload in Generators.Bytes(300)
            select (h, tcp, options, payload)), t =>
        {
            var buffer = new byte[500];
            var n = PacketBuilder.WriteIpv4Tcp(buffer, t.h, t.tcp, t.payload, t.options);
            return Ipv4Packet.TryParse(buffer.AsSpan(0, n), out var ip) && ip.Protocol == IpProtocol.Tcp
                   && TcpSegment.TryParse(ip.Payload, out var s)
                   && new TcpHeader(s.SourcePort, s.DestinationPort, s.SequenceNumber, s.AcknowledgmentNumber, s.Flags,
                       s.WindowSize, s.UrgentPointer) == t.tcp
                   && s.Options.SequenceEqual(t.options) && s.Payload.SequenceEqual(t.payload)
                   && s.IsChecksumValid(ip.Source, ip.Destination);
        }));

    [Fact]
    public void Builder_IcmpEcho_RoundTrips() =>
        Check.One(Generators.Config, Prop.ForAll(Generators.Arb(
            from h in Generators.Ipv4
            from id in Generators.UInt16
            from seq in Generators.UInt16
            from payload in Generators.Bytes(100)
            from reply in Generators.Bool
            select (h, id, seq, payload, reply)), t =>
        {
            var buffer = new byte[200];
            var n = PacketBuilder.WriteIpv4IcmpEcho(buffer, t.h, t.id, t.seq, t.payload, t.reply);
            return Ipv4Packet.TryParse(buffer.AsSpan(0, n), out var ip) && ip.Protocol == IpProtocol.Icmp
                   && IcmpV4Message.TryParse(ip.Payload, out var icmp)
                   && icmp.Type == (t.reply ? IcmpV4Type.EchoReply : IcmpV4Type.EchoRequest)
                   && icmp.Identifier == t.id && icmp.SequenceNumber == t.seq && icmp.Payload.SequenceEqual(t.payload)
                   && icmp.IsChecksumValid;
        }));

    [Fact]
    public void Builder_TcpFlagsSetter_KeepsDataOffset()
    {
        var buffer = new byte[100];
        var n = PacketBuilder.WriteIpv4Tcp(buffer, new Ipv4Header(KnownVectors.Client, KnownVectors.Server),
            new TcpHeader(1, 2, 3, 4, TcpFlags.Syn), [], [2, 4, 5, 0xB4]);
        Ipv4Packet.TryParse(buffer.AsSpan(0, n), out var ip);
        TcpSegment.TryParse(ip.Payload, out var tcp);
        tcp.Flags = TcpFlags.Syn | TcpFlags.Ack | TcpFlags.Ae;
        Assert.Equal(24, tcp.HeaderLength);
        Assert.Equal(TcpFlags.Syn | TcpFlags.Ack | TcpFlags.Ae, tcp.Flags);
    }
}
