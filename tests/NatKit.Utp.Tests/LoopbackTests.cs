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

        var up = TestData.Generate(3_000_000, 1);
        var down = TestData.Generate(2_000_000, 2);
        var readA = TestData.ReadToEndAsync(a, cts.Token);
        var readB = TestData.ReadToEndAsync(b, cts.Token);
        await TestData.WriteChunkedAsync(a, up, 65536, cts.Token);
        a.ShutdownWrite();
        await TestData.WriteChunkedAsync(b, down, 50000, cts.Token);
        b.ShutdownWrite();

        Assert.Equal(TestData.Sha256(up), TestData.Sha256(await readB));
        Assert.Equal(TestData.Sha256(down), TestData.Sha256(await readA));
    }
}
