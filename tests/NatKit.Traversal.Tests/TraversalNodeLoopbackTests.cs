using System.Net;
using NatKit.Net;
using NatKit.Traversal.Identity;
using NatKit.Traversal.Rendezvous;

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
}
