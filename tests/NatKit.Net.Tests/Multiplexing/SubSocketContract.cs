using System.Net;
using NatKit.Net;

namespace NatKit.Net.Tests.Multiplexing;

/// <summary>
/// <see cref="DatagramMultiplexer"/>'s contract, written once and compiled into two test projects (the way Kestrel
/// compiles one functional suite per transport): NatKit.Net.Tests runs it on <see cref="SystemNetwork"/> loopback,
/// NatKit.Lab.Tests in the in-memory lab. Each test gets a shared socket (<c>a</c>, under the multiplexer) and a
/// plain socket (<c>b</c>) that sends to it.
/// </summary>
/// <remarks>
/// The loop handles datagrams one after another in arrival order, so a test knows everything sent before a marker
/// datagram has been dispatched once the marker's receiver has seen it: no sleeping, no polling.
/// </remarks>
public abstract class SubSocketContract
{
    /// <summary>Runs <paramref name="body"/> with the shared socket's plain socket and a sender, both bound.</summary>
    protected abstract Task Run(Func<IDatagramSocket, IDatagramSocket, Task> body);

    /// <summary>Bounds a wait that should end at once (the real network; the lab fails a stuck run by itself).</summary>
    protected abstract Task Bounded(Task task);

    private async Task<T> Bounded<T>(Task<T> task)
    {
        await Bounded((Task)task);
        return await task;
    }

    [Fact]
    public Task MatchedDatagrams_ReachTheirSubSocket_WithTheSender_AndTheRestGoToTheUnclaimedSocket()
    {
        return Run(async (a, b) =>
        {
            await using var mux = new DatagramMultiplexer(a);
            using var probes = mux.CreateSocket(static (d, _) => d.Length > 0 && d[0] == (byte)'P');
            using var rest = mux.CreateUnclaimedSocket();
            await b.SendToAsync("Punch"u8.ToArray(), a.LocalEndPoint);
            await b.SendToAsync("other"u8.ToArray(), a.LocalEndPoint);
            await b.SendToAsync("Probe"u8.ToArray(), a.LocalEndPoint);

            var buffer = new byte[64];
            var first = await Bounded(probes.ReceiveFromAsync(buffer).AsTask());
            Assert.Equal("Punch", Text(buffer, first));
            Assert.Equal(b.LocalEndPoint.Port, first.RemoteEndPoint.Port);
            var second = await Bounded(probes.ReceiveFromAsync(buffer).AsTask());
            Assert.Equal("Probe", Text(buffer, second));
            var other = await Bounded(rest.ReceiveFromAsync(buffer).AsTask());
            Assert.Equal("other", Text(buffer, other));
            Assert.Equal(3, mux.Received);
            Assert.Equal(0, mux.Unclaimed);
        });
    }

    [Fact]
    public Task Receivers_AreAskedMostSpecificKindFirst_ThenInTheOrderAdded_AndUnclaimedOnesAreCounted()
    {
        return Run(async (a, b) =>
        {
            await using var mux = new DatagramMultiplexer(a);
            var content = new Recorder("content", claimPrefix: "");
            var content2 = new Recorder("content2", claimPrefix: "");
            var bySource = new Recorder("source", claimPrefix: "S");
            var byTransaction = new Recorder("transaction", claimPrefix: "T");
            var marker = new Marker();
            mux.AddReceiver(marker, DatagramClaim.ByTransaction);
            mux.AddReceiver(content, DatagramClaim.ByContent); // added first, asked last
            mux.AddReceiver(content2, DatagramClaim.ByContent);
            mux.AddReceiver(bySource, DatagramClaim.BySource);
            mux.AddReceiver(byTransaction, DatagramClaim.ByTransaction);

            await b.SendToAsync("T1"u8.ToArray(), a.LocalEndPoint);
            await b.SendToAsync("S1"u8.ToArray(), a.LocalEndPoint);
            await b.SendToAsync("x1"u8.ToArray(), a.LocalEndPoint);
            await marker.SendAndWaitAsync(b, a, Bounded);

            Assert.Equal(["T1"], byTransaction.Claimed);
            Assert.Equal(["S1"], bySource.Claimed);
            Assert.Equal(["x1"], content.Claimed);
            Assert.Empty(content2.Claimed); // the first ByContent receiver took it
            Assert.Equal(["T1", "S1", "x1"], byTransaction.Offered);
            Assert.Equal(["S1", "x1"], bySource.Offered);
            Assert.Equal(["x1"], content.Offered);
            Assert.Empty(content2.Offered);

            Assert.True(mux.RemoveReceiver(content));
            Assert.False(mux.RemoveReceiver(content));
            await b.SendToAsync("x2"u8.ToArray(), a.LocalEndPoint);
            await marker.SendAndWaitAsync(b, a, Bounded);
            Assert.Equal(["x2"], content2.Claimed);
            content2.ClaimNothing = true;
            await b.SendToAsync("x3"u8.ToArray(), a.LocalEndPoint);
            await marker.SendAndWaitAsync(b, a, Bounded);
            Assert.Equal(1, mux.Unclaimed); // x3: no one took it and no unclaimed socket is open
            Assert.Throws<InvalidOperationException>(() => mux.AddReceiver(content2));
        });
    }

    [Fact]
    public Task Oversize_Queued_IsDropped_NotCutShort_AndTheNextFittingDatagramArrives()
    {
        return Run(async (a, b) =>
        {
            await using var mux = new DatagramMultiplexer(a);
            var marker = new Marker();
            mux.AddReceiver(marker);
            using var sub = mux.CreateUnclaimedSocket();
            await b.SendToAsync(Filled(100, 7), a.LocalEndPoint);
            await b.SendToAsync(Filled(3, 9), a.LocalEndPoint);
            await marker.SendAndWaitAsync(b, a, Bounded); // both queued before the receive

            var buffer = new byte[50];
            var got = await Bounded(sub.ReceiveFromAsync(buffer).AsTask());
            Assert.Equal(3, got.Length);
            Assert.Equal(Filled(3, 9), buffer[..3]);
            Assert.Equal(1, sub.OversizeDropped);
        });
    }

    [Fact]
    public Task Oversize_ArrivingWhileAReceiveWaits_IsDropped_AndTheReceiveGoesOnWaiting()
    {
        return Run(async (a, b) =>
        {
            await using var mux = new DatagramMultiplexer(a);
            var marker = new Marker();
            mux.AddReceiver(marker);
            using var sub = mux.CreateUnclaimedSocket();
            var buffer = new byte[50];
            var pending = sub.ReceiveFromAsync(buffer).AsTask();

            await b.SendToAsync(Filled(51, 7), a.LocalEndPoint);
            await marker.SendAndWaitAsync(b, a, Bounded);
            Assert.False(pending.IsCompleted);
            Assert.Equal(1, sub.OversizeDropped);
            Assert.All(buffer, x => Assert.Equal(0, x)); // not a byte of it landed

            await b.SendToAsync(Filled(50, 9), a.LocalEndPoint); // an exact fit is delivered
            var got = await Bounded(pending);
            Assert.Equal(50, got.Length);
            Assert.Equal(Filled(50, 9), buffer);
        });
    }

    [Fact]
    public Task OneReceiveAtATime_ASecondConcurrentReceiveThrows_AndTheFirstStillCompletes()
    {
        return Run(async (a, b) =>
        {
            await using var mux = new DatagramMultiplexer(a);
            using var sub = mux.CreateUnclaimedSocket();
            var buffer = new byte[16];
            var first = sub.ReceiveFromAsync(buffer).AsTask();
            Assert.Throws<InvalidOperationException>(() => { _ = sub.ReceiveFromAsync(new byte[16]); });
            await b.SendToAsync(Filled(4, 1), a.LocalEndPoint);
            Assert.Equal(4, (await Bounded(first)).Length);
        });
    }

    [Fact]
    public Task Cancellation_EndsTheWaitingReceive_AndTheNextReceiveGetsTheNextDatagram()
    {
        return Run(async (a, b) =>
        {
            await using var mux = new DatagramMultiplexer(a);
            using var sub = mux.CreateUnclaimedSocket();
            var buffer = new byte[16];
            using (var cts = new CancellationTokenSource())
            {
                var pending = sub.ReceiveFromAsync(buffer, cts.Token).AsTask();
                cts.Cancel();
                await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Bounded(pending));
                await Assert.ThrowsAnyAsync<OperationCanceledException>(
                    async () => await sub.ReceiveFromAsync(buffer, cts.Token)); // already cancelled
            }

            await b.SendToAsync(Filled(5, 3), a.LocalEndPoint);
            var got = await Bounded(sub.ReceiveFromAsync(buffer).AsTask());
            Assert.Equal(5, got.Length);
        });
    }

    [Fact]
    public Task TheQueueIsBounded_DatagramsBeyondItAreDropped_AndCounted()
    {
        return Run(async (a, b) =>
        {
            await using var mux = new DatagramMultiplexer(a);
            var marker = new Marker();
            mux.AddReceiver(marker);
            using var sub = mux.CreateSocket(static (d, _) => d.Length == 1, queueCapacity: 4);
            for (var i = 0; i < 10; i++)
            {
                await b.SendToAsync(new[] { (byte)i }, a.LocalEndPoint);
            }

            await marker.SendAndWaitAsync(b, a, Bounded);
            Assert.Equal(6, sub.Dropped);
            var buffer = new byte[4];
            for (var i = 0; i < 4; i++)
            {
                var got = await Bounded(sub.ReceiveFromAsync(buffer).AsTask());
                Assert.Equal(i, buffer[0]); // the first four, in order: the newest were dropped
            }

            using var cts = new CancellationTokenSource();
            var none = sub.ReceiveFromAsync(buffer, cts.Token).AsTask();
            Assert.False(none.IsCompleted);
            cts.Cancel();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Bounded(none));
        });
    }

    [Fact]
    public Task DisposingASubSocket_EndsItsReceives_AndRemovesOnlyIt()
    {
        return Run(async (a, b) =>
        {
            await using var mux = new DatagramMultiplexer(a);
            var marker = new Marker();
            mux.AddReceiver(marker);
            var probes = mux.CreateSocket(static (d, _) => d.Length > 0 && d[0] == (byte)'P');
            using var others = mux.CreateSocket(static (d, _) => d.Length > 0 && d[0] == (byte)'O');
            using var rest = mux.CreateUnclaimedSocket();
            var buffer = new byte[16];
            var pending = probes.ReceiveFromAsync(buffer).AsTask();

            probes.Dispose();
            await Assert.ThrowsAsync<ObjectDisposedException>(() => Bounded(pending));
            await Assert.ThrowsAsync<ObjectDisposedException>(async () => await probes.ReceiveFromAsync(buffer));
            await Assert.ThrowsAsync<ObjectDisposedException>(
                async () => await probes.SendToAsync(buffer, b.LocalEndPoint));
            probes.Dispose(); // idempotent

            await b.SendToAsync("P1"u8.ToArray(), a.LocalEndPoint);
            await b.SendToAsync("O1"u8.ToArray(), a.LocalEndPoint);
            Assert.Equal("P1", Text(buffer, await Bounded(rest.ReceiveFromAsync(buffer).AsTask())));
            Assert.Equal("O1", Text(buffer, await Bounded(others.ReceiveFromAsync(buffer).AsTask())));

            rest.Dispose(); // another unclaimed socket may take its place
            using var rest2 = mux.CreateUnclaimedSocket();
            await b.SendToAsync("x"u8.ToArray(), a.LocalEndPoint);
            Assert.Equal("x", Text(buffer, await Bounded(rest2.ReceiveFromAsync(buffer).AsTask())));
        });
    }

    [Fact]
    public Task OnlyOneUnclaimedSocket_IsOpenAtATime()
    {
        return Run(async (a, _) =>
        {
            await using var mux = new DatagramMultiplexer(a);
            using var rest = mux.CreateUnclaimedSocket();
            Assert.Throws<InvalidOperationException>(() => mux.CreateUnclaimedSocket());
        });
    }

    [Fact]
    public Task DisposingTheMultiplexer_ClosesEverySubSocket_TellsEveryReceiverOnce_AndEndsTheLoop()
    {
        return Run(async (a, b) =>
        {
            var mux = new DatagramMultiplexer(a);
            var receiver = new Recorder("r", claimPrefix: "R");
            mux.AddReceiver(receiver);
            var sub = mux.CreateSocket(static (_, _) => true);
            var rest = mux.CreateUnclaimedSocket();
            var pending = sub.ReceiveFromAsync(new byte[16]).AsTask();
            var pendingRest = rest.ReceiveFromAsync(new byte[16]).AsTask();

            await mux.DisposeAsync();
            await Assert.ThrowsAsync<ObjectDisposedException>(() => Bounded(pending));
            await Assert.ThrowsAsync<ObjectDisposedException>(() => Bounded(pendingRest));
            await Assert.ThrowsAsync<ObjectDisposedException>(async () => await sub.ReceiveFromAsync(new byte[16]));
            await Assert.ThrowsAsync<ObjectDisposedException>(
                async () => await mux.SendToAsync(new byte[1], b.LocalEndPoint));
            await Assert.ThrowsAsync<ObjectDisposedException>(
                async () => await sub.SendToAsync(new byte[1], b.LocalEndPoint));
            Assert.Throws<ObjectDisposedException>(() => mux.AddReceiver(new Recorder("late", "")));
            Assert.Equal(1, receiver.Closed);
            await mux.DisposeAsync();
            Assert.Equal(1, receiver.Closed);
            Assert.True(mux.Completion.IsCompleted);
            // It owned the socket: closed with it.
            await Assert.ThrowsAsync<ObjectDisposedException>(async () => await a.ReceiveFromAsync(new byte[16]));
        });
    }

    [Fact]
    public Task ASocketTheMultiplexerDoesNotOwn_IsTheOwnersAgain_AfterDisposeAsync()
    {
        return Run(async (a, b) =>
        {
            var mux = new DatagramMultiplexer(a, ownsSocket: false);
            using var rest = mux.CreateUnclaimedSocket();
            await b.SendToAsync("one"u8.ToArray(), a.LocalEndPoint);
            var buffer = new byte[16];
            Assert.Equal("one", Text(buffer, await Bounded(rest.ReceiveFromAsync(buffer).AsTask())));
            await mux.DisposeAsync();

            var direct = a.ReceiveFromAsync(buffer).AsTask(); // no receive of the multiplexer's is left pending
            await b.SendToAsync("two"u8.ToArray(), a.LocalEndPoint);
            Assert.Equal("two", Text(buffer, await Bounded(direct)));
        });
    }

    [Fact]
    public Task Sends_GoOutFromTheSharedSocket()
    {
        return Run(async (a, b) =>
        {
            await using var mux = new DatagramMultiplexer(a, ownsSocket: false);
            using var sub = mux.CreateSocket(static (_, _) => true);
            var buffer = new byte[16];
            var pending = b.ReceiveFromAsync(buffer).AsTask();
            await sub.SendToAsync("hi"u8.ToArray(), b.LocalEndPoint);
            var got = await Bounded(pending);
            Assert.Equal("hi", Text(buffer, got));
            Assert.Equal(a.LocalEndPoint.Port, got.RemoteEndPoint.Port);
            Assert.Equal(a.LocalEndPoint, sub.LocalEndPoint);
        });
    }

    [Fact]
    public Task Drained_IsCalled_OnceTheSocketHasNothingQueued()
    {
        return Run(async (a, b) =>
        {
            await using var mux = new DatagramMultiplexer(a);
            var marker = new Marker();
            mux.AddReceiver(marker);
            for (var i = 0; i < 5; i++)
            {
                await b.SendToAsync(new[] { (byte)i }, a.LocalEndPoint);
            }

            await marker.SendAndWaitAsync(b, a, Bounded);
            await Bounded(marker.DrainedAfterMark.Task); // the loop went back to waiting: the hook ran
        });
    }

    [Fact]
    public Task AReceiverThatThrows_IsCounted_AndTheLoopGoesOn()
    {
        return Run(async (a, b) =>
        {
            await using var mux = new DatagramMultiplexer(a);
            var marker = new Marker();
            mux.AddReceiver(marker);
            mux.AddReceiver(new Thrower());
            using var rest = mux.CreateUnclaimedSocket();
            await b.SendToAsync("boom"u8.ToArray(), a.LocalEndPoint);
            await b.SendToAsync("fine"u8.ToArray(), a.LocalEndPoint);
            var buffer = new byte[16];
            Assert.Equal("fine", Text(buffer, await Bounded(rest.ReceiveFromAsync(buffer).AsTask())));
            Assert.Equal(1, mux.ReceiverFaults);
        });
    }

    private static string Text(byte[] buffer, ReceivedDatagram got) =>
        System.Text.Encoding.ASCII.GetString(buffer, 0, got.Length);

    private static byte[] Filled(int length, byte value)
    {
        var b = new byte[length];
        Array.Fill(b, value);
        return b;
    }

    /// <summary>Claims datagrams starting with its prefix ("" claims everything), and records what it saw.</summary>
    private sealed class Recorder(string name, string claimPrefix) : IDatagramReceiver
    {
        public List<string> Offered { get; } = [];

        public List<string> Claimed { get; } = [];

        public bool ClaimNothing { get; set; }

        public int Closed { get; private set; }

        public bool TryReceive(ReadOnlySpan<byte> datagram, IPEndPoint source)
        {
            var text = System.Text.Encoding.ASCII.GetString(datagram);
            Offered.Add(text);
            if (ClaimNothing || !text.StartsWith(claimPrefix, StringComparison.Ordinal))
            {
                return false;
            }

            Claimed.Add(text);
            return true;
        }

        public void OnClosed() => Closed++;

        public override string ToString() => name;
    }

    /// <summary>Claims the "MARK" datagrams a test sends to learn that everything before has been dispatched.</summary>
    private sealed class Marker : IDatagramReceiver
    {
        private static readonly byte[] Mark = "MARK"u8.ToArray();
        private TaskCompletionSource<bool> _seen = new();

        public TaskCompletionSource<bool> DrainedAfterMark { get; private set; } = new();

        public async Task SendAndWaitAsync(IDatagramSocket from, IDatagramSocket to, Func<Task, Task> bounded)
        {
            _seen = new TaskCompletionSource<bool>();
            DrainedAfterMark = new TaskCompletionSource<bool>();
            await from.SendToAsync(Mark, to.LocalEndPoint);
            await bounded(_seen.Task);
        }

        public bool TryReceive(ReadOnlySpan<byte> datagram, IPEndPoint source)
        {
            if (!datagram.SequenceEqual(Mark))
            {
                return false;
            }

            _seen.TrySetResult(true);
            return true;
        }

        public void OnDrained()
        {
            if (_seen.Task.IsCompleted)
            {
                DrainedAfterMark.TrySetResult(true);
            }
        }
    }

    private sealed class Thrower : IDatagramReceiver
    {
        public bool TryReceive(ReadOnlySpan<byte> datagram, IPEndPoint source) =>
            datagram.SequenceEqual("boom"u8) ? throw new InvalidOperationException("a receiver bug") : false;
    }
}
