using System.Net;
using NatKit.Lab;
using NatKit.Turn.Policy;
using NatKit.Turn.Server;

namespace NatKit.Turn.Tests.Shared;

/// <summary>The TURN contract in the in-memory lab, in virtual time: client, server and a peer with two addresses
/// on the lab's internet, no NAT between them (NAT behaviour: <see cref="TurnLabTests"/>). The lab offers no
/// datagram poller (it runs on one thread, docs/lab.md rule 2), so every socket keeps its asynchronous loop.</summary>
public sealed class TurnServerInTheLab : TurnServerContract
{
    protected override int ServerPort => 3478;

    protected override void Run(Func<TurnNetworks, Task> body)
    {
        var lab = new VirtualNetwork(seed: 13);
        var internet = lab.AddSegment("internet");
        var server = lab.AddHost("turn", internet, "203.0.113.100");
        var client = lab.AddHost("client", internet, "203.0.113.10");
        var peer = lab.AddHost("peer", internet, "203.0.113.50", "203.0.113.51");
        var n = new TurnNetworks(client, client.Address, server, server.Address, peer,
            IPAddress.Parse("203.0.113.50"), IPAddress.Parse("203.0.113.51"),
            new PeerPolicy(allow: [PeerRule.Parse("203.0.113.0/24")]));
        lab.Run(() => body(n));
    }

    protected override void AssertDataPath(TurnServer server, int relays)
    {
        Assert.Equal(0, server.DirectThreadCount);
        Assert.Equal(0, server.PolledRelayCount);
    }

    protected override Task PromptlyAsync(Task task) => task;
}
