using System.Net;
using NatKit.Net;

namespace NatKit.Utp.Tests;

/// <summary>uTP between two endpoints on real loopback sockets.</summary>
public sealed class LoopbackTests
{
    private static readonly IPEndPoint Any = new(IPAddress.Loopback, 0);

    [Fact]
    public async Task Connect_Accept_BulkBothWays_ArrivesIntact_AndCloseEndsBothReads()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await using var server = await UtpSocket.BindAsync(SystemNetwork.Instance, Any);
        await using var client = await UtpSocket.BindAsync(SystemNetwork.Instance, Any);
        server.Listen();

        var accept = server.AcceptAsync(cts.Token);
        await using var a = await client.ConnectAsync(server.LocalEndPoint, cts.Token);
        await using var b = await accept;
        Assert.Equal((ushort)(a.ReceiveConnectionId + 1), a.SendConnectionId);
        Assert.Equal(a.ReceiveConnectionId, b.SendConnectionId);
        Assert.Equal(a.SendConnectionId, b.ReceiveConnectionId);

        await TestData.ExchangeAndVerifyAsync(a, b, TestData.Generate(3_000_000, 1), TestData.Generate(2_000_000, 2),
            65536, cts.Token);
    }
}

/// <summary>The same over IPv6 loopback: endpoints and connection keys are address-family neutral.</summary>
public sealed class LoopbackIpv6Tests
{
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
