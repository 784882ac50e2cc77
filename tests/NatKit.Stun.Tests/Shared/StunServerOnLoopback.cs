using System.Net;
using NatKit.Net;

namespace NatKit.Stun.Tests.Shared;

/// <summary>The STUN contract on the real network: <see cref="SystemNetwork"/> on loopback, ephemeral ports, the
/// alternate address 127.0.0.2. Its sockets offer blocking I/O, so UDP is served by the server's threads.</summary>
public sealed class StunServerOnLoopback : StunServerContract
{
    private static readonly StunNetworks Loopback = new(SystemNetwork.Instance, IPAddress.Loopback,
        SystemNetwork.Instance, IPAddress.Loopback, IPAddress.Parse("127.0.0.2"));

    protected override void Run(Func<StunNetworks, Task> body) =>
        // A safety net so a broken server fails instead of hanging (never a wait for success).
        body(Loopback).WaitAsync(TimeSpan.FromSeconds(60)).GetAwaiter().GetResult();
}
