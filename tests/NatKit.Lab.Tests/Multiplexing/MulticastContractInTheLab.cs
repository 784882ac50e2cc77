using System.Net;
using NatKit.Net.Tests.Multicast;

namespace NatKit.Lab.Tests.Multiplexing;

/// <summary>NatKit.Net's multicast contract (compiled in from NatKit.Net.Tests) between two hosts of one lab
/// segment, in virtual time.</summary>
public sealed class MulticastContractInTheLab : MulticastContract
{
    protected override Task Run(Func<MulticastHosts, Task> body)
    {
        var lab = new VirtualNetwork(seed: 17);
        var lan = lab.AddSegment("lan", "192.168.1.0/24");
        var a = lab.AddHost("a", lan, "192.168.1.10");
        var b = lab.AddHost("b", lan, "192.168.1.11");
        lab.Run(() => body(new MulticastHosts(a, a.Address, b, b.Address)));
        return Task.CompletedTask;
    }

    // A wait that never ends is the lab's own deadlock report; nothing to add.
    protected override Task<T> Bounded<T>(Task<T> task) => task;
}
