using NatKit.Lab;

namespace NatKit.Utp.Tests.Shared;

/// <summary>The uTP contract in the in-memory lab, in virtual time: three hosts on the lab's internet, links of
/// 10 ms with 1% loss (a clean lab link would hide nothing the loopback run does not already show).</summary>
public sealed class UtpInTheLab : UtpContract
{
    protected override void Run(Func<UtpNetworks, Task> body)
    {
        var lab = new VirtualNetwork(seed: 9);
        var internet = lab.AddSegment("internet");
        var alice = lab.AddHost("alice", internet, "198.51.100.10");
        var bob = lab.AddHost("bob", internet, "203.0.113.20");
        var mallory = lab.AddHost("mallory", internet, "192.0.2.66");
        var link = new LinkProfile { Latency = TimeSpan.FromMilliseconds(10), Loss = 0.01 };
        alice.Link = link;
        bob.Link = link;
        lab.Run(() => body(new UtpNetworks(alice, alice.Address, bob, bob.Address, mallory, mallory.Address,
            lab.Random)));
    }
}
