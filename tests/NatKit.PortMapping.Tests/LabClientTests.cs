using System.Net;
using NatKit.Lab;
using NatKit.Nat;
using NatKit.Packets;
using NatKit.PortMapping.NatPmp;
using NatKit.PortMapping.Pcp;

namespace NatKit.PortMapping.Tests;

/// <summary>The clients against the server on a lab router, through its real engine, in virtual time.</summary>
public sealed class LabClientTests
{
    private static readonly IPEndPoint Gateway = new(IPAddress.Parse("192.168.1.1"), 5351);

    private static (VirtualNetwork Lab, LabRouter Router, LabHost Inside, LabHost Outside) Build(NatPolicy policy)
    {
        var lab = new VirtualNetwork(seed: 3);
        var internet = lab.AddSegment("internet");
        var home = lab.AddSegment("home", "192.168.1.0/24");
        var router = lab.AddRouter("nat", policy, home, "192.168.1.1", internet, "198.51.100.1");
        router.ServeUdp(5351, new PortMappingHandler(router.Engine, router.NowMs).Handle);
        var outside = lab.AddHost("outside", internet, "203.0.113.100");
        var inside = lab.AddHost("inside", home, "192.168.1.10");
        return (lab, router, inside, outside);
    }

    /// <summary>Sends a datagram from outside to <paramref name="external"/> and says whether the inside socket on
    /// port 41000 got it.</summary>
    private static async Task<bool> ReachesAsync(LabHost inside, LabHost outside, IPEndPoint external)
    {
        using var listener = await inside.BindUdpAsync(new IPEndPoint(IPAddress.Any, 41000));
        using var sender = await outside.BindUdpAsync(new IPEndPoint(IPAddress.Any, 5000));
        await sender.SendToAsync(new byte[] { 1, 2, 3 }, external);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2), inside.TimeProvider);
        try
        {
            var got = await listener.ReceiveFromAsync(new byte[64], timeout.Token);
                return got.Length == 3;
        }
        catch (OperationCanceledException)
        {
                return false;
        }
    }

    [Theory]
    [InlineData(PortMappingProtocol.Pcp)]
    [InlineData(PortMappingProtocol.NatPmp)]
    public void Mapping_LetsAnOutsideHostIn_ThroughPortRestrictedFiltering(PortMappingProtocol protocol)
    {
        var (lab, _, inside, outside) = Build(NatPresets.PortRestrictedCone);
        var (before, external, after) = lab.Run(async () =>
        {
            var reachedBefore = await ReachesAsync(inside, outside, new IPEndPoint(IPAddress.Parse("198.51.100.1"), 41000));
            var mapper = new PortMapper(inside, Gateway);
            var lease = await mapper.MapAsync(IpProtocol.Udp, 41000, TimeSpan.FromHours(1), only: protocol);
            var reached = await ReachesAsync(inside, outside, lease!.External);
            await lease.DisposeAsync();
            return (reachedBefore, lease.External, reached);
        });
        Assert.False(before);
        Assert.True(after);
        Assert.Equal(IPAddress.Parse("198.51.100.1"), external.Address);
        Assert.Equal(41000, external.Port);
    }

    [Fact]
    public void Lease_RenewsThroughHoursOfVirtualTime_AndDisposeDeletes()
    {
        var (lab, router, inside, outside) = Build(NatPresets.TailscaleEasy with { PortMappingMinLifetime = TimeSpan.FromSeconds(60) });
        var (renewals, reachedLate, leftAfter) = lab.Run(async () =>
        {
            var lease = await new PortMapper(inside, Gateway).MapAsync(IpProtocol.Udp, 41000, TimeSpan.FromMinutes(2));
            await Task.Delay(TimeSpan.FromHours(3), inside.TimeProvider);
            Assert.Equal(0, lease!.FailedRenewals);
            var reached = await ReachesAsync(inside, outside, lease!.External);
            var count = router.Engine.ListMappings(router.NowMs).Count;
            await lease.DisposeAsync();
            return (count, reached, router.Engine.ListMappings(router.NowMs).Count);
        });
        Assert.Equal(1, renewals);
        Assert.True(reachedLate);
        Assert.Equal(0, leftAfter);
    }

    [Fact]
    public void Probe_SeesWhatThePolicyOffers()
    {
        var (lab, _, inside, _) = Build(NatPresets.FullCone with { ServeNatPmp = false });
        var probe = lab.Run(() => new PortMapper(inside, Gateway).ProbeAsync());
        Assert.True(probe.Pcp);
        Assert.False(probe.NatPmp);
        var (lab2, _, inside2, _) = Build(NatPresets.FullCone with { ServePcp = false });
        var probe2 = lab2.Run(() => new PortMapper(inside2, Gateway).ProbeAsync());
        Assert.Equal((false, true, IPAddress.Parse("198.51.100.1")), (probe2.Pcp, probe2.NatPmp, probe2.ExternalAddress));
    }

    [Fact]
    public void PcpFallsBackToNatPmp_WhenTheGatewayOnlySpeaksNatPmp()
    {
        var (lab, _, inside, _) = Build(NatPresets.FullCone with { ServePcp = false });
        var grant = lab.Run(async () => (await new PortMapper(inside, Gateway).MapAsync(IpProtocol.Tcp, 8080, TimeSpan.FromHours(1)))!.Grant);
        Assert.Equal((PortMappingProtocol.NatPmp, IpProtocol.Tcp), (grant.Protocol, grant.Transport));
    }

    [Fact]
    public void NoServer_NoAnswer_NullAfterTheRetries()
    {
        var (lab, _, inside, _) = Build(NatPresets.Symmetric with { ServeNatPmp = false, ServePcp = false });
        var lease = lab.Run(() => new PortMapper(inside, Gateway).MapAsync(IpProtocol.Udp, 41000, TimeSpan.FromHours(1)));
        Assert.Null(lease);
    }

    [Fact]
    public void Refusal_IsAnException_WithTheResult()
    {
        var (lab, _, inside, _) = Build(NatPresets.FullCone with { MaxPortMappingsPerHost = 0 });
        var e = Assert.Throws<PortMappingException>(() => lab.Run(() => new PcpClient(inside, Gateway).MapAsync(IpProtocol.Udp, 1, 0, TimeSpan.FromHours(1))));
        Assert.Contains("UserExceededQuota", e.Message, StringComparison.Ordinal);
        var n = Assert.Throws<PortMappingException>(() => lab.Run(() => new NatPmpClient(inside, Gateway).MapAsync(IpProtocol.Udp, 1, 0, TimeSpan.FromHours(1))));
        Assert.Contains("OutOfResources", n.Message, StringComparison.Ordinal);
    }
}
