using System.Net;
using NatKit.Linux;
using NatKit.Nat;
using NatKit.Packets;
using NatKit.PortMapping;

namespace NatKit.Scenarios.Tests;

/// <summary>A real NatKit gateway on TUN devices (a topology the test creates and removes) announces its start-up
/// to the LAN host (RFC 6886 section 3.2.1, RFC 6887 section 14.1.3), and a NatKit lease on that host renews at
/// once when the gateway announces a restart (RFC 6886 section 3.7).</summary>
public sealed class GatewayAnnouncementTests
{
    private static readonly IPAddress Group = IPAddress.Parse("224.0.0.1");

    [PeerFact("ip", Root = true)]
    public async Task Gateway_AnnouncesItsStartUp_ToTheLan_AndALeaseRenewsWhenItAnnouncesARestart()
    {
        await using var topology = await GatewayTopology.CreateNatKitAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var lan = new NamespaceNetwork(topology.Lan.Name);
        var lanAddress = IPAddress.Parse(GatewayTopology.LanHostAddress);
        await using var listener = await lan.BindMulticastUdpAsync(new IPEndPoint(IPAddress.Any, 5350), timeout.Token);
        listener.JoinGroup(Group, lanAddress);

        await using var gateway = await Gateway.StartAsync(topology.Hops[0], NatPresets.PortRestrictedCone);
        using var announcer = await GatewayPortMapping.ServeAsync(gateway);
        Assert.NotNull(announcer);

        var insideAddress = IPAddress.Parse(GatewayTopology.LanGatewayAddress);
        var buffer = new byte[1100];
        var seen = new List<PortMappingAnnouncement>();
        for (var i = 0; i < 8; i++)
        {
            var got = await listener.ReceiveMessageFromAsync(buffer, timeout.Token);
            Assert.Equal(new IPEndPoint(insideAddress, 5351), got.RemoteEndPoint);
            Assert.Equal(Group, got.Destination);
            Assert.True(PortMappingAnnouncement.TryParse(buffer.AsSpan(0, got.Length), out var a));
            seen.Add(a);
        }

        // four rounds (at 0, 0.25, 0.75 and 1.75 s): NAT-PMP's with the public address, then PCP's, each round with
        // one epoch, which starts at 0 and has reached 1 by the fourth
        var publicAddress = IPAddress.Parse(GatewayTopology.PublicAddress);
        for (var round = 0; round < 4; round++)
        {
            Assert.Equal(publicAddress, seen[2 * round].ExternalAddress);
            Assert.Null(seen[(2 * round) + 1].ExternalAddress);
            Assert.Equal(seen[2 * round].Epoch, seen[(2 * round) + 1].Epoch);
            if (round > 0) Assert.True(seen[2 * round].Epoch >= seen[2 * (round - 1)].Epoch);
        }

        Assert.Equal(0u, seen[0].Epoch);
        Assert.True(seen[6].Epoch >= 1);

        // a namespace network lists no local addresses: say which one (also where the lease listens)
        var mapper = new PortMapper(lan, new IPEndPoint(insideAddress, PortMappingHandler.Port),
            new PortMappingClientOptions { LocalAddress = lanAddress });
        await using var lease = await mapper.MapAsync(IpProtocol.Udp, 7000, TimeSpan.FromHours(1), cancellationToken: timeout.Token);
        Assert.NotNull(lease);
        var renewed = new TaskCompletionSource<PortMappingGrant>(TaskCreationOptions.RunContinuationsAsynchronously);
        lease.Renewed += g => renewed.TrySetResult(g);

        // The gateway loses its mappings and says so; without the announcement the lease would wait 30 minutes.
        await gateway.DataPlane.InvokeAsync(() => gateway.Engine.Unmap(IpProtocol.Udp,
            new NatEndpoint(Ipv4Address.Parse(GatewayTopology.LanHostAddress), 7000), gateway.DataPlane.EngineNow));
        await announcer.RestartAsync();
        var grant = await renewed.Task.WaitAsync(timeout.Token);
        Assert.True(grant.Epoch < 30, $"renewed at epoch {grant.Epoch}");
        Assert.Equal(1, lease.AnnouncedRestarts);
        var mapping = Assert.Single(await gateway.DataPlane.InvokeAsync(() => gateway.Engine.ListMappings(gateway.DataPlane.EngineNow)));
        Assert.Equal(7000, mapping.Internal.Port);
    }
}
