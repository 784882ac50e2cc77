using System.Net;
using NatKit.Net;
using NatKit.Turn.Policy;
using NatKit.Turn.Server;

namespace NatKit.Turn.Tests.Shared;

/// <summary>The TURN contract on the real network: <see cref="SystemNetwork"/> on loopback with the wall clock,
/// so UDP clients are served by the direct path (an epoll poller, threads of its own).</summary>
public sealed class TurnServerOnLoopback : TurnServerContract
{
    protected override int ServerPort => 0;

    protected override void Run(Func<TurnNetworks, Task> body)
    {
        var n = new TurnNetworks(SystemNetwork.Instance, IPAddress.Loopback, SystemNetwork.Instance, IPAddress.Loopback,
            SystemNetwork.Instance, IPAddress.Loopback, IPAddress.Parse("127.0.0.2"),
            new PeerPolicy(allow: [PeerRule.Parse("127.0.0.0/8")]));
        // A safety net so a broken server fails instead of hanging (never a wait for success).
        body(n).WaitAsync(TimeSpan.FromSeconds(60)).GetAwaiter().GetResult();
    }

    protected override void AssertDataPath(TurnServer server, int relays)
    {
        Assert.True(server.DirectThreadCount >= 2);
        Assert.Equal(relays, server.PolledRelayCount);
    }

    protected override Task PromptlyAsync(Task task) => task.WaitAsync(TimeSpan.FromSeconds(10));
}
