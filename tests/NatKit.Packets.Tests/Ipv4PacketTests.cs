using System.Buffers.Binary;
using FsCheck;
using FsCheck.Fluent;

namespace NatKit.Packets.Tests;

public sealed class Ipv4PacketTests
{
    [Fact]
    public void Rfc791_KnownDatagram_ParsesEveryField()
    {
        var bytes = KnownVectors.Udp;
        Assert.True(Ipv4Packet.TryParse(bytes, out var ip));
        Assert.Equal(4, ip.Version);
        Assert.Equal(20, ip.HeaderLength);
        Assert.Equal(33, ip.TotalLength);
        Assert.Equal(0x1234, ip.Identification);
        Assert.True(ip.DontFragment);
        Assert.False(ip.MoreFragments);
        Assert.Equal(0, ip.FragmentOffset);
        Assert.False(ip.IsFragment);
        Assert.Equal(64, ip.Ttl);
        Assert.Equal(IpProtocol.Udp, ip.Protocol);
        Assert.Equal(0x3C5C, ip.HeaderChecksum);
        Assert.Equal(KnownVectors.Client, ip.Source);
        Assert.Equal(KnownVectors.Server, ip.Destination);
        Assert.Equal(13, ip.Payload.Length);
        Assert.True(ip.Options.IsEmpty);
        Assert.True(ip.IsHeaderChecksumValid);
        Assert.Equal(ip.HeaderChecksum, ip.ComputeHeaderChecksum());
    }

    [Fact]
    public void Rfc791_TruncatedDatagram_IsRejectedAtEveryLength()
    {
        var bytes = KnownVectors.Udp;
        for (var n = 0; n < bytes.Length; n++)
        {
            Assert.False(Ipv4Packet.TryParse(bytes.AsSpan(0, n), out _), $"accepted {n} of {bytes.Length} bytes");
        }
    }

    [Fact]
    public void Rfc791_LinkPadding_IsCutToTotalLength()
    {
        var bytes = new byte[KnownVectors.Udp.Length + 13];
        KnownVectors.Udp.CopyTo(bytes, 0);
        Assert.True(Ipv4Packet.TryParse(bytes, out var ip));
        Assert.Equal(KnownVectors.Udp.Length, ip.Buffer.Length);
        Assert.Equal(13, ip.Payload.Length);
    }

    [Theory]
    [InlineData(0x44, "IHL 4 is below the minimum 5")]
    [InlineData(0x40, "IHL 0")]
    [InlineData(0x4F, "IHL 15 (60 bytes) is longer than the 33-byte datagram")]
    [InlineData(0x65, "version 6")]
    [InlineData(0x35, "version 3")]
    public void Rfc791_BadVersionOrHeaderLength_IsRejected(byte versionIhl, string why)
    {
        var bytes = KnownVectors.Udp;
        bytes[0] = versionIhl;
        Assert.False(Ipv4Packet.TryParse(bytes, out _), why);
        Assert.False(Ipv4Packet.TryParseQuoted(bytes, out _), why);
    }

    [Fact]
    public void Rfc791_HeaderLongerThanBuffer_IsRejected()
    {
        var bytes = KnownVectors.Udp.AsSpan(0, 24).ToArray();
        bytes[0] = 0x47; // 28-byte header in 24 bytes
        BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(2), 24);
        Assert.False(Ipv4Packet.TryParse(bytes, out _));
        Assert.False(Ipv4Packet.TryParseQuoted(bytes, out _));
    }

    [Theory]
    [InlineData(19)]
    [InlineData(0)]
    [InlineData(34)]
    [InlineData(65535)]
    public void Rfc791_TotalLengthBelowHeaderOrBeyondBuffer_IsRejected(int total)
    {
        var bytes = KnownVectors.Udp;
        BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(2), (ushort)total);
        Assert.False(Ipv4Packet.TryParse(bytes, out _));
    }

    [Fact]
    public void Quoted_AcceptsTotalLengthBeyondBuffer_AndReportsTruncation()
    {
        var bytes = KnownVectors.Udp.AsSpan(0, 28).ToArray();
        Assert.False(Ipv4Packet.TryParse(bytes, out _));
        Assert.True(Ipv4Packet.TryParseQuoted(bytes, out var quoted));
        Assert.True(quoted.IsTruncated);
        Assert.Equal(8, quoted.Payload.Length);
        Assert.Equal(33, quoted.TotalLength);
    }

    [Fact]
    public void Rfc791_FragmentFields_ReadAndWrite()
    {
        var bytes = KnownVectors.Udp;
        Assert.True(Ipv4Packet.TryParse(bytes, out var ip));
        ip.DontFragment = false;
        ip.MoreFragments = true;
        ip.FragmentOffset = 1480;
        Assert.Equal(0x2000 | 185, ip.FlagsAndFragmentOffset);
        Assert.True(ip.IsFragment);
        Assert.False(ip.IsFirstFragment);
        Assert.Equal(1480, ip.FragmentOffset);
        Assert.Throws<ArgumentOutOfRangeException>(() => SetOffset(bytes, 1481));
        Assert.Throws<ArgumentOutOfRangeException>(() => SetOffset(bytes, 65536));
    }

    private static void SetOffset(byte[] bytes, int offset)
    {
        Ipv4Packet.TryParse(bytes, out var ip);
        ip.FragmentOffset = offset;
    }

    [Fact]
    public void Rfc1624_RewriteSourceDestinationTtl_KeepsHeaderChecksumValid() =>
        Check.One(Generators.Config, Prop.ForAll(Generators.Arb(
            from h in Generators.Ipv4
            from s in Generators.Address
            from d in Generators.Address
            from ttl in Generators.Byte
            from flags in Generators.UInt16
            from options in Gen.Choose(0, 10)
            select (h, s, d, ttl, flags, options)), t =>
        {
            var buffer = new byte[100];
            var options = new byte[t.options * 4];
            options.AsSpan().Fill(1);
            PacketBuilder.WriteIpv4Header(buffer, t.h, IpProtocol.Udp, 0, options);
            Ipv4Packet.TryParse(buffer, out var ip);
            ip.RewriteSource(t.s);
            ip.RewriteDestination(t.d);
            ip.RewriteTtl(t.ttl);
            ip.RewriteFlagsAndFragmentOffset(t.flags);
            return ip.HeaderChecksum == ip.ComputeHeaderChecksum() && ip.Source == t.s && ip.Destination == t.d
                   && ip.Ttl == t.ttl && ip.FlagsAndFragmentOffset == t.flags;
        }));

    [Fact]
    public void Builder_Ipv4Header_RoundTrips() =>
        Check.One(Generators.Config, Prop.ForAll(Generators.Arb(
            from h in Generators.Ipv4
            from p in Generators.Byte
            from len in Gen.Choose(0, 200)
            select (h, p, len)), t =>
        {
            var buffer = new byte[300];
            var headerLength = PacketBuilder.WriteIpv4Header(buffer, t.h, (IpProtocol)t.p, t.len);
            return Ipv4Packet.TryParse(buffer, out var ip)
                   && headerLength == 20 && ip.TotalLength == 20 + t.len && ip.Source == t.h.Source
                   && ip.Destination == t.h.Destination && ip.Ttl == t.h.Ttl && ip.Identification == t.h.Identification
                   && ip.DontFragment == t.h.DontFragment && ip.TypeOfService == t.h.TypeOfService
                   && ip.Protocol == (IpProtocol)t.p && !ip.IsFragment && ip.IsHeaderChecksumValid;
        }));

    [Fact]
    public void Builder_RejectsBadOptionsAndSmallBuffers()
    {
        var h = new Ipv4Header(KnownVectors.Client, KnownVectors.Server);
        Assert.Throws<ArgumentException>(() => PacketBuilder.WriteIpv4Header(new byte[60], h, IpProtocol.Udp, 0, new byte[3]));
        Assert.Throws<ArgumentException>(() => PacketBuilder.WriteIpv4Header(new byte[80], h, IpProtocol.Udp, 0, new byte[44]));
        Assert.Throws<ArgumentException>(() => PacketBuilder.WriteIpv4Header(new byte[19], h, IpProtocol.Udp, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => PacketBuilder.WriteIpv4Header(new byte[20], h, IpProtocol.Udp, 65516));
    }
}
