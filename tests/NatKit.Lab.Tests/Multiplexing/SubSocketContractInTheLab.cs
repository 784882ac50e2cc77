using System.Net;
using NatKit.Net;
using NatKit.Net.Tests.Multiplexing;

namespace NatKit.Lab.Tests.Multiplexing;

/// <summary>NatKit.Net's multiplexer contract (compiled in from NatKit.Net.Tests) in the in-memory lab: the shared
/// socket on one host, the sender on another, everything on the lab's loop in virtual time.</summary>
public sealed class SubSocketContractInTheLab : SubSocketContract
{
    protected override Task Run(Func<IDatagramSocket, IDatagramSocket, Task> body)
    {
        var lab = new VirtualNetwork(seed: 13);
        var internet = lab.AddSegment("internet");
        var alice = lab.AddHost("alice", internet, "198.51.100.10");
        var bob = lab.AddHost("bob", internet, "203.0.113.20");
        lab.Run(async () =>
        {
            var a = await alice.BindUdpAsync(new IPEndPoint(alice.Address, 5000));
            var b = await bob.BindUdpAsync(new IPEndPoint(bob.Address, 6000));
            await body(a, b);
        });
        return Task.CompletedTask;
    }

    // A wait that never ends is the lab's own deadlock report; nothing to add.
    protected override Task Bounded(Task task) => task;
}
