using System.Net;
using NatKit.Net;

namespace NatKit.Net.Tests;

/// <summary>The real network's poller (epoll) and non-blocking datagram calls, on loopback.</summary>
public sealed class DatagramPollerTests
{
    private static readonly INetwork Net = SystemNetwork.Instance;

    private static IDatagramPoller NewPoller()
    {
        Assert.True(((IDatagramPollerSource)Net).TryCreatePoller(out var poller));
        return poller;
    }

    private static async Task<(IDatagramSocket Socket, INonBlockingDatagramSocket Direct)> BindAsync(IPAddress address)
    {
        var s = await Net.BindUdpAsync(new IPEndPoint(address, 0));
        return (s, Assert.IsAssignableFrom<INonBlockingDatagramSocket>(s));
    }

    [Fact]
    public async Task Poller_ReportsTheTokenOfAReadableSocket_AndTryReceiveTakesTheDatagram()
    {
        using var poller = NewPoller();
        var (a, da) = await BindAsync(IPAddress.Loopback);
        var (b, db) = await BindAsync(IPAddress.Loopback);
        var (c, _) = await BindAsync(IPAddress.Loopback);
        using (a)
        using (b)
        using (c)
        {
            Assert.True(poller.TryAdd(b, 42));
            Assert.True(poller.TryAdd(c, 7));
            Assert.True(da.TrySend("hello"u8, b.LocalEndPoint));

            var ready = new long[8];
            Assert.Equal(1, poller.Wait(ready, 10_000));
            Assert.Equal(42, ready[0]);

            var buffer = new byte[64];
            Assert.True(db.TryReceive(buffer, out var got));
            Assert.Equal(5, got.Length);
            Assert.Equal("hello"u8.ToArray(), buffer[..5]);
            Assert.Equal(a.LocalEndPoint, got.RemoteEndPoint);
            Assert.False(db.TryReceive(buffer, out _)); // nothing else queued: returns at once
        }
    }

    [Fact]
    public async Task Poller_IsLevelTriggered_ASocketWithDatagramsLeftIsReportedAgain()
    {
        using var poller = NewPoller();
        var (a, da) = await BindAsync(IPAddress.Loopback);
        var (b, db) = await BindAsync(IPAddress.Loopback);
        using (a)
        using (b)
        {
            poller.TryAdd(b, 5);
            Assert.True(da.TrySend(new byte[] { 1 }, b.LocalEndPoint));
            Assert.True(da.TrySend(new byte[] { 2 }, b.LocalEndPoint));
            var ready = new long[8];
            var buffer = new byte[16];
            Assert.Equal(1, poller.Wait(ready, 10_000));
            Assert.True(db.TryReceive(buffer, out _));
            Assert.Equal(1, buffer[0]);
            Assert.Equal(1, poller.Wait(ready, 10_000));
            Assert.Equal(5, ready[0]);
            Assert.True(db.TryReceive(buffer, out var second));
            Assert.Equal(2, buffer[0]);
            Assert.Equal(a.LocalEndPoint, second.RemoteEndPoint);
        }
    }

    [Fact]
    public async Task Poller_RemovedSocket_IsNoLongerReported()
    {
        using var poller = NewPoller();
        var (a, da) = await BindAsync(IPAddress.Loopback);
        var (b, _) = await BindAsync(IPAddress.Loopback);
        var (c, _) = await BindAsync(IPAddress.Loopback);
        using (a)
        using (b)
        using (c)
        {
            poller.TryAdd(b, 1);
            poller.TryAdd(c, 2);
            poller.Remove(b);
            da.TrySend(new byte[] { 1 }, b.LocalEndPoint);
            da.TrySend(new byte[] { 2 }, c.LocalEndPoint);
            var ready = new long[8];
            Assert.Equal(1, poller.Wait(ready, 10_000)); // c's datagram arrives after b's: b was not reported
            Assert.Equal(2, ready[0]);
        }
    }

    [Fact]
    public async Task Poller_Wake_EndsAWaitWithNoTokens()
    {
        using var poller = NewPoller();
        var (b, _) = await BindAsync(IPAddress.Loopback);
        using (b)
        {
            poller.TryAdd(b, 1);
            var waiting = Task.Run(() => poller.Wait(new long[8], -1));
            poller.Wake();
            Assert.Equal(0, await waiting.WaitAsync(TimeSpan.FromSeconds(10)));
        }
    }

    [Fact]
    public async Task Poller_RefusesASocketOfAnotherKind()
    {
        using var poller = NewPoller();
        Assert.False(poller.TryAdd(new NotASocket(), 1));
        var (b, _) = await BindAsync(IPAddress.Loopback);
        b.Dispose();
        Assert.False(poller.TryAdd(b, 2));
    }

    [Fact]
    public async Task TrySend_ReachesAnAsyncReceiver_AndTryReceiveTruncatesToTheBuffer()
    {
        var (a, da) = await BindAsync(IPAddress.Loopback);
        var (b, db) = await BindAsync(IPAddress.Loopback);
        using (a)
        using (b)
        {
            Assert.True(da.TrySend(new byte[] { 9, 8, 7 }, b.LocalEndPoint));
            var buffer = new byte[16];
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            var got = await b.ReceiveFromAsync(buffer, cts.Token);
            Assert.Equal(3, got.Length);
            Assert.Equal(9, buffer[0]);

            // an async sender and a non-blocking receiver; a datagram larger than the buffer comes truncated
            await a.SendToAsync(new byte[100], b.LocalEndPoint);
            using var poller = NewPoller();
            poller.TryAdd(b, 1);
            Assert.Equal(1, poller.Wait(new long[4], 10_000));
            Assert.True(db.TryReceive(buffer, out var big));
            Assert.Equal(16, big.Length);
            Assert.Same(got.RemoteEndPoint, big.RemoteEndPoint); // the same cache serves both kinds of receive
        }
    }

    [Fact]
    public async Task NonBlocking_OverIPv6Loopback_ReportsTheIPv6Sender()
    {
        IDatagramSocket a;
        try
        {
            a = await Net.BindUdpAsync(new IPEndPoint(IPAddress.IPv6Loopback, 0));
        }
        catch (NetworkException)
        {
            return; // no IPv6 on this machine
        }

        var (b, db) = await BindAsync(IPAddress.IPv6Loopback);
        using (a)
        using (b)
        {
            Assert.True(((INonBlockingDatagramSocket)a).TrySend(new byte[] { 6 }, b.LocalEndPoint));
            using var poller = NewPoller();
            poller.TryAdd(b, 1);
            Assert.Equal(1, poller.Wait(new long[4], 10_000));
            Assert.True(db.TryReceive(new byte[8], out var got));
            Assert.Equal(a.LocalEndPoint, got.RemoteEndPoint);
        }
    }

    [Fact]
    public async Task NonBlocking_OnAClosedSocket_ThrowsObjectDisposed()
    {
        var (a, da) = await BindAsync(IPAddress.Loopback);
        var target = a.LocalEndPoint;
        a.Dispose();
        Assert.Throws<ObjectDisposedException>(() => da.TrySend(new byte[] { 1 }, target));
        Assert.Throws<ObjectDisposedException>(() => da.TryReceive(new byte[8], out _));
    }

    private sealed class NotASocket : IDatagramSocket
    {
        public IPEndPoint LocalEndPoint { get; } = new(IPAddress.Loopback, 1);

        public ValueTask<int> SendToAsync(ReadOnlyMemory<byte> datagram, IPEndPoint remoteEndPoint,
            CancellationToken cancellationToken = default) => ValueTask.FromResult(0);

        public ValueTask<ReceivedDatagram> ReceiveFromAsync(Memory<byte> buffer,
            CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public void Dispose()
        {
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
