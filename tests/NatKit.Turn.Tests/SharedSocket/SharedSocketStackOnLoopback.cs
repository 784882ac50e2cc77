using System.Net;
using NatKit.Net;

namespace NatKit.Turn.Tests.SharedSocket;

/// <summary>The shared-socket stack on the real network: client, server and peer on loopback.</summary>
public sealed class SharedSocketStackOnLoopback : SharedSocketStackContract
{
    protected override int ServerPort => 0;

    protected override void Run(Func<StackNetworks, Task> body)
    {
        var n = new StackNetworks(SystemNetwork.Instance, IPAddress.Loopback, SystemNetwork.Instance,
            IPAddress.Loopback, SystemNetwork.Instance, IPAddress.Loopback, Support.TurnHarness.AllowLoopback, null);
        // A safety net so a broken stack fails instead of hanging (never a wait for success).
        body(n).WaitAsync(TimeSpan.FromSeconds(60)).GetAwaiter().GetResult();
    }
}
