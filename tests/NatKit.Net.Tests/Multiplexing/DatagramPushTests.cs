using System.Buffers.Binary;
using System.Net;
using NatKit.Net;

namespace NatKit.Net.Tests.Multiplexing;

/// <summary><see cref="DatagramPush"/>: one receiver at a time, drains passed on, the end of a push, and the switch
/// from queueing to pushing under a writer on another thread: nothing stranded, duplicated or reordered.</summary>
public sealed class DatagramPushTests
{
    private static readonly IPEndPoint Peer = new(IPAddress.Loopback, 9);

    [Fact]
    public async Task APush_GetsWhatWasQueuedFirst_ThenEachDatagram_AndTheDrains_UntilItEnds()
    {
        var push = new DatagramPush();
        var queue = new DatagramQueue(8);
        push.Deliver("queued"u8, Peer, queue, static (q, d, s) => q.TryWrite(d, s));
        Assert.Equal(1, queue.Count);

        var receiver = new Recorder();
        using var stop = new CancellationTokenSource();
        var pushing = push.Start(receiver, r => queue.DrainTo(r), stop.Token);
        await Assert.ThrowsAsync<InvalidOperationException>(() => push.Start(new Recorder(), null, CancellationToken.None));
        push.Deliver("pushed"u8, Peer, queue, static (q, d, s) => q.TryWrite(d, s));
        push.Drained();
        Assert.Equal(["queued", "pushed"], receiver.Got);
        Assert.Equal(1, receiver.Drains);
        Assert.Equal(0, queue.Count);
        Assert.False(pushing.IsCompleted);

        await stop.CancelAsync();
        await pushing;
        push.Deliver("after"u8, Peer, queue, static (q, d, s) => q.TryWrite(d, s));
        push.Drained();
        Assert.Equal(1, queue.Count);
        Assert.Equal(2, receiver.Got.Count);
        Assert.Equal(1, receiver.Drains);

        // Another push may start once one ended; End stops it whichever it is.
        var second = push.Start(new Recorder(), r => queue.DrainTo(r), CancellationToken.None);
        push.End();
        await second;
    }

    [Fact]
    public async Task SwitchingFromQueueToPush_WhileAWriterDelivers_StrandsNothing_AndKeepsTheOrder()
    {
        const int count = 200_000;
        var push = new DatagramPush();
        var queue = new DatagramQueue(count);
        var receiver = new Numbers();
        using var started = new ManualResetEventSlim();
        var writer = Task.Run(() =>
        {
            Span<byte> d = stackalloc byte[4];
            for (var i = 0; i < count; i++)
            {
                BinaryPrimitives.WriteInt32BigEndian(d, i);
                push.Deliver(d, Peer, queue, static (q, x, s) => q.TryWrite(x, s));
                if (i == 1000)
                {
                    started.Set();
                }
            }
        });

        started.Wait(TimeSpan.FromSeconds(30));
        _ = push.Start(receiver, r => queue.DrainTo(r), CancellationToken.None);
        await writer;

        Assert.Equal(0, queue.Count);
        Assert.Equal(count, receiver.Got.Count);
        for (var i = 0; i < count; i++)
        {
            Assert.Equal(i, receiver.Got[i]);
        }
    }

    private sealed class Recorder : IDatagramReceiver
    {
        public List<string> Got { get; } = [];

        public int Drains { get; private set; }

        public bool TryReceive(ReadOnlySpan<byte> datagram, IPEndPoint source)
        {
            Got.Add(System.Text.Encoding.ASCII.GetString(datagram));
            return true;
        }

        public void OnDrained() => Drains++;
    }

    private sealed class Numbers : IDatagramReceiver
    {
        public List<int> Got { get; } = [];

        public bool TryReceive(ReadOnlySpan<byte> datagram, IPEndPoint source)
        {
            Got.Add(BinaryPrimitives.ReadInt32BigEndian(datagram));
            return true;
        }
    }
}
