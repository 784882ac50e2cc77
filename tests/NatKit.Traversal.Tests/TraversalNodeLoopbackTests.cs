using System.Net;
using NatKit.Net;
using NatKit.Traversal.Identity;
using NatKit.Traversal.Rendezvous;
using NatKit.Turn.Policy;
using NatKit.Turn.Server;

namespace NatKit.Traversal.Tests;

/// <summary>The node on real sockets (threads, the system clock): two nodes on loopback find each other through a
/// real rendezvous and exchange datagrams over host candidates.</summary>
public sealed class TraversalNodeLoopbackTests
{
    [Fact]
    public async Task OnLoopback_TwoNodesConnectOverHostCandidates_AndDatagramsFlowBothWays()
    {
        var network = SystemNetwork.Instance;
        await using var service = await RendezvousServer.StartAsync(network,
            new RendezvousServerOptions { Listen = new IPEndPoint(IPAddress.Loopback, 0) });
        var options = new TraversalOptions
        {
            Rendezvous = service.LocalEndPoint,
            ConnectTimeout = TimeSpan.FromSeconds(20),
        };
        var any = new IPEndPoint(IPAddress.Loopback, 0);
        await using var a = await TraversalNode.StartAsync(network, any, NodeIdentity.Create(), options);
        await using var b = await TraversalNode.StartAsync(network, any, NodeIdentity.Create(), options);
        Assert.Equal(a.LocalEndPoint, a.PublicEndPoint); // no NAT on loopback: the rendezvous sees the socket itself

        var accepted = b.AcceptAsync();
        await using var ab = await a.ConnectAsync(b.Id);
        await using var ba = await accepted;
        Assert.Equal(PathKind.Direct, ab.Path);
        Assert.Equal(b.Id, ab.Peer);
        Assert.Equal(a.Id, ba.Peer);
        Assert.Equal(b.LocalEndPoint, ab.SelectedPair.Remote.EndPoint);
        Assert.Equal("ping", await TraversalLab.ExchangeAsync(ab, ba, "ping", TimeProvider.System));
        Assert.Equal("pong", await TraversalLab.ExchangeAsync(ba, ab, "pong", TimeProvider.System));
    }

    [Fact]
    public async Task RelayOnly_OnLoopbackWhereHostsReachEachOther_StillConnectsThroughTheRelay()
    {
        var network = SystemNetwork.Instance;
        var any = new IPEndPoint(IPAddress.Loopback, 0);
        await using var service = await RendezvousServer.StartAsync(network, new RendezvousServerOptions { Listen = any });
        await using var turn = await TurnServer.StartAsync(network, new TurnServerOptions
        {
            UdpListen = [any],
            RelayAddress = IPAddress.Loopback,
            Users = new Dictionary<string, string> { ["t"] = "t-password" },
            Policy = new PeerPolicy(allow: [PeerRule.Parse("127.0.0.0/8")]),
        });
        var options = new TraversalOptions
        {
            Rendezvous = service.LocalEndPoint,
            ConnectTimeout = TimeSpan.FromSeconds(20),
            Turn = new TurnServerCredentials(turn.UdpEndPoints[0], "t", "t-password"),
        };
        await using var a = await TraversalNode.StartAsync(network, any, NodeIdentity.Create(),
            options with { RelayOnly = true });
        await using var b = await TraversalNode.StartAsync(network, any, NodeIdentity.Create(), options);

        var accepted = b.AcceptAsync();
        await using var ab = await a.ConnectAsync(b.Id);
        await using var ba = await accepted;
        Assert.Equal(PathKind.Relay, ab.Path);
        Assert.Equal(PathKind.Relay, ba.Path);
        Assert.Equal(a.Relay!.RelayedEndPoint, ba.SelectedPair.Remote.EndPoint); // b sees only a's relayed address
        Assert.Equal("ping", await TraversalLab.ExchangeAsync(ab, ba, "ping", TimeProvider.System));
        Assert.Equal("pong", await TraversalLab.ExchangeAsync(ba, ab, "pong", TimeProvider.System));
    }

    [Fact]
    public void RelayOnly_WithoutATurnServer_IsRefusedNamingTheField()
    {
        var options = new TraversalOptions { Rendezvous = new IPEndPoint(IPAddress.Loopback, 3479), RelayOnly = true };
        var e = Assert.Throws<ArgumentException>(() => options.Validate());
        Assert.Contains("RelayOnly", e.Message, StringComparison.Ordinal);
    }
}
