using System.Buffers.Binary;
using System.Net;
using NatKit.Net;

namespace NatKit.Net.Tests.Multiplexing;

/// <summary><see cref="DatagramQueue"/> under real threads: a writer and a reader that keeps cancelling its receives
/// race, and nothing is lost uncounted, duplicated, reordered or torn.</summary>
public sealed class DatagramQueueTests
{
    private static readonly IPEndPoint Peer = new(IPAddress.Loopback, 9);

    [Fact]
    public async Task AWriterRacingAReaderThatCancels_LosesNothingUncounted_AndTearsNothing()
    {
        const int count = 50_000;
        var queue = new DatagramQueue(64);
        var writer = Task.Run(() =>
        {
            Span<byte> d = stackalloc byte[8];
            for (var i = 0; i < count; i++)
            {
                BinaryPrimitives.WriteInt32BigEndian(d, i);
                BinaryPrimitives.WriteInt32BigEndian(d[4..], ~i);
                queue.TryWrite(d, Peer);
            }

            // The end: retried until the reader makes room (those retries are drops of their own).
            BinaryPrimitives.WriteInt32BigEndian(d, -1);
            var retries = 0L;
            while (!queue.TryWrite(d, Peer))
            {
                retries++;
                Thread.Yield();
            }

            return retries;
        });

        var received = 0;
        var last = -1;
        var buffer = new byte[8];
        var round = 0;
        while (true)
        {
            // Every third receive is cancelled almost at once: the cancellation races the writer's hand-off.
            using var cts = new CancellationTokenSource();
            var pending = queue.ReceiveAsync(buffer, cts.Token).AsTask();
            if (round++ % 3 == 0)
            {
                cts.Cancel();
            }

            try
            {
                var got = await pending.WaitAsync(TimeSpan.FromSeconds(10));
                Assert.Equal(8, got.Length);
                var i = BinaryPrimitives.ReadInt32BigEndian(buffer);
                if (i == -1)
                {
                    break;
                }

                Assert.Equal(~i, BinaryPrimitives.ReadInt32BigEndian(buffer.AsSpan(4)));
                Assert.True(i > last, $"{i} after {last}");
                last = i;
                received++;
            }
            catch (OperationCanceledException)
            {
            }
        }

        var endRetries = await writer;
        Assert.Equal(count, received + queue.Dropped - endRetries);
    }

    [Fact]
    public async Task AfterComplete_ReceivesAndWritesAreRefused_AndQueuedDatagramsReleased()
    {
        var queue = new DatagramQueue(4, "relay");
        Assert.True(queue.TryWrite([1, 2, 3], Peer));
        queue.Complete();
        Assert.Equal(0, queue.Count);
        Assert.False(queue.TryWrite([4], Peer));
        var e = await Assert.ThrowsAsync<ObjectDisposedException>(async () => await queue.ReceiveAsync(new byte[4]));
        Assert.Equal("relay", e.ObjectName);
        queue.Complete(); // idempotent
    }

    [Fact]
    public void Capacity_MustBePositive() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new DatagramQueue(0));

    [Fact]
    public async Task DrainTo_HandsOverWhatIsQueued_OldestFirst_AndLeavesTheQueueEmpty()
    {
        var queue = new DatagramQueue(8);
        var other = new IPEndPoint(IPAddress.Loopback, 10);
        Assert.True(queue.TryWrite("one"u8, Peer));
        Assert.True(queue.TryWrite("two"u8, other));
        Assert.True(queue.TryWrite("three"u8, Peer));
        var taken = new List<(string, IPEndPoint)>();
        var receiver = new Recording(taken);

        Assert.Equal(3, queue.DrainTo(receiver));
        Assert.Equal([("one", Peer), ("two", other), ("three", Peer)], taken);
        Assert.Equal(0, queue.Count);
        Assert.Equal(0, queue.DrainTo(receiver));

        // What comes after the drain is queued again for a receive, as before.
        Assert.True(queue.TryWrite("four"u8, Peer));
        var buffer = new byte[16];
        var got = await queue.ReceiveAsync(buffer);
        Assert.Equal("four", System.Text.Encoding.ASCII.GetString(buffer, 0, got.Length));
    }

    private sealed class Recording(List<(string, IPEndPoint)> taken) : IDatagramReceiver
    {
        public bool TryReceive(ReadOnlySpan<byte> datagram, IPEndPoint source)
        {
            taken.Add((System.Text.Encoding.ASCII.GetString(datagram), source));
            return true;
        }
    }
}
