using NatKit.Nat;
using NatKit.Packets;
using NatKit.PortMapping.NatPmp;
using NatKit.PortMapping.Pcp;
using static NatKit.PortMapping.Tests.HandlerHarness;

namespace NatKit.PortMapping.Tests;

/// <summary>The NAT-PMP half of <see cref="PortMappingHandler"/>, per RFC 6886 section.</summary>
public sealed class NatPmpHandlerTests
{
    private static readonly NatEndpoint Remote = new(Ipv4Address.Parse("198.51.100.7"), 5000);

    [Fact]
    public void Rfc6886_3_2_ExternalAddress_WithTheEpoch()
    {
        using var h = new HandlerHarness();
        h.Advance(TimeSpan.FromSeconds(42));
        var reply = h.Send([0, 0]);
        Assert.True(NatPmpResponse.TryParse(reply, out var r));
        Assert.Equal((NatPmpResult.Success, 42u, External), (r.Result, r.Epoch, r.ExternalAddress));
        Assert.Equal(12, reply.Length);
    }

    [Fact]
    public void Rfc6886_3_3_MapUdp_GrantsAMappingAnyoneReaches()
    {
        using var h = new HandlerHarness();
        Assert.False(h.Reaches(Remote, 40000)); // port-restricted: nobody gets in unasked
        var reply = h.Send(NatPmpMap(NatPmpOpcode.MapUdp, 40000, 40000, 7200));
        Assert.True(NatPmpResponse.TryParse(reply, out var r));
        Assert.Equal((NatPmpResult.Success, (byte)129, (ushort)40000, (ushort)40000, 7200u), (r.Result, r.Opcode, r.InternalPort, r.MappedExternalPort, r.Lifetime));
        Assert.True(h.Reaches(Remote, 40000));
    }

    [Fact]
    public void Rfc6886_3_3_MapTcp_IsATcpMapping()
    {
        using var h = new HandlerHarness();
        h.Send(NatPmpMap(NatPmpOpcode.MapTcp, 8080, 0, 3600));
        Assert.True(h.Engine.TryGetMapping(IpProtocol.Tcp, Host with { Port = 8080 }, h.Now, out _));
        Assert.False(h.Engine.TryGetMapping(IpProtocol.Udp, Host with { Port = 8080 }, h.Now, out _));
    }

    [Fact]
    public void Rfc6886_3_3_Renewal_KeepsThePort_AndLifetimeIsCapped()
    {
        using var h = new HandlerHarness(Serving with { PortMappingMaxLifetime = TimeSpan.FromHours(1) });
        NatPmpResponse.TryParse(h.Send(NatPmpMap(NatPmpOpcode.MapUdp, 40000, 0, 100_000)), out var first);
        Assert.Equal(3600u, first.Lifetime);
        var port = first.MappedExternalPort;
        h.Advance(TimeSpan.FromMinutes(30));
        NatPmpResponse.TryParse(h.Send(NatPmpMap(NatPmpOpcode.MapUdp, 40000, 12345, 3600)), out var renewed);
        Assert.Equal(port, renewed.MappedExternalPort);
    }

    [Fact]
    public void Rfc6886_3_4_LifetimeZero_Deletes_AndPortZeroDeletesAll()
    {
        using var h = new HandlerHarness();
        h.Send(NatPmpMap(NatPmpOpcode.MapUdp, 1, 0, 3600));
        h.Send(NatPmpMap(NatPmpOpcode.MapUdp, 2, 0, 3600));
        h.Send(NatPmpMap(NatPmpOpcode.MapTcp, 3, 0, 3600));
        NatPmpResponse.TryParse(h.Send(NatPmpMap(NatPmpOpcode.MapUdp, 1, 0, 0)), out var deleted);
        Assert.Equal((NatPmpResult.Success, (ushort)1, (ushort)0, 0u), (deleted.Result, deleted.InternalPort, deleted.MappedExternalPort, deleted.Lifetime));
        Assert.Equal(2, h.Engine.ListMappings(h.Now).Count);
        h.Send(NatPmpMap(NatPmpOpcode.MapUdp, 0, 0, 0)); // all of this host's UDP mappings
        var left = Assert.Single(h.Engine.ListMappings(h.Now));
        Assert.Equal(IpProtocol.Tcp, left.Protocol);
    }

    [Fact]
    public void Rfc6886_3_5_UnsupportedOpcode_AndVersion()
    {
        using var h = new HandlerHarness(Serving with { ServePcp = false });
        Assert.True(NatPmpResponse.TryParse(h.Send([0, 7]), out var op));
        Assert.Equal((NatPmpResult.UnsupportedOpcode, (byte)135), (op.Result, op.Opcode));
        Assert.True(NatPmpResponse.TryParse(h.Send([2, 1, 0, 0]), out var version)); // PCP to a NAT-PMP-only box
        Assert.Equal(NatPmpResult.UnsupportedVersion, version.Result);
        Assert.Equal(8, h.Send([1, 0]).Length);
    }

    [Fact]
    public void Responses_AndShortOrOutsideRequests_AreDropped()
    {
        using var h = new HandlerHarness();
        Assert.Empty(h.Send([0, 128, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4])); // a response
        Assert.Empty(h.Send([0])); // too short
        Assert.Empty(h.Send(NatPmpMap(NatPmpOpcode.MapUdp, 40000, 0, 3600).AsSpan(0, 11))); // a mapping cut short
        Assert.Empty(h.Send(NatPmpMap(NatPmpOpcode.MapUdp, 40000, 0, 3600), Remote)); // from the outside
        Assert.Empty(h.Engine.ListMappings(h.Now));
        Assert.Equal(4, h.Handler.Counters.Dropped);
    }

    [Fact]
    public void PortZero_WithALifetime_IsRefused()
    {
        using var h = new HandlerHarness();
        NatPmpResponse.TryParse(h.Send(NatPmpMap(NatPmpOpcode.MapUdp, 0, 0, 3600)), out var r);
        Assert.Equal(NatPmpResult.NotAuthorized, r.Result);
    }

    [Fact]
    public void PerHostQuota_HoldsUnderAFlood_AndOthersAreStillServed()
    {
        using var h = new HandlerHarness(Serving with { MaxPortMappingsPerHost = 16 });
        var granted = 0;
        for (var port = 1; port <= 2000; port++)
        {
            NatPmpResponse.TryParse(h.Send(NatPmpMap(NatPmpOpcode.MapUdp, (ushort)port, 0, 3600)), out var r);
            if (r.Result == NatPmpResult.Success) granted++;
            else Assert.Equal(NatPmpResult.OutOfResources, r.Result);
        }

        Assert.Equal(16, granted);
        NatPmpResponse.TryParse(h.Send(NatPmpMap(NatPmpOpcode.MapUdp, 1, 0, 3600), Host with { Address = Ipv4Address.Parse("192.168.1.11") }), out var other);
        Assert.Equal(NatPmpResult.Success, other.Result);
    }

    [Fact]
    public void NotOffered_NoAnswer()
    {
        using var h = new HandlerHarness(NatPresets.TailscaleHard);
        Assert.Empty(h.Send([0, 0]));
        Assert.Empty(h.Send(PcpMap(1, 17, 1, 0, 60)));
    }

    [Fact]
    public void Epoch_StartsOverAfterAReset_AndTheAnnouncementSaysSo()
    {
        using var h = new HandlerHarness();
        h.Advance(TimeSpan.FromSeconds(100));
        h.Send(NatPmpMap(NatPmpOpcode.MapUdp, 40000, 0, 3600));
        h.Handler.ResetEpoch(h.Now);
        h.Advance(TimeSpan.FromSeconds(3));
        var b = new byte[PortMappingHandler.MaxReplyLength];
        var n = h.Handler.WriteNatPmpAnnouncement(b, h.Now);
        Assert.True(NatPmpResponse.TryParse(b.AsSpan(0, n), out var a));
        Assert.Equal((3u, External), (a.Epoch, a.ExternalAddress));
        n = h.Handler.WritePcpAnnouncement(b, h.Now);
        Assert.True(PcpResponse.TryParse(b.AsSpan(0, n), out var p));
        Assert.Equal(((byte)PcpOpcode.Announce, PcpResult.Success, 3u), (p.Opcode, p.Result, p.Epoch));
        Assert.Equal(10, PortMappingHandler.AnnouncementSchedule.Count);
        Assert.Equal(TimeSpan.FromMilliseconds(250), PortMappingHandler.AnnouncementSchedule[1]);
        Assert.Equal(TimeSpan.FromMilliseconds(750), PortMappingHandler.AnnouncementSchedule[2]);
    }
}
