using System.Net;
using NatKit.Lab;

namespace NatKit.Stun.Tests.Shared;

/// <summary>The STUN contract in the in-memory lab, in virtual time: the client and a server with two addresses on
/// the lab's internet, no NAT between them (NAT behaviour in the lab: <see cref="StunLabTests"/>). Lab sockets
/// offer no blocking I/O (the lab runs on one thread), so UDP is served by the asynchronous loops.</summary>
public sealed class StunServerInTheLab : StunServerContract
{
    protected override void Run(Func<StunNetworks, Task> body)
    {
        var lab = new VirtualNetwork(seed: 11);
        var internet = lab.AddSegment("internet");
        var server = lab.AddHost("server", internet, "203.0.113.100", "203.0.113.101");
        var client = lab.AddHost("client", internet, "203.0.113.10");
        lab.Run(() => body(new StunNetworks(client, client.Address, server, IPAddress.Parse("203.0.113.100"),
            IPAddress.Parse("203.0.113.101"))));
    }
}
