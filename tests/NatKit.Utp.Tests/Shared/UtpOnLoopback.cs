using System.Net;
using NatKit.Net;

namespace NatKit.Utp.Tests.Shared;

/// <summary>The uTP contract on the real network: <see cref="SystemNetwork"/> on loopback, the attacker on
/// 127.0.0.2.</summary>
public sealed class UtpOnLoopback : UtpContract
{
    protected override void Run(Func<UtpNetworks, Task> body)
    {
        var n = new UtpNetworks(SystemNetwork.Instance, IPAddress.Loopback, SystemNetwork.Instance, IPAddress.Loopback,
            SystemNetwork.Instance, IPAddress.Parse("127.0.0.2"), null);
        // A safety net so a broken stream fails instead of hanging (never a wait for success).
        body(n).WaitAsync(TimeSpan.FromSeconds(60)).GetAwaiter().GetResult();
    }

    /// <summary>Loopback only: the lab is IPv4. Endpoints and connection keys are address-family neutral.</summary>
    [Fact]
    public async Task Ipv6Loopback_TransferBothWays_ArrivesIntact()
    {
        if (!System.Net.Sockets.Socket.OSSupportsIPv6)
        {
            return;
        }

        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var any = new IPEndPoint(IPAddress.IPv6Loopback, 0);
        await using var server = await UtpSocket.BindAsync(SystemNetwork.Instance, any);
        await using var client = await UtpSocket.BindAsync(SystemNetwork.Instance, any);
        var accept = server.AcceptAsync(cts.Token);
        await using var a = await client.ConnectAsync(server.LocalEndPoint, cts.Token);
        await using var b = await accept;
        await TestData.ExchangeAndVerifyAsync(a, b, TestData.Generate(300_000, 3), TestData.Generate(200_000, 4),
            32_768, cts.Token);
    }
}
