using System.Net;
using NatKit.Lab;
using NatKit.Nat;
using NatKit.Turn.Policy;

namespace NatKit.Turn.Tests.SharedSocket;

/// <summary>The shared-socket stack in the in-memory lab, in virtual time: the client behind a port-restricted cone
/// NAT, the TURN/STUN server and the peer on the lab's internet.</summary>
public sealed class SharedSocketStackInTheLab : SharedSocketStackContract
{
    private int _seed = 17;

    protected override int ServerPort => 3478;

    protected override int MaxFuzzCases => 25;

    protected override void Run(Func<StackNetworks, Task> body)
    {
        var lab = new VirtualNetwork(seed: _seed++);
        var internet = lab.AddSegment("internet");
        var home = lab.AddSegment("home", "192.168.1.0/24");
        lab.AddRouter("nat", NatPresets.PortRestrictedCone, home, "192.168.1.1", internet, "198.51.100.1");
        var server = lab.AddHost("server", internet, "203.0.113.100");
        var peer = lab.AddHost("peer", internet, "203.0.113.50");
        var client = lab.AddHost("client", home, "192.168.1.10");
        var n = new StackNetworks(client, client.Address, server, server.Address, peer, peer.Address,
            new PeerPolicy(allow: [PeerRule.Parse("203.0.113.0/24")]), lab.Random);
        lab.Run(() => body(n));
    }
}
