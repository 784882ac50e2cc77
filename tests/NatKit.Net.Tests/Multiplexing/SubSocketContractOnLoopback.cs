using System.Net;
using NatKit.Net;

namespace NatKit.Net.Tests.Multiplexing;

/// <summary>The contract on the real network: two UDP sockets on loopback.</summary>
public sealed class SubSocketContractOnLoopback : SubSocketContract
{
    protected override async Task Run(Func<IDatagramSocket, IDatagramSocket, Task> body)
    {
        await using var a = await SystemNetwork.Instance.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        await using var b = await SystemNetwork.Instance.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        await body(a, b);
    }

    protected override Task Bounded(Task task) => task.WaitAsync(TimeSpan.FromSeconds(10));
}
