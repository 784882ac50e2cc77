using FsCheck;
using FsCheck.Fluent;
using NatKit.Packets;
using NatKit.PortMapping.NatPmp;
using NatKit.PortMapping.Pcp;

namespace NatKit.PortMapping.Tests;

/// <summary>NAT-PMP (RFC 6886) and PCP (RFC 6887) wire views: round trips, every length checked, no throw.</summary>
public sealed class CodecTests
{
    private static readonly Gen<byte[]> Bytes = from n in Gen.Choose(0, 1200)
                                                from b in Gen.ArrayOf(ArbMap.Default.GeneratorFor<byte>(), n)
                                                select b;

    [Fact]
    public void Rfc6886_MappingRequest_RoundTrips()
    {
        Prop.ForAll(Gen.Choose(0, 65535).ToArbitrary(), Gen.Choose(0, 65535).ToArbitrary(), ArbMap.Default.ArbFor<uint>(), (i, e, life) =>
        {
            var b = new byte[12];
            Assert.Equal(12, NatPmpRequest.WriteMappingRequest(b, NatPmpOpcode.MapTcp, (ushort)i, (ushort)e, life));
            Assert.True(NatPmpRequest.TryParse(b, out var r));
            Assert.True(r.IsMapping);
            Assert.Equal((byte)NatPmpOpcode.MapTcp, r.Opcode);
            Assert.Equal((ushort)i, r.InternalPort);
            Assert.Equal((ushort)e, r.SuggestedExternalPort);
            Assert.Equal(life, r.RequestedLifetime);
            Assert.Equal(0, r.Reserved);
        }).QuickCheckThrowOnFailure();
    }

    [Fact]
    public void Rfc6886_Responses_RoundTrip()
    {
        var b = new byte[16];
        NatPmpResponse.WriteExternalAddress(b, NatPmpResult.Success, 77, Ipv4Address.Parse("203.0.113.9"));
        Assert.True(NatPmpResponse.TryParse(b.AsSpan(0, 12), out var a));
        Assert.True(a.HasExternalAddress);
        Assert.Equal((128, 0, 77u), (a.Opcode, a.RequestOpcode, a.Epoch));
        Assert.Equal(Ipv4Address.Parse("203.0.113.9"), a.ExternalAddress);
        NatPmpResponse.WriteMapping(b, NatPmpOpcode.MapUdp, NatPmpResult.Success, 5, 4000, 6000, 7200);
        Assert.True(NatPmpResponse.TryParse(b, out var m));
        Assert.True(m.HasMapping);
        Assert.Equal((4000, 6000, 7200u), (m.InternalPort, m.MappedExternalPort, m.Lifetime));
    }

    [Theory]
    [InlineData(new byte[] { 0 }, false)]
    [InlineData(new byte[] { 0, 0 }, true)] // external address request
    [InlineData(new byte[] { 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0 }, false)] // a mapping request one byte short
    [InlineData(new byte[] { 1, 1 }, true)] // another version: parsed so it can be refused
    [InlineData(new byte[] { 0, 9 }, true)] // unknown opcode: parsed so it can be refused
    public void Rfc6886_Request_Lengths(byte[] bytes, bool ok) => Assert.Equal(ok, NatPmpRequest.TryParse(bytes, out _));

    [Theory]
    [InlineData(new byte[] { 0, 128, 0, 0, 0, 0, 0, 1, 1, 2, 3 }, false)] // success address response one byte short
    [InlineData(new byte[] { 0, 129, 0, 3, 0, 0, 0, 1 }, true)] // error: header alone is enough
    [InlineData(new byte[] { 0, 1, 0, 0, 0, 0, 0, 1 }, false)] // a request, not a response
    [InlineData(new byte[] { 2, 129, 0, 0, 0, 0, 0, 1 }, false)] // PCP, not NAT-PMP
    public void Rfc6886_Response_Lengths(byte[] bytes, bool ok) => Assert.Equal(ok, NatPmpResponse.TryParse(bytes, out _));

    [Fact]
    public void Rfc6887_MapRequest_RoundTrips_WithOptions()
    {
        var nonce = new byte[12];
        Random.Shared.NextBytes(nonce);
        var b = new byte[Pcp.Pcp.MaxMessageLength];
        var n = PcpRequest.WriteHeader(b, PcpOpcode.Map, 3600, Pcp.Pcp.Mapped(Ipv4Address.Parse("192.168.1.10")));
        n += PcpMapData.Write(b.AsSpan(n), nonce, 17, 4000, 6000, Pcp.Pcp.AnyIpv4);
        n += PcpOptionReader.WriteThirdParty(b.AsSpan(n), Pcp.Pcp.Mapped(Ipv4Address.Parse("192.168.1.11")));
        n += PcpOptionReader.Write(b.AsSpan(n), PcpOptionCode.PreferFailure, default);
        n += PcpOptionReader.WriteFilter(b.AsSpan(n), 120, 53, Pcp.Pcp.Mapped(Ipv4Address.Parse("198.51.100.0")));
        Assert.Equal(24 + 36 + 20 + 4 + 24, n);
        Assert.True(PcpRequest.TryParse(b.AsSpan(0, n), out var r));
        Assert.Equal(PcpResult.Success, PcpRequestValidation.Check(r));
        Assert.Equal((byte)PcpOpcode.Map, r.Opcode);
        Assert.Equal(3600u, r.Lifetime);
        Assert.Equal(Ipv4Address.Parse("192.168.1.10"), Pcp.Pcp.Unmapped(r.ClientAddress));
        Assert.True(r.TryGetMap(out var map));
        Assert.True(map.Nonce.SequenceEqual(nonce));
        Assert.Equal((17, 4000, 6000), (map.Protocol, map.InternalPort, map.ExternalPort));
        var options = r.Options;
        var codes = new List<byte>();
        while (options.TryReadNext(out var code, out var data))
        {
            codes.Add(code);
            if (code == (byte)PcpOptionCode.ThirdParty) Assert.Equal(Ipv4Address.Parse("192.168.1.11"), Pcp.Pcp.Unmapped(Ipv6Address.Read(data)));
            if (code == (byte)PcpOptionCode.Filter) Assert.Equal((120, 53), (data[1], (data[2] << 8) | data[3]));
        }

        Assert.False(options.IsMalformed);
        Assert.Equal([1, 2, 3], codes);
    }

    [Fact]
    public void Rfc6887_PeerResponse_RoundTrips()
    {
        var b = new byte[24 + 56];
        PcpResponse.WriteHeader(b, (byte)PcpOpcode.Peer, PcpResult.Success, 120, 9);
        PcpPeerData.Write(b.AsSpan(24), new byte[12], 6, 4000, 6001, Pcp.Pcp.Mapped(Ipv4Address.Parse("203.0.113.1")), 443,
            Pcp.Pcp.Mapped(Ipv4Address.Parse("198.51.100.7")));
        Assert.True(PcpResponse.TryParse(b, out var r));
        Assert.Equal((PcpResult.Success, 120u, 9u), (r.Result, r.Lifetime, r.Epoch));
        Assert.True(r.TryGetPeer(out var peer));
        Assert.Equal((6001, 443), (peer.Map.ExternalPort, peer.RemotePort));
        Assert.Equal(Ipv4Address.Parse("198.51.100.7"), Pcp.Pcp.Unmapped(peer.RemoteAddress));
        Assert.False(r.TryGetMap(out _));
    }

    [Theory]
    [InlineData(1, null)] // too short to answer
    [InlineData(24, null)] // a response (R bit) is dropped
    public void Rfc6887_Section8_3_Drops(int length, PcpResult? expected)
    {
        var b = new byte[length];
        b[0] = 2;
        if (length > 1) b[1] = 0x81;
        Assert.Equal(expected, PcpRequest.TryParse(b, out var r) ? PcpRequestValidation.Check(r) : null);
    }

    [Theory]
    [InlineData(0, 24, PcpResult.UnsupportedVersion)] // NAT-PMP's version, when PCP alone is served
    [InlineData(3, 24, PcpResult.UnsupportedVersion)]
    [InlineData(2, 22, PcpResult.MalformedRequest)] // short header
    [InlineData(2, 26, PcpResult.MalformedRequest)] // not a multiple of 4
    [InlineData(2, 1104, PcpResult.MalformedRequest)] // longer than 1100
    [InlineData(2, 56, PcpResult.MalformedRequest)] // MAP data cut short
    [InlineData(2, 60, PcpResult.Success)]
    public void Rfc6887_Section8_3_Validation(byte version, int length, PcpResult expected)
    {
        var b = new byte[length];
        b[0] = version;
        b[1] = (byte)PcpOpcode.Map;
        Assert.True(PcpRequest.TryParse(b, out var r));
        Assert.Equal(expected, PcpRequestValidation.Check(r));
    }

    [Theory]
    [InlineData(new byte[] { 1, 0, 0, 16, 0, 0, 0, 0 }, true)] // THIRD_PARTY claiming 16 bytes, 4 present
    [InlineData(new byte[] { 2, 0, 0, 0 }, false)]
    [InlineData(new byte[] { 2, 0, 0 }, true)] // header cut
    [InlineData(new byte[] { 130, 0, 0, 1, 9, 0, 0, 0 }, false)] // one data byte padded to 4
    [InlineData(new byte[] { 130, 0, 0, 1, 9 }, true)] // padding missing
    public void Rfc6887_Section7_3_OptionLengths(byte[] options, bool malformed)
    {
        var reader = new PcpOptionReader(options);
        while (reader.TryReadNext(out _, out _))
        {
        }

        Assert.Equal(malformed, reader.IsMalformed);
    }

    [Fact]
    public void RandomBytes_NeverThrow_OutOfAnyParser()
    {
        Prop.ForAll(Bytes.ToArbitrary(), bytes =>
        {
            Touch(bytes);
            return true;
        }).QuickCheckThrowOnFailure();
    }

    [Fact]
    public void MutatedValidMessages_NeverThrow_OutOfAnyParser()
    {
        var b = new byte[24 + 36 + 24];
        var n = PcpRequest.WriteHeader(b, PcpOpcode.Map, 3600, Pcp.Pcp.AnyIpv4);
        n += PcpMapData.Write(b.AsSpan(n), new byte[12], 17, 1, 2, Pcp.Pcp.AnyIpv4);
        PcpOptionReader.WriteFilter(b.AsSpan(n), 0, 0, Pcp.Pcp.AnyIpv4);
        var gen = from i in Gen.Choose(0, b.Length - 1)
                  from v in ArbMap.Default.GeneratorFor<byte>()
                  from cut in Gen.Choose(0, b.Length)
                  select (i, v, cut);
        Prop.ForAll(gen.ToArbitrary(), t =>
        {
            var m = b.ToArray();
            m[t.i] = t.v;
            Touch(m.AsSpan(0, t.cut).ToArray());
            m[1] |= 0x80; // and as a response
            Touch(m.AsSpan(0, t.cut).ToArray());
        }).QuickCheckThrowOnFailure();
    }

    /// <summary>Reads every field each parser says is there.</summary>
    private static void Touch(byte[] bytes)
    {
        if (NatPmpRequest.TryParse(bytes, out var q))
        {
            _ = (q.Version, q.Opcode);
            if (q.Version == 0 && q.IsMapping) _ = (q.InternalPort, q.SuggestedExternalPort, q.RequestedLifetime, q.Reserved);
        }

        if (NatPmpResponse.TryParse(bytes, out var a))
        {
            _ = (a.Result, a.Epoch);
            if (a.HasExternalAddress) _ = a.ExternalAddress;
            if (a.HasMapping) _ = (a.InternalPort, a.MappedExternalPort, a.Lifetime);
        }

        if (PcpRequest.TryParse(bytes, out var r) && PcpRequestValidation.Check(r) == PcpResult.Success)
        {
            _ = (r.Lifetime, r.ClientAddress);
            if (r.TryGetMap(out var map)) _ = (map.Nonce.Length, map.Protocol, map.InternalPort, map.ExternalPort, map.ExternalAddress);
            if (r.TryGetPeer(out var peer)) _ = (peer.RemotePort, peer.RemoteAddress);
            var o = r.Options;
            while (o.TryReadNext(out _, out var data)) _ = data.Length;
        }

        if (PcpResponse.TryParse(bytes, out var s))
        {
            _ = (s.Result, s.Lifetime, s.Epoch);
            if (s.TryGetMap(out var map)) _ = map.ExternalAddress;
            if (s.TryGetPeer(out var peer)) _ = peer.RemoteAddress;
            var o = s.Options;
            while (o.TryReadNext(out _, out var data)) _ = data.Length;
        }
    }
}
