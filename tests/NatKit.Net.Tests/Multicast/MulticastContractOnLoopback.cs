using System.Net;
using NatKit.Net;

namespace NatKit.Net.Tests.Multicast;

/// <summary>The contract on the real network: both sides on loopback, the group's datagrams sent out of and joined
/// on 127.0.0.1 only (Linux loops them back there), so nothing leaves the machine.</summary>
public sealed class MulticastContractOnLoopback : MulticastContract
{
    protected override Task Run(Func<MulticastHosts, Task> body) =>
        body(new MulticastHosts(SystemNetwork.Instance, IPAddress.Loopback, SystemNetwork.Instance, IPAddress.Loopback));

    protected override Task<T> Bounded<T>(Task<T> task) => task.WaitAsync(TimeSpan.FromSeconds(10));
}
