using FsCheck;
using FsCheck.Fluent;
using NatKit.Nat;
using NatKit.Packets;
using NatKit.PortMapping.NatPmp;
using NatKit.PortMapping.Pcp;
using static NatKit.PortMapping.Tests.HandlerHarness;

namespace NatKit.PortMapping.Tests;

/// <summary>The PCP half of <see cref="PortMappingHandler"/>, per RFC 6887 section.</summary>
public sealed class PcpHandlerTests
{
    private static readonly NatEndpoint Remote = new(Ipv4Address.Parse("198.51.100.7"), 5000);
    private static readonly Ipv4Address Neighbour = Ipv4Address.Parse("192.168.1.11");

    private static PcpResult Result(byte[] reply) => PcpResponse.TryParse(reply, out var r) ? r.Result : (PcpResult)255;

    private static Func<Span<byte>, int> ThirdParty(Ipv4Address a) => s => PcpOptionReader.WriteThirdParty(s, Pcp.Pcp.Mapped(a));

    private static readonly Func<Span<byte>, int> PreferFailure = s => PcpOptionReader.Write(s, PcpOptionCode.PreferFailure, default);

    [Fact]
    public void Rfc6887_11_Map_GrantsTheSuggestedPort_AndEchoesTheNonce()
    {
        using var h = new HandlerHarness();
        var reply = h.Send(PcpMap(7, 17, 40000, 41000, 3600));
        Assert.True(PcpResponse.TryParse(reply, out var r));
        Assert.Equal((2, PcpResult.Success, 3600u), (r.Version, r.Result, r.Lifetime));
        Assert.True(r.TryGetMap(out var map));
        Assert.Equal(41000, map.ExternalPort);
        Assert.Equal(External, Pcp.Pcp.Unmapped(map.ExternalAddress));
        Assert.All(map.Nonce.ToArray(), b => Assert.Equal(7, b));
        Assert.True(h.Reaches(Remote, 41000));
    }

    [Fact]
    public void Rfc6887_11_3_RefreshWithAnotherNonce_IsNotAuthorized()
    {
        using var h = new HandlerHarness();
        h.Send(PcpMap(7, 17, 40000, 0, 3600));
        Assert.Equal(PcpResult.NotAuthorized, Result(h.Send(PcpMap(8, 17, 40000, 0, 3600))));
        Assert.Equal(PcpResult.NotAuthorized, Result(h.Send(PcpMap(8, 17, 40000, 0, 0)))); // nor delete
        Assert.Equal(PcpResult.Success, Result(h.Send(PcpMap(7, 17, 40000, 0, 3600))));
    }

    [Fact]
    public void Rfc6887_15_LifetimeZero_Deletes()
    {
        using var h = new HandlerHarness();
        PcpResponse.TryParse(h.Send(PcpMap(7, 17, 40000, 0, 3600)), out var granted);
        granted.TryGetMap(out var map);
        var port = map.ExternalPort;
        var reply = h.Send(PcpMap(7, 17, 40000, 0, 0));
        Assert.True(PcpResponse.TryParse(reply, out var deleted));
        Assert.Equal((PcpResult.Success, 0u), (deleted.Result, deleted.Lifetime));
        Assert.False(h.Reaches(Remote, port));
        Assert.Equal(PcpResult.Success, Result(h.Send(PcpMap(7, 17, 40000, 0, 0)))); // deleting nothing succeeds too
    }

    [Fact]
    public void Rfc6887_15_ProtocolZero_DeletesAllOfTheNonce()
    {
        using var h = new HandlerHarness();
        h.Send(PcpMap(7, 17, 1, 0, 3600));
        h.Send(PcpMap(7, 6, 2, 0, 3600));
        h.Send(PcpMap(9, 17, 3, 0, 3600));
        Assert.Equal(PcpResult.Success, Result(h.Send(PcpMap(7, 0, 0, 0, 0))));
        var left = Assert.Single(h.Engine.ListMappings(h.Now));
        Assert.Equal(3, left.Internal.Port);
    }

    [Fact]
    public void Rfc6887_15_LifetimeIsRaisedToTheMinimum_AndCutToTheMaximum()
    {
        using var h = new HandlerHarness(Serving with { PortMappingMaxLifetime = TimeSpan.FromHours(2) });
        PcpResponse.TryParse(h.Send(PcpMap(1, 17, 1, 0, 10)), out var low);
        Assert.Equal(120u, low.Lifetime);
        PcpResponse.TryParse(h.Send(PcpMap(1, 17, 2, 0, 999_999)), out var high);
        Assert.Equal(7200u, high.Lifetime);
    }

    [Fact]
    public void Rfc6887_8_3_AddressMismatch()
    {
        using var h = new HandlerHarness();
        Assert.Equal(PcpResult.AddressMismatch, Result(h.Send(PcpMap(1, 17, 1, 0, 60, client: Neighbour))));
        Assert.Empty(h.Engine.ListMappings(h.Now));
    }

    [Fact]
    public void Rfc6887_13_1_ThirdParty_RefusedUnlessConfigured()
    {
        using var h = new HandlerHarness();
        Assert.Equal(PcpResult.NotAuthorized, Result(h.Send(PcpMap(1, 17, 80, 0, 60, options: ThirdParty(Neighbour)))));
        Assert.Empty(h.Engine.ListMappings(h.Now));

        using var allowed = new HandlerHarness(Serving with { AllowThirdPartyMappings = true });
        var reply = allowed.Send(PcpMap(1, 17, 80, 0, 600, options: ThirdParty(Neighbour)));
        Assert.Equal(PcpResult.Success, Result(reply));
        Assert.True(allowed.Engine.TryGetMapping(IpProtocol.Udp, new NatEndpoint(Neighbour, 80), allowed.Now, out _));
        PcpResponse.TryParse(reply, out var r);
        var o = r.Options;
        Assert.True(o.TryReadNext(out var code, out _)); // the option the server acted on is echoed
        Assert.Equal((byte)PcpOptionCode.ThirdParty, code);
        Assert.Equal(PcpResult.NotAuthorized, Result(allowed.Send(PcpMap(1, 17, 80, 0, 600, options: ThirdParty(Ipv4Address.Parse("10.9.9.9"))))));
    }

    [Fact]
    public void Rfc6887_13_2_PreferFailure_FailsRatherThanMovesThePort()
    {
        using var h = new HandlerHarness();
        h.Send(PcpMap(1, 17, 1, 41000, 600, client: Neighbour), new NatEndpoint(Neighbour, 9));
        Assert.Equal(PcpResult.CannotProvideExternal, Result(h.Send(PcpMap(2, 17, 2, 41000, 600, options: PreferFailure))));
        PcpResponse.TryParse(h.Send(PcpMap(2, 17, 2, 41000, 600)), out var moved);
        moved.TryGetMap(out var map);
        Assert.NotEqual(41000, map.ExternalPort);
        Assert.Equal(PcpResult.CannotProvideExternal, Result(h.Send(PcpMap(3, 17, 3, 0, 600, suggested: Ipv4Address.Parse("203.0.113.99"), options: PreferFailure))));
        Assert.Equal(PcpResult.Success, Result(h.Send(PcpMap(3, 17, 3, 0, 600, suggested: Ipv4Address.Parse("203.0.113.99"))))); // only a hint
    }

    [Fact]
    public void Rfc6887_13_3_Filter_LimitsWhoGetsIn()
    {
        using var h = new HandlerHarness();
        var reply = h.Send(PcpMap(1, 17, 40000, 41000, 600, options: s => PcpOptionReader.WriteFilter(s, 96 + 32, 5000, Pcp.Pcp.Mapped(Remote.Address))));
        Assert.Equal(PcpResult.Success, Result(reply));
        Assert.True(h.Reaches(Remote, 41000));
        Assert.False(h.Reaches(Remote with { Port = 5001 }, 41000));
        Assert.Equal(PcpResult.MalformedOption, Result(h.Send(PcpMap(1, 17, 40000, 41000, 600, options: s => PcpOptionReader.WriteFilter(s, 24, 0, Pcp.Pcp.Mapped(Remote.Address))))));
    }

    [Fact]
    public void Rfc6887_7_3_Options_UnknownMandatoryRefused_OptionalIgnored_DuplicatesMalformed()
    {
        using var h = new HandlerHarness();
        Assert.Equal(PcpResult.UnsupportedOption, Result(h.Send(PcpMap(1, 17, 1, 0, 600, options: s => PcpOptionReader.Write(s, (PcpOptionCode)99, default)))));
        Assert.Equal(PcpResult.Success, Result(h.Send(PcpMap(1, 17, 1, 0, 600, options: s => PcpOptionReader.Write(s, (PcpOptionCode)200, [1, 2, 3])))));
        Assert.Equal(PcpResult.MalformedOption, Result(h.Send(PcpMap(1, 17, 2, 0, 600, options: [PreferFailure, PreferFailure]))));
    }

    [Fact]
    public void Rfc6887_8_3_Malformed_AndUnsupported()
    {
        using var h = new HandlerHarness();
        var request = PcpMap(1, 17, 1, 0, 600);
        Assert.Equal(PcpResult.MalformedRequest, Result(h.Send(request.AsSpan(0, 58))));
        Assert.Equal(PcpResult.MalformedRequest, Result(h.Send(PcpMap(1, 17, 0, 0, 600)))); // port 0 with a lifetime
        Assert.Equal(PcpResult.UnsupportedProtocol, Result(h.Send(PcpMap(1, 132, 1, 0, 600)))); // SCTP
        var v3 = request.ToArray();
        v3[0] = 3;
        var reply = h.Send(v3);
        Assert.True(PcpResponse.TryParse(reply, out var r));
        Assert.Equal((2, PcpResult.UnsupportedVersion), (r.Version, r.Result));
        var unknown = new byte[24];
        PcpRequest.WriteHeader(unknown, (PcpOpcode)3, 600, Pcp.Pcp.Mapped(Host.Address));
        Assert.Equal(PcpResult.UnsupportedOpcode, Result(h.Send(unknown)));
        Assert.Empty(h.Engine.ListMappings(h.Now));
    }

    [Fact]
    public void Rfc6887_14_1_Announce_AnswersWithTheEpoch()
    {
        using var h = new HandlerHarness();
        h.Advance(TimeSpan.FromSeconds(9));
        var b = new byte[24];
        PcpRequest.WriteHeader(b, PcpOpcode.Announce, 0, Pcp.Pcp.Mapped(Host.Address));
        Assert.True(PcpResponse.TryParse(h.Send(b), out var r));
        Assert.Equal((PcpResult.Success, 9u, (byte)PcpOpcode.Announce), (r.Result, r.Epoch, r.Opcode));
    }

    [Fact]
    public void Rfc6887_9_NatPmpRequest_ToAPcpOnlyServer_GetsUnsupportedVersion()
    {
        using var h = new HandlerHarness(Serving with { ServeNatPmp = false });
        Assert.True(PcpResponse.TryParse(h.Send([0, 0]), out var r));
        Assert.Equal((2, PcpResult.UnsupportedVersion), (r.Version, r.Result));
    }

    [Fact]
    public void QuotaFlood_GetsUserExceededQuota()
    {
        using var h = new HandlerHarness(Serving with { MaxPortMappingsPerHost = 4 });
        var results = Enumerable.Range(1, 500).Select(p => Result(h.Send(PcpMap(1, 17, (ushort)p, 0, 600)))).ToList();
        Assert.Equal(4, results.Count(r => r == PcpResult.Success));
        Assert.Equal(496, results.Count(r => r == PcpResult.UserExceededQuota));
    }

    [Fact]
    public void RandomAndMutatedRequests_NeverThrow_AndTheServerKeepsServing()
    {
        using var h = new HandlerHarness();
        var valid = PcpMap(1, 17, 40000, 0, 600, options: [PreferFailure, s => PcpOptionReader.WriteFilter(s, 128, 1, Pcp.Pcp.Mapped(Remote.Address))]);
        var natpmp = NatPmpMap(NatPmpOpcode.MapUdp, 40001, 0, 600);
        var peer = PcpPeer(2, 17, 40002, Remote, 600, options: [ThirdParty(Host.Address)]);
        var gen = from which in Gen.Elements(valid, natpmp, peer)
                  from flips in Gen.ListOf(Gen.Zip(Gen.Choose(0, 200), ArbMap.Default.GeneratorFor<byte>()))
                  from cut in Gen.Choose(0, 300)
                  select (which, flips, cut);
        Prop.ForAll(gen.ToArbitrary(), t =>
        {
            var m = t.which.ToArray();
            foreach (var (i, v) in t.flips) if (i < m.Length) m[i] = v;
            h.Send(m.AsSpan(0, Math.Min(t.cut, m.Length)));
            h.Send(m, Remote);
        }).QuickCheckThrowOnFailure();
        Prop.ForAll(ArbMap.Default.ArbFor<byte[]>(), b => h.Send(b)).QuickCheckThrowOnFailure();
        Assert.Equal(PcpResult.Success, Result(h.Send(PcpMap(42, 17, 50000, 0, 600, client: Neighbour), new NatEndpoint(Neighbour, 1))));
        Assert.Null(h.Engine.Config.Validate().FirstOrDefault());
    }
}
