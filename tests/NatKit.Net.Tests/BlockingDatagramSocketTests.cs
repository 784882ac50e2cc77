using System.Net;
using NatKit.Net;

namespace NatKit.Net.Tests;

/// <summary>The real network's synchronous datagram capability, on loopback.</summary>
public sealed class BlockingDatagramSocketTests
{
    private static readonly INetwork Net = SystemNetwork.Instance;
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private static async Task<(IDatagramSocket Socket, IBlockingDatagramSocket Blocking)> BindAsync(IPAddress address)
    {
        var s = await Net.BindUdpAsync(new IPEndPoint(address, 0));
        var blocking = Assert.IsAssignableFrom<IBlockingDatagramSocket>(s);
        return (s, blocking);
    }

    [Theory]
    [InlineData("127.0.0.1")]
    [InlineData("::1")]
    public async Task SendAndReceive_Blocking_DeliverBytesAndTheSender(string address)
    {
        var (a, ab) = await BindAsync(IPAddress.Parse(address));
        var (b, bb) = await BindAsync(IPAddress.Parse(address));
        await using var _ = a;
        await using var __ = b;

        Assert.Equal(5, ab.Send("hello"u8, b.LocalEndPoint));
        var buffer = new byte[64];
        var got = await Task.Run(() => bb.Receive(buffer)).WaitAsync(Timeout);

        Assert.Equal(5, got.Length);
        Assert.Equal("hello"u8.ToArray(), buffer[..5]);
        Assert.Equal(a.LocalEndPoint, got.RemoteEndPoint);
    }

    [Fact]
    public async Task Receive_FromAKnownPeer_YieldsTheSameEndPointAsTheAsyncPath()
    {
        var (a, _) = await BindAsync(IPAddress.Loopback);
        var (b, bb) = await BindAsync(IPAddress.Loopback);
        await using var x = a;
        await using var y = b;
        var buffer = new byte[16];
        using var cts = new CancellationTokenSource(Timeout);

        await a.SendToAsync(new byte[] { 1 }, b.LocalEndPoint);
        var first = await b.ReceiveFromAsync(buffer, cts.Token);
        await a.SendToAsync(new byte[] { 2, 3 }, b.LocalEndPoint);
        var second = await Task.Run(() => bb.Receive(buffer)).WaitAsync(Timeout);

        Assert.Same(first.RemoteEndPoint, second.RemoteEndPoint);
        Assert.Equal(2, second.Length);
        Assert.Equal(new byte[] { 2, 3 }, buffer[..2]);
    }

    [Fact]
    public async Task Receive_LargerThanTheBuffer_IsSkippedAndTheNextDatagramArrives()
    {
        var (a, ab) = await BindAsync(IPAddress.Loopback);
        var (b, bb) = await BindAsync(IPAddress.Loopback);
        await using var x = a;
        await using var y = b;

        ab.Send(new byte[100], b.LocalEndPoint);
        ab.Send(new byte[] { 9 }, b.LocalEndPoint);
        var buffer = new byte[10];
        var got = await Task.Run(() => bb.Receive(buffer)).WaitAsync(Timeout);

        // Whether the kernel truncates or the runtime reports the size, the receive must not fail; the small
        // datagram is delivered either now or right after a truncated first one.
        if (got.Length != 1)
        {
            got = await Task.Run(() => bb.Receive(buffer)).WaitAsync(Timeout);
        }

        Assert.Equal(1, got.Length);
        Assert.Equal(9, buffer[0]);
    }

    [Fact]
    public async Task Dispose_WhileAReceiveIsBlocked_EndsItWithObjectDisposed()
    {
        var (a, ab) = await BindAsync(IPAddress.Loopback);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var receive = Task.Factory.StartNew(() =>
        {
            started.SetResult();
            return ab.Receive(new byte[16]);
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        await started.Task;

        // Until the thread is really inside the kernel call we cannot know; a receive that started after the
        // dispose must fail the same way, so either order pins the behaviour.
        await a.DisposeAsync();

        await Assert.ThrowsAsync<ObjectDisposedException>(() => receive.WaitAsync(Timeout));
    }

    [Fact]
    public async Task Send_AfterDispose_ThrowsObjectDisposed()
    {
        var (a, ab) = await BindAsync(IPAddress.Loopback);
        await a.DisposeAsync();
        Assert.Throws<ObjectDisposedException>(() => ab.Send(new byte[1], new IPEndPoint(IPAddress.Loopback, 9)));
    }

    [Theory]
    [InlineData("127.0.0.1")]
    [InlineData("::1")]
    public async Task ReceiveBatch_TakesEveryQueuedDatagram_WithItsBytesAndSender(string address)
    {
        var ip = IPAddress.Parse(address);
        var (a, ab) = await BindAsync(ip);
        var (c, cb) = await BindAsync(ip);
        var (b, bb) = await BindAsync(ip);
        await using var x = a;
        await using var y = b;
        await using var z = c;

        // Loopback delivers within the send call, so all three are queued before the receive starts.
        ab.Send(new byte[] { 1 }, b.LocalEndPoint);
        cb.Send(new byte[] { 2, 2 }, b.LocalEndPoint);
        ab.Send(new byte[] { 3, 3, 3 }, b.LocalEndPoint);
        using var batch = new DatagramBatch(8, 64);
        var n = await Task.Run(() => bb.ReceiveBatch(batch)).WaitAsync(Timeout);

        Assert.Equal(3, n);
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(i + 1, batch.Datagram(i).Length);
            Assert.True(batch.Datagram(i).ToArray().All(v => v == i + 1));
        }

        Assert.Equal(a.LocalEndPoint, batch.RemoteEndPoint(0));
        Assert.Equal(c.LocalEndPoint, batch.RemoteEndPoint(1));
        Assert.Same(batch.RemoteEndPoint(0), batch.RemoteEndPoint(2));
    }

    [Fact]
    public async Task ReceiveBatch_TakesNoMoreThanItsCapacity_AndLeavesTheRestQueued()
    {
        var (a, ab) = await BindAsync(IPAddress.Loopback);
        var (b, bb) = await BindAsync(IPAddress.Loopback);
        await using var x = a;
        await using var y = b;
        for (byte i = 0; i < 5; i++)
        {
            ab.Send(new[] { i }, b.LocalEndPoint);
        }

        using var batch = new DatagramBatch(3, 16);
        Assert.Equal(3, await Task.Run(() => bb.ReceiveBatch(batch)).WaitAsync(Timeout));
        Assert.Equal(2, batch.Datagram(2)[0]);
        Assert.Equal(2, await Task.Run(() => bb.ReceiveBatch(batch)).WaitAsync(Timeout));
        Assert.Equal(3, batch.Datagram(0)[0]);
        Assert.Equal(4, batch.Datagram(1)[0]);
    }

    [Fact]
    public async Task ReceiveBatch_SkipsADatagramLargerThanASlot()
    {
        var (a, ab) = await BindAsync(IPAddress.Loopback);
        var (b, bb) = await BindAsync(IPAddress.Loopback);
        await using var x = a;
        await using var y = b;
        ab.Send(new byte[] { 7 }, b.LocalEndPoint);
        ab.Send(new byte[100], b.LocalEndPoint);
        ab.Send(new byte[] { 8, 8 }, b.LocalEndPoint);

        using var batch = new DatagramBatch(4, 10);
        var n = await Task.Run(() => bb.ReceiveBatch(batch)).WaitAsync(Timeout);

        Assert.Equal(2, n);
        Assert.Equal(new byte[] { 7 }, batch.Datagram(0).ToArray());
        Assert.Equal(new byte[] { 8, 8 }, batch.Datagram(1).ToArray());
    }

    [Fact]
    public async Task SendBatch_DeliversEachSlotToItsOwnDestination()
    {
        var (a, ab) = await BindAsync(IPAddress.Loopback);
        var (b, _) = await BindAsync(IPAddress.Loopback);
        var (c, _) = await BindAsync(IPAddress.Loopback);
        await using var x = a;
        await using var y = b;
        await using var z = c;
        using var batch = new DatagramBatch(4, 32);
        "to-b"u8.CopyTo(batch.Slot(0));
        batch.Set(0, 4, b.LocalEndPoint);
        "to-c!"u8.CopyTo(batch.Slot(1));
        batch.Set(1, 5, c.LocalEndPoint);
        "b2"u8.CopyTo(batch.Slot(2));
        batch.Set(2, 2, b.LocalEndPoint);

        Assert.Equal(3, ab.SendBatch(batch, 3));

        using var cts = new CancellationTokenSource(Timeout);
        var buffer = new byte[32];
        var got = await b.ReceiveFromAsync(buffer, cts.Token);
        Assert.Equal("to-b"u8.ToArray(), buffer[..got.Length]);
        Assert.Equal(a.LocalEndPoint, got.RemoteEndPoint);
        got = await b.ReceiveFromAsync(buffer, cts.Token);
        Assert.Equal("b2"u8.ToArray(), buffer[..got.Length]);
        got = await c.ReceiveFromAsync(buffer, cts.Token);
        Assert.Equal("to-c!"u8.ToArray(), buffer[..got.Length]);
    }

    [Fact]
    public async Task SendBatch_ARefusedDatagram_IsSkipped_AndTheRestGo()
    {
        var (a, ab) = await BindAsync(IPAddress.Loopback);
        var (b, _) = await BindAsync(IPAddress.Loopback);
        await using var x = a;
        await using var y = b;
        using var batch = new DatagramBatch(3, 8);
        batch.Set(0, 1, new IPEndPoint(IPAddress.Broadcast, 9)); // no SO_BROADCAST: the kernel refuses it
        batch.Slot(1)[0] = 42;
        batch.Set(1, 1, b.LocalEndPoint);

        Assert.Equal(1, ab.SendBatch(batch, 2));
        using var cts = new CancellationTokenSource(Timeout);
        var buffer = new byte[8];
        var got = await b.ReceiveFromAsync(buffer, cts.Token);
        Assert.Equal(42, buffer[0]);
        Assert.Equal(1, got.Length);
    }

    [Fact]
    public async Task ReceiveBatch_AfterAnAsyncReceive_StillWaitsForData()
    {
        // An asynchronous call makes the runtime's socket non-blocking; a batch receive must then wait, not spin
        // or fail.
        var (a, ab) = await BindAsync(IPAddress.Loopback);
        var (b, bb) = await BindAsync(IPAddress.Loopback);
        await using var x = a;
        await using var y = b;
        ab.Send(new byte[] { 1 }, b.LocalEndPoint);
        using var cts = new CancellationTokenSource(Timeout);
        await b.ReceiveFromAsync(new byte[4], cts.Token);

        using var batch = new DatagramBatch(4, 8);
        var receive = Task.Run(() => bb.ReceiveBatch(batch));
        ab.Send(new byte[] { 5 }, b.LocalEndPoint);
        Assert.Equal(1, await receive.WaitAsync(Timeout));
        Assert.Equal(5, batch.Datagram(0)[0]);
    }

    [Fact]
    public async Task Dispose_WhileAReceiveBatchIsBlocked_EndsItWithObjectDisposed()
    {
        var (a, ab) = await BindAsync(IPAddress.Loopback);
        using var batch = new DatagramBatch(4, 8);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var receive = Task.Factory.StartNew(() =>
        {
            started.SetResult();
            return ab.ReceiveBatch(batch);
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        await started.Task;

        await a.DisposeAsync();

        await Assert.ThrowsAsync<ObjectDisposedException>(() => receive.WaitAsync(Timeout));
    }

    [Fact]
    public void DatagramBatch_RejectsOutOfRangeSlotsAndLengths()
    {
        using var batch = new DatagramBatch(2, 8);
        Assert.Throws<ArgumentOutOfRangeException>(() => batch.Slot(2));
        Assert.Throws<ArgumentOutOfRangeException>(() => batch.Set(0, 9, new IPEndPoint(IPAddress.Loopback, 1)));
        Assert.Throws<InvalidOperationException>(() => batch.RemoteEndPoint(1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DatagramBatch(0, 8));
    }
}
