using System.Net;
using System.Net.Sockets;
using NatKit.Net;

namespace NatKit.Net.Tests;

public sealed class SystemNetworkTests
{
    private static readonly INetwork Net = SystemNetwork.Instance;
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task Udp_RoundTrip_OnLoopback_ReportsSenderAndBytes()
    {
        await using var a = await Net.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        await using var b = await Net.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        Assert.NotEqual(0, a.LocalEndPoint.Port);

        await a.SendToAsync("hello"u8.ToArray(), b.LocalEndPoint);
        var buffer = new byte[64];
        using var cts = new CancellationTokenSource(Timeout);
        var got = await b.ReceiveFromAsync(buffer, cts.Token);

        Assert.Equal(5, got.Length);
        Assert.Equal("hello"u8.ToArray(), buffer[..5]);
        Assert.Equal(a.LocalEndPoint, got.RemoteEndPoint);
    }

    [Fact]
    public async Task Udp_RepeatedPeer_YieldsSameEndPointInstance()
    {
        await using var a = await Net.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        await using var b = await Net.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        var buffer = new byte[16];
        using var cts = new CancellationTokenSource(Timeout);
        await a.SendToAsync(new byte[] { 1 }, b.LocalEndPoint);
        var first = await b.ReceiveFromAsync(buffer, cts.Token);
        await a.SendToAsync(new byte[] { 2 }, b.LocalEndPoint);
        var second = await b.ReceiveFromAsync(buffer, cts.Token);

        Assert.Same(first.RemoteEndPoint, second.RemoteEndPoint);
        Assert.Equal(2, buffer[0]);
    }

    [Fact]
    public async Task Udp_ReceiveIsCancellable()
    {
        await using var a = await Net.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(50));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(
            async () => await a.ReceiveFromAsync(new byte[16], cts.Token));
    }

    [Fact]
    public async Task Udp_BindingAPortInUse_ThrowsNetworkExceptionWithSocketError()
    {
        await using var a = await Net.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        var e = await Assert.ThrowsAsync<NetworkException>(
            async () => await Net.BindUdpAsync(a.LocalEndPoint));
        Assert.Equal(SocketError.AddressAlreadyInUse, e.Error);
        Assert.Contains(a.LocalEndPoint.ToString(), e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Udp_Ipv6Loopback_Works()
    {
        await using var a = await Net.BindUdpAsync(new IPEndPoint(IPAddress.IPv6Loopback, 0));
        await using var b = await Net.BindUdpAsync(new IPEndPoint(IPAddress.IPv6Loopback, 0));
        await a.SendToAsync(new byte[] { 7, 8 }, b.LocalEndPoint);
        using var cts = new CancellationTokenSource(Timeout);
        var got = await b.ReceiveFromAsync(new byte[16], cts.Token);
        Assert.Equal(2, got.Length);
        Assert.Equal(a.LocalEndPoint, got.RemoteEndPoint);
    }

    [Fact]
    public async Task Tcp_ConnectAcceptAndHalfClose_DeliverBytesAndEof()
    {
        await using var listener = await Net.ListenTcpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        var acceptTask = listener.AcceptAsync().AsTask();
        await using var client = await Net.ConnectTcpAsync(listener.LocalEndPoint);
        await using var server = await acceptTask;

        Assert.Equal(client.LocalEndPoint, server.RemoteEndPoint);
        await client.Stream.WriteAsync("ping"u8.ToArray());
        client.ShutdownSend();

        using var ms = new MemoryStream();
        using var cts = new CancellationTokenSource(Timeout);
        await server.Stream.CopyToAsync(ms, cts.Token); // ends only because of the FIN
        Assert.Equal("ping"u8.ToArray(), ms.ToArray());

        await server.Stream.WriteAsync("pong"u8.ToArray());
        var reply = new byte[4];
        await client.Stream.ReadExactlyAsync(reply, cts.Token);
        Assert.Equal("pong"u8.ToArray(), reply);
    }

    [Fact]
    public async Task Tcp_ConnectToClosedPort_IsRefused()
    {
        int port;
        await using (var l = await Net.ListenTcpAsync(new IPEndPoint(IPAddress.Loopback, 0)))
        {
            port = l.LocalEndPoint.Port;
        }

        var e = await Assert.ThrowsAsync<NetworkException>(
            async () => await Net.ConnectTcpAsync(new IPEndPoint(IPAddress.Loopback, port)));
        Assert.Equal(SocketError.ConnectionRefused, e.Error);
    }

    [Fact]
    public void LocalAddresses_IncludeLoopback()
    {
        Assert.Contains(IPAddress.Loopback, Net.LocalAddresses);
    }
}

/// <summary><see cref="IStreamReadiness"/> on the real network's TCP connections.</summary>
public sealed class StreamReadinessTests
{
    private static readonly SystemNetwork Net = SystemNetwork.Instance;

    private static bool Eventually(Func<bool> condition) => SpinWait.SpinUntil(condition, TimeSpan.FromSeconds(10));

    [Fact]
    public async Task IdleConnection_IsNotReadable_UntilBytesOrEndOfStreamArrive()
    {
        await using var listener = await Net.ListenTcpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        await using var client = await Net.ConnectTcpAsync(listener.LocalEndPoint);
        await using var server = await listener.AcceptAsync();
        var readiness = Assert.IsAssignableFrom<IStreamReadiness>(client);
        Assert.False(readiness.ReadWouldNotBlock);

        await server.Stream.WriteAsync(new byte[] { 7 });
        Assert.True(Eventually(() => readiness.ReadWouldNotBlock));
        var one = new byte[1];
        Assert.Equal(1, await client.Stream.ReadAsync(one));
        Assert.False(readiness.ReadWouldNotBlock); // drained again

        server.ShutdownSend(); // what a server closing an idle keep-alive connection looks like
        Assert.True(Eventually(() => readiness.ReadWouldNotBlock));
    }

    [Fact]
    public async Task DisposedConnection_CountsAsReadable()
    {
        await using var listener = await Net.ListenTcpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        var client = await Net.ConnectTcpAsync(listener.LocalEndPoint);
        await using var server = await listener.AcceptAsync();
        await client.DisposeAsync();
        Assert.True(((IStreamReadiness)client).ReadWouldNotBlock);
    }
}

/// <summary><see cref="IStreamAbort"/> on the real network's TCP connections.</summary>
public sealed class StreamAbortTests
{
    private static readonly SystemNetwork Net = SystemNetwork.Instance;

    /// <summary>The point of an abort over a dispose: with bytes still queued for a peer that is not reading, the
    /// peer sees a reset, not those bytes followed by a clean end (a plain close queues its FIN behind them).</summary>
    [Fact]
    public async Task Abort_WithBytesQueuedForAPeerThatDoesNotRead_ResetsThePeer()
    {
        await using var listener = await Net.ListenTcpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        await using var client = await Net.ConnectTcpAsync(listener.LocalEndPoint);
        await using var server = await listener.AcceptAsync();
        var body = new byte[32 << 20]; // more than both kernel buffers hold: the write stays pending
        var write = server.Stream.WriteAsync(body).AsTask();
        Assert.False(write.IsCompleted, "the write must still be waiting on the reader");

        var abort = Assert.IsAssignableFrom<IStreamAbort>(server);
        abort.Abort();
        abort.Abort(); // idempotent
        await Assert.ThrowsAnyAsync<Exception>(() => write.WaitAsync(TimeSpan.FromSeconds(30))); // pending writes fail

        long received = 0;
        var buffer = new byte[1 << 20];
        var e = await Assert.ThrowsAsync<IOException>(async () =>
        {
            int n;
            while ((n = await client.Stream.ReadAsync(buffer).AsTask().WaitAsync(TimeSpan.FromSeconds(30))) > 0)
            {
                received += n;
            }
        });
        Assert.Equal(SocketError.ConnectionReset, Assert.IsType<SocketException>(e.InnerException).SocketErrorCode);
        Assert.True(received < body.Length, $"the peer got every byte ({received}) though the sender aborted");
    }
}
