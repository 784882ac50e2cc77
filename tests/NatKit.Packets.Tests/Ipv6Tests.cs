using System.Buffers.Binary;
using FsCheck;
using FsCheck.Fluent;

namespace NatKit.Packets.Tests;

public sealed class Ipv6Tests
{
    [Fact]
    public void Rfc8200_KnownPacket_ParsesEveryField()
    {
        Assert.True(Ipv6Packet.TryParse(KnownVectors6.IcmpEcho, out var ip));
        Assert.Equal(6, ip.Version);
        Assert.Equal(0x12, ip.TrafficClass);
        Assert.Equal(0xABCDEu, ip.FlowLabel);
        Assert.Equal(12, ip.PayloadLength);
        Assert.Equal(IpProtocol.IcmpV6, ip.NextHeader);
        Assert.Equal(64, ip.HopLimit);
        Assert.Equal(KnownVectors6.A, ip.Source);
        Assert.Equal(KnownVectors6.B, ip.Destination);
        Assert.False(ip.IsTruncated);
        Assert.True(ip.TryGetHeaderChain(out var chain));
        Assert.Equal(0, chain.ExtensionHeaderCount);
        Assert.Equal(IpProtocol.IcmpV6, chain.UpperLayerProtocol);
        Assert.Equal(40, chain.UpperLayerOffset);
        Assert.False(chain.HasFragmentHeader);
        Assert.True(chain.HasUpperLayerHeader);
    }

    [Fact]
    public void Rfc8200_TruncatedOrWrongVersion_IsRejected()
    {
        var bytes = KnownVectors6.IcmpEcho;
        for (var n = 0; n < bytes.Length; n++)
        {
            Assert.False(Ipv6Packet.TryParse(bytes.AsSpan(0, n), out _), $"{n} bytes");
        }

        for (var n = 0; n < 40; n++)
        {
            Assert.False(Ipv6Packet.TryParseQuoted(bytes.AsSpan(0, n), out _), $"{n} bytes quoted");
        }

        Assert.True(Ipv6Packet.TryParseQuoted(bytes.AsSpan(0, 44), out var quoted));
        Assert.True(quoted.IsTruncated);
        bytes[0] = 0x41;
        Assert.False(Ipv6Packet.TryParse(bytes, out _));
        Assert.False(Ipv6Packet.TryParseQuoted(bytes, out _));
    }

    [Fact]
    public void Rfc8200_TrafficClassAndFlowLabelSetters_KeepTheOtherFields()
    {
        var bytes = KnownVectors6.IcmpEcho;
        Ipv6Packet.TryParse(bytes, out var ip);
        ip.TrafficClass = 0xFF;
        Assert.Equal(0xABCDEu, ip.FlowLabel);
        ip.FlowLabel = 0x12345;
        Assert.Equal(0xFF, ip.TrafficClass);
        Assert.Equal(0x12345u, ip.FlowLabel);
        Assert.Equal(6, ip.Version);
    }

    [Fact]
    public void Rfc8200_Section4_HeaderChain_WalksHopByHopDestinationOptionsAndFragment()
    {
        Assert.True(Ipv6Packet.TryParse(KnownVectors6.UdpWithChain, out var ip));
        Assert.True(ip.TryGetHeaderChain(out var chain));
        Assert.Equal(3, chain.ExtensionHeaderCount);
        Assert.Equal(IpProtocol.Udp, chain.UpperLayerProtocol);
        Assert.Equal(72, chain.UpperLayerOffset);
        Assert.True(chain.HasFragmentHeader);
        Assert.Equal(64, chain.FragmentHeaderOffset);
        Assert.Equal(0, chain.FragmentOffset);
        Assert.True(chain.MoreFragments);
        Assert.True(chain.IsFragment);
        Assert.Equal(0xDEADBEEFu, chain.FragmentIdentification);
        Assert.True(chain.HasUpperLayerHeader);
        Assert.True(UdpDatagram.TryParse(ip.Buffer[chain.UpperLayerOffset..], out var udp));
        Assert.Equal(5000, udp.SourcePort);
        Assert.True(udp.IsChecksumValid(ip.Source, ip.Destination));

        var reader = ip.ExtensionHeaders;
        Assert.True(reader.TryReadNext(out var t1, out var h1));
        Assert.Equal(IpProtocol.HopByHop, t1);
        Assert.Equal(8, h1.Length);
        Assert.True(reader.TryReadNext(out var t2, out var h2));
        Assert.Equal(IpProtocol.Ipv6DestinationOptions, t2);
        Assert.Equal(16, h2.Length);
        Assert.True(reader.TryReadNext(out var t3, out _));
        Assert.Equal(IpProtocol.Ipv6Fragment, t3);
        Assert.False(reader.TryReadNext(out _, out _));
        Assert.Equal(IpProtocol.Udp, reader.NextHeader);
        Assert.False(reader.IsMalformed);
    }

    [Fact]
    public void Rfc8200_Section4_5_LaterFragment_HasNoUpperLayerHeader()
    {
        var bytes = KnownVectors6.UdpWithChain;
        BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(66), (185 << 3) | 0); // offset 1480, last fragment
        Ipv6Packet.TryParse(bytes, out var ip);
        Assert.True(ip.TryGetHeaderChain(out var chain));
        Assert.Equal(1480, chain.FragmentOffset);
        Assert.False(chain.MoreFragments);
        Assert.True(chain.IsFragment);
        Assert.False(chain.HasUpperLayerHeader);
        Assert.Equal(IpProtocol.Udp, chain.UpperLayerProtocol);
    }

    [Fact]
    public void Rfc6946_AtomicFragment_IsNotAFragment()
    {
        var bytes = KnownVectors6.UdpWithChain;
        BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(66), 0);
        Ipv6Packet.TryParse(bytes, out var ip);
        Assert.True(ip.TryGetHeaderChain(out var chain));
        Assert.True(chain.HasFragmentHeader);
        Assert.False(chain.IsFragment);
    }

    [Theory]
    [InlineData(IpProtocol.Esp)]
    [InlineData(IpProtocol.NoNextHeader)]
    [InlineData(IpProtocol.Tcp)]
    [InlineData((IpProtocol)253)]
    public void Rfc8200_Walk_StopsAtNonExtensionHeaders(IpProtocol stop)
    {
        var bytes = KnownVectors6.UdpWithChain;
        bytes[40] = (byte)stop; // Hop-by-Hop's Next Header
        Ipv6Packet.TryParse(bytes, out var ip);
        Assert.True(ip.TryGetHeaderChain(out var chain));
        Assert.Equal(1, chain.ExtensionHeaderCount);
        Assert.Equal(stop, chain.UpperLayerProtocol);
        Assert.Equal(48, chain.UpperLayerOffset);
        Assert.Equal(stop != IpProtocol.NoNextHeader, chain.HasUpperLayerHeader);
    }

    [Fact]
    public void Rfc8200_Section4_1_HopByHopNotFirst_IsMalformed()
    {
        var bytes = KnownVectors6.UdpWithChain;
        bytes[48] = (byte)IpProtocol.HopByHop; // Destination Options says Hop-by-Hop follows
        Ipv6Packet.TryParse(bytes, out var ip);
        Assert.False(ip.TryGetHeaderChain(out _));
    }

    [Fact]
    public void Rfc8200_HeaderLengthBeyondPacket_IsMalformed()
    {
        var bytes = KnownVectors6.UdpWithChain;
        bytes[49] = 200; // Destination Options claims 1608 bytes
        Ipv6Packet.TryParse(bytes, out var ip);
        Assert.False(ip.TryGetHeaderChain(out _));
        var reader = ip.ExtensionHeaders;
        Assert.True(reader.TryReadNext(out _, out _));
        Assert.False(reader.TryReadNext(out _, out _));
        Assert.True(reader.IsMalformed);
    }

    [Fact]
    public void Walk_IsBounded_OnALongChainOfDestinationOptions()
    {
        var bytes = new byte[40 + 8 * 100];
        PacketBuilder.WriteIpv6Header(bytes, new Ipv6Header(KnownVectors6.A, KnownVectors6.B), IpProtocol.Ipv6DestinationOptions, 800);
        for (var i = 0; i < 100; i++)
        {
            bytes[40 + i * 8] = (byte)IpProtocol.Ipv6DestinationOptions;
        }

        Ipv6Packet.TryParse(bytes, out var ip);
        Assert.False(ip.TryGetHeaderChain(out _));
        var reader = ip.ExtensionHeaders;
        var n = 0;
        while (reader.TryReadNext(out _, out _))
        {
            n++;
        }

        Assert.Equal(Ipv6ExtensionHeaderReader.MaxHeaders, n);
        Assert.True(reader.IsMalformed);
    }

    [Fact]
    public void Rfc8200_TwoFragmentHeaders_AreMalformed()
    {
        var bytes = new byte[40 + 8 + 8 + 8];
        PacketBuilder.WriteIpv6Header(bytes, new Ipv6Header(KnownVectors6.A, KnownVectors6.B), IpProtocol.Ipv6Fragment, 24);
        bytes[40] = (byte)IpProtocol.Ipv6Fragment;
        bytes[48] = (byte)IpProtocol.Udp;
        Ipv6Packet.TryParse(bytes, out var ip);
        Assert.False(ip.TryGetHeaderChain(out _));
    }

    [Fact]
    public void Rfc4302_AuthenticationHeader_IsWalkedWithItsOwnLengthUnit()
    {
        var bytes = new byte[40 + 16 + 8];
        PacketBuilder.WriteIpv6Header(bytes, new Ipv6Header(KnownVectors6.A, KnownVectors6.B), IpProtocol.AuthenticationHeader, 24);
        bytes[40] = (byte)IpProtocol.Udp;
        bytes[41] = 2; // (2 + 2) * 4 = 16 bytes
        Ipv6Packet.TryParse(bytes, out var ip);
        Assert.True(ip.TryGetHeaderChain(out var chain));
        Assert.Equal(56, chain.UpperLayerOffset);
    }

    [Fact]
    public void Rfc4443_KnownEcho_ParsesAndVerifies()
    {
        Ipv6Packet.TryParse(KnownVectors6.IcmpEcho, out var ip);
        Assert.True(IcmpV6Message.TryParse(ip.Payload, out var icmp));
        Assert.Equal(IcmpV6Type.EchoRequest, icmp.Type);
        Assert.True(icmp.IsEcho);
        Assert.False(icmp.IsError);
        Assert.Equal(0x1234, icmp.Identifier);
        Assert.Equal(1, icmp.SequenceNumber);
        Assert.Equal(0x333E, icmp.Checksum);
        Assert.True(icmp.IsChecksumValid(ip.Source, ip.Destination));
        Assert.False(icmp.IsChecksumValid(ip.Destination, ip.Destination));
        Assert.Equal(icmp.Checksum, icmp.ComputeChecksum(ip.Source, ip.Destination));
        for (var n = 0; n < 8; n++)
        {
            Assert.False(IcmpV6Message.TryParse(ip.Payload[..n], out _));
        }
    }

    [Fact]
    public void Rfc4443_PacketTooBig_QuotesAtMost1280Bytes_AndCarriesMtu()
    {
        var original = new byte[1500];
        var h = new Ipv6Header(KnownVectors6.A, KnownVectors6.B);
        PacketBuilder.WriteIpv6Udp(original, h, 1, 2, new byte[1500 - 48]);
        var buffer = new byte[2000];
        var router = new Ipv6Header(Ipv6Address.Parse("2001:db8::ff"), KnownVectors6.A);
        var n = PacketBuilder.WriteIpv6PacketTooBig(buffer, router, 1280, original);
        Assert.Equal(1280, n);
        Ipv6Packet.TryParse(buffer.AsSpan(0, n), out var ip);
        Assert.True(IcmpV6Message.TryParse(ip.Payload, out var icmp));
        Assert.True(icmp.IsError);
        Assert.Equal(1280u, icmp.Mtu);
        Assert.True(icmp.IsChecksumValid(ip.Source, ip.Destination));
        Assert.True(icmp.TryGetQuotedPacket(out var quoted));
        Assert.True(quoted.IsTruncated);
        Assert.Equal(KnownVectors6.A, quoted.Source);
        Assert.True(quoted.TryGetHeaderChain(out var chain));
        Assert.True(QuotedTransportHeader.TryParse(quoted.Buffer[chain.UpperLayerOffset..], chain.UpperLayerProtocol, out var l4));
        Assert.Equal(1, l4.SourcePort);
        Assert.Throws<ArgumentException>(() => PacketBuilder.WriteIpv6IcmpError(buffer, router, IcmpV6Type.EchoReply, 0, 0, original));
    }

    [Fact]
    public void Builder_Ipv6Udp_RoundTrips() =>
        Check.One(Generators.Config, Prop.ForAll(Generators.Arb(
            from s in Generators.Address6
            from d in Generators.Address6
            from hop in Generators.Byte
            from tc in Generators.Byte
            from flow in Gen.Choose(0, 0xFFFFF)
            from sp in Generators.UInt16
            from dp in Generators.UInt16
            from payload in Generators.Bytes(300)
            select (new Ipv6Header(s, d, hop, tc, (uint)flow), sp, dp, payload)), t =>
        {
            var buffer = new byte[400];
            var n = PacketBuilder.WriteIpv6Udp(buffer, t.Item1, t.sp, t.dp, t.payload);
            return Ipv6Packet.TryParse(buffer.AsSpan(0, n), out var ip)
                   && new Ipv6Header(ip.Source, ip.Destination, ip.HopLimit, ip.TrafficClass, ip.FlowLabel) == t.Item1
                   && ip.NextHeader == IpProtocol.Udp && UdpDatagram.TryParse(ip.Payload, out var udp)
                   && udp.SourcePort == t.sp && udp.DestinationPort == t.dp && udp.Payload.SequenceEqual(t.payload)
                   && udp.Checksum != 0 && udp.IsChecksumValid(ip.Source, ip.Destination);
        }));

    [Fact]
    public void Builder_Ipv6TcpAndEcho_RoundTrip() =>
        Check.One(Generators.Config, Prop.ForAll(Generators.Arb(
            from s in Generators.Address6
            from d in Generators.Address6
            from tcp in Generators.Tcp
            from id in Generators.UInt16
            from payload in Generators.Bytes(200)
            select (new Ipv6Header(s, d), tcp, id, payload)), t =>
        {
            var buffer = new byte[400];
            var n = PacketBuilder.WriteIpv6Tcp(buffer, t.Item1, t.tcp, t.payload);
            var tcpOk = Ipv6Packet.TryParse(buffer.AsSpan(0, n), out var ip) && TcpSegment.TryParse(ip.Payload, out var seg)
                        && seg.SequenceNumber == t.tcp.SequenceNumber && seg.IsChecksumValid(ip.Source, ip.Destination);
            n = PacketBuilder.WriteIpv6IcmpEcho(buffer, t.Item1, t.id, 9, t.payload, reply: true);
            return tcpOk && Ipv6Packet.TryParse(buffer.AsSpan(0, n), out var ip6) && IcmpV6Message.TryParse(ip6.Payload, out var icmp)
                   && icmp.Type == IcmpV6Type.EchoReply && icmp.Identifier == t.id && icmp.SequenceNumber == 9
                   && icmp.Payload.SequenceEqual(t.payload) && icmp.IsChecksumValid(ip6.Source, ip6.Destination);
        }));

    [Fact]
    public void Rfc1624_IcmpV6IdentifierRewrite_EqualsRecomputation() =>
        Check.One(Generators.Config, Prop.ForAll(Generators.Arb(
            from s in Generators.Address6
            from d in Generators.Address6
            from id in Generators.UInt16
            from newId in Generators.UInt16
            from payload in Generators.Bytes(100)
            select (new Ipv6Header(s, d), id, newId, payload)), t =>
        {
            var buffer = new byte[200];
            var n = PacketBuilder.WriteIpv6IcmpEcho(buffer, t.Item1, t.id, 1, t.payload);
            Ipv6Packet.TryParse(buffer.AsSpan(0, n), out var ip);
            IcmpV6Message.TryParse(ip.Payload, out var icmp);
            icmp.RewriteIdentifier(t.newId);
            return icmp.Checksum == icmp.ComputeChecksum(ip.Source, ip.Destination);
        }));

    [Fact]
    public void Rfc1624_Ipv6AddressRewrite_UdpAndTcp_EqualsRecomputation() =>
        Check.One(Generators.Config, Prop.ForAll(Generators.Arb(
            from s in Generators.Address6
            from d in Generators.Address6
            from n in Generators.Address6
            from tcp in Generators.Tcp
            from payload in Generators.Bytes(100)
            select (new Ipv6Header(s, d), n, tcp, payload)), t =>
        {
            var buffer = new byte[300];
            var len = PacketBuilder.WriteIpv6Udp(buffer, t.Item1, 1, 2, t.payload);
            Ipv6Packet.TryParse(buffer.AsSpan(0, len), out var ip);
            UdpDatagram.TryParse(ip.Payload, out var udp);
            udp.UpdateChecksumForAddress(ip.Source, t.n);
            ip.Source = t.n;
            var udpOk = udp.Checksum == udp.ComputeChecksum(ip.Source, ip.Destination);
            len = PacketBuilder.WriteIpv6Tcp(buffer, t.Item1, t.tcp, t.payload);
            Ipv6Packet.TryParse(buffer.AsSpan(0, len), out ip);
            TcpSegment.TryParse(ip.Payload, out var seg);
            seg.UpdateChecksumForAddress(ip.Destination, t.n);
            ip.Destination = t.n;
            return udpOk && seg.Checksum == seg.ComputeChecksum(ip.Source, ip.Destination);
        }));

    [Fact]
    public void Ipv6Address_TextAndIPAddress_RoundTrip() =>
        Check.One(Generators.Config, Prop.ForAll(Generators.Arb(Generators.Address6), a =>
            Ipv6Address.Parse(a.ToString()) == a && Ipv6Address.FromIPAddress(a.ToIPAddress()) == a));

    [Fact]
    public void Ipv6Address_Classification()
    {
        Assert.True(Ipv6Address.Parse("fe80::1").IsLinkLocal);
        Assert.True(Ipv6Address.Parse("ff02::1").IsMulticast);
        Assert.True(Ipv6Address.Parse("::ffff:192.0.2.1").IsIpv4Mapped);
        Assert.False(Ipv6Address.TryParse("192.0.2.1", out _));
        Assert.Equal(Ipv6Address.Loopback, Ipv6Address.Parse("::1"));
    }
}
