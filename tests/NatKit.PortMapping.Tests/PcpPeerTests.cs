using NatKit.Nat;
using NatKit.Packets;
using NatKit.PortMapping.Pcp;
using static NatKit.PortMapping.Tests.HandlerHarness;

namespace NatKit.PortMapping.Tests;

/// <summary>PCP PEER (RFC 6887 section 12) through <see cref="PortMappingHandler"/> and the engine.</summary>
public sealed class PcpPeerTests
{
    private static readonly NatEndpoint Remote = new(Ipv4Address.Parse("198.51.100.7"), 5000);
    private static readonly NatEndpoint Stranger = new(Ipv4Address.Parse("198.51.100.8"), 5000);
    private static readonly Ipv4Address Neighbour = Ipv4Address.Parse("192.168.1.11");

    private static (PcpResult Result, uint Lifetime, ushort ExternalPort) Answer(byte[] reply)
    {
        if (!PcpResponse.TryParse(reply, out var r)) return ((PcpResult)255, 0, 0);
        return r.TryGetPeer(out var p) ? (r.Result, r.Lifetime, p.Map.ExternalPort) : (r.Result, r.Lifetime, (ushort)0);
    }

    [Fact]
    public void Rfc6887_12_Peer_MakesTheOutboundMapping_AndAnswersWithItsExternalEndpoint()
    {
        using var h = new HandlerHarness();
        var reply = h.Send(PcpPeer(7, 17, 40000, Remote, 600));
        Assert.True(PcpResponse.TryParse(reply, out var r));
        Assert.Equal((PcpResult.Success, (byte)PcpOpcode.Peer, 600u), (r.Result, r.Opcode, r.Lifetime));
        Assert.True(r.TryGetPeer(out var peer));
        Assert.All(peer.Map.Nonce.ToArray(), b => Assert.Equal(7, b));
        Assert.Equal((17, 40000), (peer.Map.Protocol, peer.Map.InternalPort));
        Assert.Equal(External, Pcp.Pcp.Unmapped(peer.Map.ExternalAddress));
        Assert.Equal((Remote.Port, Remote.Address), (peer.RemotePort, Pcp.Pcp.Unmapped(peer.RemoteAddress)));
        // Like the mapping the first packet would make (port-restricted cone): the peer gets in, a stranger does not,
        // and no explicit (anyone-may-reach) mapping was made.
        Assert.True(h.Reaches(Remote, peer.Map.ExternalPort));
        Assert.False(h.Reaches(Stranger, peer.Map.ExternalPort));
        Assert.Empty(h.Engine.ListMappings(h.Now));
    }

    [Fact]
    public void Rfc6887_12_Peer_HoldsTheMappingItsWholeLifetime_WithoutTraffic_AndZeroHandsItBack()
    {
        using var h = new HandlerHarness(); // UDP idle timeout 300 s
        var port = Answer(h.Send(PcpPeer(7, 17, 40000, Remote, 3600))).ExternalPort;
        h.Advance(TimeSpan.FromSeconds(3500));
        Assert.True(h.Reaches(Remote, port)); // long past the 300 s idle timeout
        h.Advance(TimeSpan.FromSeconds(101));
        Assert.False(h.Reaches(Remote, port)); // past the lifetime: gone

        var again = Answer(h.Send(PcpPeer(7, 17, 40001, Remote, 3600)));
        var refreshed = Answer(h.Send(PcpPeer(7, 17, 40001, Remote, 7200)));
        Assert.Equal(again.ExternalPort, refreshed.ExternalPort); // a refresh keeps the port
        Assert.Equal(7200u, refreshed.Lifetime);
        var zero = Answer(h.Send(PcpPeer(7, 17, 40001, Remote, 0)));
        Assert.Equal((PcpResult.Success, 0u), (zero.Result, zero.Lifetime));
        h.Advance(TimeSpan.FromSeconds(301));
        Assert.False(h.Reaches(Remote, again.ExternalPort)); // back on its idle timer, which ran out
    }

    [Fact]
    public void Rfc6887_15_PeerLifetime_IsRaisedToTheMinimum_AndCutToTheMaximum()
    {
        using var h = new HandlerHarness(Serving with { PortMappingMinLifetime = TimeSpan.FromSeconds(600), PortMappingMaxLifetime = TimeSpan.FromHours(2) });
        Assert.Equal(600u, Answer(h.Send(PcpPeer(1, 17, 1, Remote, 10))).Lifetime);
        // never less than the idle timer a packet would give it (300 s for UDP here)
        using var idle = new HandlerHarness(Serving with { PortMappingMinLifetime = TimeSpan.FromSeconds(30), AllowShortUdpTimeout = false });
        Assert.Equal(300u, Answer(idle.Send(PcpPeer(1, 17, 1, Remote, 40))).Lifetime);
        Assert.Equal(7200u, Answer(h.Send(PcpPeer(1, 17, 2, Remote, 999_999))).Lifetime);
    }

    [Fact]
    public void Rfc6887_12_Peer_OnAMappedEndpoint_ReportsTheMapsExternalPort()
    {
        using var h = new HandlerHarness();
        h.Send(PcpMap(7, 17, 40000, 41000, 3600));
        Assert.Equal((PcpResult.Success, (ushort)41000), (Answer(h.Send(PcpPeer(7, 17, 40000, Remote, 600))).Result,
            Answer(h.Send(PcpPeer(7, 17, 40000, Remote, 600))).ExternalPort));
        Assert.Single(h.Engine.ListMappings(h.Now)); // the MAP is untouched
    }

    [Fact]
    public void Rfc6887_13_1_Peer_ThirdParty_RefusedUnlessConfigured()
    {
        var tp = (Func<Span<byte>, int>)(s => PcpOptionReader.WriteThirdParty(s, Pcp.Pcp.Mapped(Neighbour)));
        using var h = new HandlerHarness();
        Assert.Equal(PcpResult.NotAuthorized, Answer(h.Send(PcpPeer(1, 17, 40000, Remote, 600, options: [tp]))).Result);
        using var allowed = new HandlerHarness(Serving with { AllowThirdPartyMappings = true });
        var reply = allowed.Send(PcpPeer(1, 17, 40000, Remote, 600, options: [tp]));
        Assert.Equal(PcpResult.Success, Answer(reply).Result);
        Assert.True(PcpResponse.TryParse(reply, out var r));
        var options = r.Options;
        Assert.True(options.TryReadNext(out var code, out _));
        Assert.Equal((byte)PcpOptionCode.ThirdParty, code); // echoed
        var outside = (Func<Span<byte>, int>)(s => PcpOptionReader.WriteThirdParty(s, Pcp.Pcp.Mapped(Remote.Address)));
        Assert.Equal(PcpResult.NotAuthorized, Answer(allowed.Send(PcpPeer(1, 17, 40000, Remote, 600, options: [outside]))).Result);
    }

    [Fact]
    public void Rfc6888_Req4_PeerQuota_HoldsUnderAFlood_AndOthersAreStillServed()
    {
        using var h = new HandlerHarness(Serving with { MaxMappingsPerHost = 8 });
        var results = Enumerable.Range(1, 200).Select(i => Answer(h.Send(PcpPeer(1, 17, (ushort)i, Remote, 600))).Result).ToList();
        Assert.Equal(8, results.Count(r => r == PcpResult.Success));
        Assert.Equal(192, results.Count(r => r == PcpResult.UserExceededQuota));
        Assert.Equal(PcpResult.Success, Answer(h.Send(PcpPeer(1, 17, 1, Remote, 600, client: Neighbour), new NatEndpoint(Neighbour, 1))).Result);
    }

    [Fact]
    public void Rfc6887_12_Peer_BadRequests_GetTheirResults()
    {
        using var h = new HandlerHarness();
        Assert.Equal(PcpResult.MalformedRequest, Answer(h.Send(PcpPeer(1, 17, 40000, Remote with { Port = 0 }, 600))).Result);
        Assert.Equal(PcpResult.MalformedRequest, Answer(h.Send(PcpPeer(1, 17, 0, Remote, 600))).Result);
        Assert.Equal(PcpResult.MalformedRequest, Answer(h.Send(PcpPeer(1, 17, 40000, new NatEndpoint(Neighbour, 80), 600))).Result);
        Assert.Equal(PcpResult.MalformedRequest, Answer(h.Send(PcpPeer(1, 17, 40000, new NatEndpoint(External, 80), 600))).Result);
        Assert.Equal(PcpResult.UnsupportedProtocol, Answer(h.Send(PcpPeer(1, 0, 40000, Remote, 600))).Result);
        Assert.Equal(PcpResult.UnsupportedProtocol, Answer(h.Send(PcpPeer(1, 132, 40000, Remote, 600))).Result);
        var v6 = PcpPeer(1, 17, 40000, Remote, 600);
        new Ipv6Address(0x2001_0db8_0000_0000UL, 1).Write(v6.AsSpan(24 + 40));
        Assert.Equal(PcpResult.UnsupportedProtocol, Answer(h.Send(v6)).Result);
        // FILTER and PREFER_FAILURE are MAP's options (section 7.3)
        var filter = (Func<Span<byte>, int>)(s => PcpOptionReader.WriteFilter(s, 128, 0, Pcp.Pcp.Mapped(Remote.Address)));
        var prefer = (Func<Span<byte>, int>)(s => PcpOptionReader.Write(s, PcpOptionCode.PreferFailure, default));
        Assert.Equal(PcpResult.UnsupportedOption, Answer(h.Send(PcpPeer(1, 17, 40000, Remote, 600, options: [filter]))).Result);
        Assert.Equal(PcpResult.UnsupportedOption, Answer(h.Send(PcpPeer(1, 17, 40000, Remote, 600, options: [prefer]))).Result);
        var optional = (Func<Span<byte>, int>)(s => PcpOptionReader.Write(s, (PcpOptionCode)200, [1, 2, 3, 4]));
        Assert.Equal(PcpResult.Success, Answer(h.Send(PcpPeer(1, 17, 40000, Remote, 600, options: [optional]))).Result);
        var cut = PcpPeer(1, 17, 40000, Remote, 600);
        Assert.Equal(PcpResult.MalformedRequest, Answer(h.Send(cut.AsSpan(0, 24 + 52))).Result);
        Assert.Equal(PcpResult.AddressMismatch, Answer(h.Send(PcpPeer(1, 17, 40000, Remote, 600, client: Neighbour))).Result);
    }
}
