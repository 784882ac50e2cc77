using System.Net;
using System.Net.Sockets;
using NatKit.Net;

namespace NatKit.Utp.Tests;

/// <summary>The connection state machine over an in-test datagram network (loss, duplication, reordering) and a
/// hand-moved clock for the timeouts.</summary>
public sealed class ConnectionTests
{
    private static readonly IPEndPoint A = new(IPAddress.Parse("10.0.0.1"), 1000);
    private static readonly IPEndPoint B = new(IPAddress.Parse("10.0.0.2"), 2000);
    private static readonly IPEndPoint Attacker = new(IPAddress.Parse("10.0.0.66"), 6666);
    private static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(10);

    private static async Task<(UtpSocket A, UtpSocket B, UtpStream Client, UtpStream Server)> PairAsync(
        TestDatagramNetwork net, TimeProvider time, CancellationToken ct, UtpOptions? options = null)
    {
        var a = new UtpSocket(net.Bind(A), time, options);
        var b = new UtpSocket(net.Bind(B), time, options);
        b.Listen();
        var accept = b.AcceptAsync(ct);
        var client = await a.ConnectAsync(B, ct);
        var server = await accept;
        return (a, b, client, server);
    }

    [Theory]
    [InlineData(0.05, 0.0, 0.0, 1)]
    [InlineData(0.0, 0.0, 0.2, 2)]
    [InlineData(0.03, 0.05, 0.1, 3)]
    public async Task Transfer_WithLossDuplicationAndReordering_ArrivesIntact(double loss, double dup,
        double reorder, int seed)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var net = new TestDatagramNetwork(seed);
        var (a, b, client, server) = await PairAsync(net, TimeProvider.System, cts.Token);
        await using var disposeA = a;
        await using var disposeB = b;
        net.Loss = loss;
        net.Duplicate = dup;
        net.Reorder = reorder;

        await TestData.ExchangeAndVerifyAsync(client, server, TestData.Generate(600_000, 11),
            TestData.Generate(300_000, 12), 40_000, cts.Token);
        if (loss > 0)
        {
            Assert.True(client.Statistics.Retransmissions > 0, "loss must have caused retransmissions");
        }
    }

    [Fact]
    public async Task HalfClose_ReaderSeesEndOfStream_AndCanStillWriteBack()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var net = new TestDatagramNetwork();
        var (a, b, client, server) = await PairAsync(net, TimeProvider.System, cts.Token);
        await using var disposeA = a;
        await using var disposeB = b;

        await client.WriteAsync("question"u8.ToArray(), cts.Token);
        client.ShutdownWrite();
        var question = await TestData.ReadToEndAsync(server, cts.Token);
        Assert.Equal("question"u8.ToArray(), question);
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await client.WriteAsync(new byte[1], cts.Token));

        await server.WriteAsync("answer"u8.ToArray(), cts.Token);
        await server.DisposeAsync();
        Assert.Equal("answer"u8.ToArray(), await TestData.ReadToEndAsync(client, cts.Token));
    }

    [Fact]
    public async Task FlushAsync_CompletesOnceThePeerAcknowledgedEverything()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var net = new TestDatagramNetwork();
        var (a, b, client, server) = await PairAsync(net, TimeProvider.System, cts.Token);
        await using var disposeA = a;
        await using var disposeB = b;
        var data = TestData.Generate(200_000, 5);
        await client.WriteAsync(data, cts.Token);
        await client.FlushAsync(cts.Token);
        Assert.Equal(0, client.Statistics.BytesInFlight);
        var got = new byte[data.Length];
        await server.ReadExactlyAsync(got, cts.Token);
        Assert.Equal(data, got);
    }

    [Fact]
    public async Task ConnectionIds_FollowBep29_AndTheSynIsAnsweredWithState()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var net = new TestDatagramNetwork();
        var (a, b, client, server) = await PairAsync(net, TimeProvider.System, cts.Token);
        await using var disposeA = a;
        await using var disposeB = b;
        Assert.Equal((ushort)(client.ReceiveConnectionId + 1), client.SendConnectionId);
        Assert.Equal(client.SendConnectionId, server.ReceiveConnectionId);
        Assert.Equal(client.ReceiveConnectionId, server.SendConnectionId);
    }

    [Fact]
    public async Task Connect_ToASilentAddress_FailsAfterTheSynRetries_AtTheStatedBound()
    {
        var time = new ManualTimeProvider();
        var net = new TestDatagramNetwork();
        net.Bind(B); // bound, but nobody answers
        await using var a = new UtpSocket(net.Bind(A), time);
        var options = a.Options;
        Assert.Equal(TimeSpan.FromSeconds(15), options.ConnectTimeoutBound);

        var connect = a.ConnectAsync(B).AsTask();
        time.Advance(options.ConnectTimeoutBound - Tick, Tick);
        Assert.Equal(1, a.ConnectionCount);
        Assert.False(connect.IsFaulted);
        time.Advance(2 * Tick, Tick);
        Assert.Equal(0, a.ConnectionCount);
        var e = await Assert.ThrowsAsync<NetworkException>(() => connect);
        Assert.Equal(SocketError.TimedOut, e.Error);
    }

    [Fact]
    public async Task Connect_IsCancellable()
    {
        var net = new TestDatagramNetwork();
        net.Bind(B);
        await using var a = new UtpSocket(net.Bind(A), TimeProvider.System);
        using var cts = new CancellationTokenSource();
        var connect = a.ConnectAsync(B, cts.Token).AsTask();
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => connect);
        Assert.Equal(0, a.ConnectionCount);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task DeadPeer_IsDetected_WithinTheStatedBound(bool dataInFlight)
    {
        var time = new ManualTimeProvider();
        var net = new TestDatagramNetwork();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var (a, b, client, server) = await PairAsync(net, time, cts.Token);
        await using var disposeA = a;
        await using var disposeB = b;
        var bound = a.Options.DeadPeerTimeout;

        net.Blackhole.Add(B); // the peer vanishes: no FIN, no RESET, nothing
        if (dataInFlight)
        {
            await client.WriteAsync(new byte[50_000], cts.Token);
        }

        var read = client.ReadAsync(new byte[16], cts.Token).AsTask();
        time.Advance(bound - Tick, Tick);
        Assert.Equal(1, a.ConnectionCount);
        time.Advance(2 * Tick, Tick);
        Assert.Equal(0, a.ConnectionCount);
        var e = await Assert.ThrowsAsync<NetworkException>(() => read);
        Assert.Equal(SocketError.TimedOut, e.Error);
    }

    [Fact]
    public async Task Reset_FromThePeer_FailsReadsAndWrites_ButAForgedOneFromElsewhereDoesNot()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var net = new TestDatagramNetwork();
        var (a, b, client, server) = await PairAsync(net, TimeProvider.System, cts.Token);
        await using var disposeA = a;
        await using var disposeB = b;

        var reset = new byte[UtpHeader.Size];
        UtpHeader.Write(reset, UtpPacketType.Reset, 0, client.ReceiveConnectionId, 0, 0, 0, 0, 0);
        a.OnDatagram(reset, Attacker);
        Assert.Equal(1, a.ConnectionCount);

        a.OnDatagram(reset, B);
        Assert.Equal(0, a.ConnectionCount);
        var e = await Assert.ThrowsAsync<NetworkException>(async () => await client.ReadAsync(new byte[1], cts.Token).AsTask());
        Assert.Equal(SocketError.ConnectionReset, e.Error);
        await Assert.ThrowsAsync<NetworkException>(async () => await client.WriteAsync(new byte[1], cts.Token));
    }

    [Fact]
    public async Task Flood_OfGarbageAndForgedConnectionIds_ChangesNothing()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var net = new TestDatagramNetwork();
        var (a, b, client, server) = await PairAsync(net, TimeProvider.System, cts.Token);
        await using var disposeA = a;
        await using var disposeB = b;

        var data = TestData.Generate(500_000, 9);
        var read = TestData.ReadToEndAsync(server, cts.Token);
        var write = Task.Run(async () =>
        {
            await TestData.WriteChunkedAsync(client, data, 10_000, cts.Token);
            client.ShutdownWrite();
        });

        var random = new Random(7);
        var packet = new byte[UtpHeader.Size + 100];
        for (var i = 0; i < 20_000; i++)
        {
            random.NextBytes(packet);
            var kind = i % 4;
            if (kind > 0)
            {
                var type = (UtpPacketType)random.Next(4); // DATA, FIN, STATE, RESET: never SYN
                var id = (ushort)random.Next(0x10000);
                if (id == server.ReceiveConnectionId || id == server.SendConnectionId ||
                    id == (ushort)(server.ReceiveConnectionId + 1) || id == (ushort)(server.SendConnectionId - 1))
                {
                    id ^= 0x8000;
                }

                UtpHeader.Write(packet, type, 0, id, (uint)random.Next(), 0, (uint)random.Next(), (ushort)random.Next(),
                    (ushort)random.Next());
            }

            // forged ids from the real peer's address, and anything at all (right ids too) from an attacker
            if (kind == 3)
            {
                UtpHeader.Write(packet, (UtpPacketType)random.Next(4), 0, server.ReceiveConnectionId, 0, 0, 0,
                    (ushort)random.Next(), (ushort)random.Next());
                b.OnDatagram(packet, Attacker);
            }
            else
            {
                b.OnDatagram(packet, kind == 0 ? Attacker : A);
            }
        }

        await write;
        Assert.Equal(TestData.Sha256(data), TestData.Sha256(await read));
        Assert.Equal(1, b.ConnectionCount);
    }

    [Fact]
    public async Task SharedSocket_HandsNonUtpTrafficToTheOwner_AndUtpKeepsWorking()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await using var server = await UtpSocket.BindAsync(SystemNetwork.Instance, new IPEndPoint(IPAddress.Loopback, 0));
        await using var client = await UtpSocket.BindAsync(SystemNetwork.Instance, new IPEndPoint(IPAddress.Loopback, 0));
        await using var stranger = await SystemNetwork.Instance.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        server.Classifier.AddTurnServer(stranger.LocalEndPoint);

        var accept = server.AcceptAsync(cts.Token);
        await using var c = await client.ConnectAsync(server.LocalEndPoint, cts.Token);
        await using var s = await accept;

        var syn = new byte[UtpHeader.Size];
        UtpHeader.Write(syn, UtpPacketType.Syn, 0, 77, 0, 0, 0, 1, 0); // from a TURN server: ChannelData, not uTP
        await stranger.SendToAsync(syn, server.LocalEndPoint, cts.Token);
        await client.OtherTraffic.SendToAsync("punch"u8.ToArray(), server.LocalEndPoint, cts.Token);
        await c.WriteAsync("hello"u8.ToArray(), cts.Token);

        var buffer = new byte[64];
        var first = await server.OtherTraffic.ReceiveFromAsync(buffer, cts.Token);
        Assert.Equal(stranger.LocalEndPoint, first.RemoteEndPoint);
        Assert.Equal(syn, buffer[..first.Length]);
        var second = await server.OtherTraffic.ReceiveFromAsync(buffer, cts.Token);
        Assert.Equal(client.LocalEndPoint, second.RemoteEndPoint);
        Assert.Equal("punch"u8.ToArray(), buffer[..second.Length]);

        var got = new byte[5];
        await s.ReadExactlyAsync(got, cts.Token);
        Assert.Equal("hello"u8.ToArray(), got);
        Assert.Equal(1, server.ConnectionCount); // the SYN-shaped ChannelData opened nothing
    }

    [Fact]
    public async Task Dispose_SendsFin_SoThePeerReadsEndOfStream()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var net = new TestDatagramNetwork();
        var (a, b, client, server) = await PairAsync(net, TimeProvider.System, cts.Token);
        await using var disposeA = a;
        await using var disposeB = b;
        await client.WriteAsync("bye"u8.ToArray(), cts.Token);
        client.Dispose();
        Assert.Equal("bye"u8.ToArray(), await TestData.ReadToEndAsync(server, cts.Token));
        server.Dispose();
        await WaitUntilAsync(() => a.ConnectionCount == 0 || a.ConnectionCount == 1, cts.Token);
    }

    private static async Task WaitUntilAsync(Func<bool> condition, CancellationToken ct)
    {
        while (!condition())
        {
            await Task.Yield();
            ct.ThrowIfCancellationRequested();
        }
    }
}
