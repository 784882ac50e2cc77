using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using NatKit.Net;

namespace NatKit.Net.Tests;

/// <summary>The splice(2) relay between two real loopback connections: A &lt;-&gt; (a1 | a2) relay (b1 | b2) &lt;-&gt; B.</summary>
public sealed class KernelStreamRelayTests
{
    private static readonly SystemNetwork Net = SystemNetwork.Instance;
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    /// <summary>Two connected pairs: (outerA, innerA) and (innerB, outerB); the relay joins innerA and innerB.</summary>
    private sealed class Pairs : IAsyncDisposable
    {
        public required IStreamConnection OuterA { get; init; }
        public required IStreamConnection InnerA { get; init; }
        public required IStreamConnection InnerB { get; init; }
        public required IStreamConnection OuterB { get; init; }

        public static async Task<Pairs> CreateAsync()
        {
            await using var listener = await Net.ListenTcpAsync(new IPEndPoint(IPAddress.Loopback, 0));
            var outerA = await Net.ConnectTcpAsync(listener.LocalEndPoint);
            var innerA = await listener.AcceptAsync();
            var innerB = await Net.ConnectTcpAsync(listener.LocalEndPoint);
            var outerB = await listener.AcceptAsync();
            return new Pairs { OuterA = outerA, InnerA = innerA, InnerB = innerB, OuterB = outerB };
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var c in (IStreamConnection[])[OuterA, InnerA, InnerB, OuterB])
            {
                await c.DisposeAsync();
            }
        }
    }

    private static async Task<byte[]> ReadToEndAsync(Stream s)
    {
        using var all = new MemoryStream();
        await s.CopyToAsync(all).WaitAsync(Deadline);
        return all.ToArray();
    }

    [Fact]
    public async Task Relay_CarriesBothDirections_PassesHalfCloseOn_AndCountsEveryByte()
    {
        await using var p = await Pairs.CreateAsync();
        long fromA = 0, fromB = 0;
        var relay = Assert.IsAssignableFrom<IKernelStreamRelay>(p.InnerA).TryRelay(p.InnerB, (fromThis, n) =>
        {
            if (fromThis)
            {
                Interlocked.Add(ref fromA, n);
            }
            else
            {
                Interlocked.Add(ref fromB, n);
            }
        }, CancellationToken.None);
        Assert.NotNull(relay);

        var up = RandomNumberGenerator.GetBytes(8 << 20);
        var down = RandomNumberGenerator.GetBytes(3 << 20);
        var readB = ReadToEndAsync(p.OuterB.Stream);
        var readA = ReadToEndAsync(p.OuterA.Stream);
        await p.OuterA.Stream.WriteAsync(up);
        p.OuterA.ShutdownSend(); // A is done; B still talks back over the half-open relay
        Assert.Equal(SHA256.HashData(up), SHA256.HashData(await readB));
        await p.OuterB.Stream.WriteAsync(down);
        p.OuterB.ShutdownSend();
        Assert.Equal(SHA256.HashData(down), SHA256.HashData(await readA));
        await relay.WaitAsync(Deadline);
        Assert.Equal(up.Length, Interlocked.Read(ref fromA));
        Assert.Equal(down.Length, Interlocked.Read(ref fromB));
    }

    /// <summary>Both directions at once toward readers that start late: each direction fills its destination and
    /// must wait for room (and stop waiting for input) until the reader drains it, then carry on to the end.</summary>
    [Fact]
    public async Task Relay_BothWaysAtOnce_ThroughFullDestinations_DeliversEverything()
    {
        await using var p = await Pairs.CreateAsync();
        long fromA = 0, fromB = 0;
        const long Threshold = 2 << 20; // past the pipe's 1 MiB: both destinations are filling
        var filling = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var relay = ((IKernelStreamRelay)p.InnerA).TryRelay(p.InnerB, (fromThis, n) =>
        {
            var a = fromThis ? Interlocked.Add(ref fromA, n) : Interlocked.Read(ref fromA);
            var b = fromThis ? Interlocked.Read(ref fromB) : Interlocked.Add(ref fromB, n);
            if (a >= Threshold && b >= Threshold)
            {
                filling.TrySetResult();
            }
        }, CancellationToken.None);
        Assert.NotNull(relay);

        // More than every buffer on the way can hold (the writer's send buffer, the inner side's receive buffer, the
        // pipe, the relay's send buffer, the reader's receive buffer), from this kernel's autotuning limits: with
        // tcp_rmem's maximum at 32 MiB a fixed 24 MiB could all sit in buffers and both writers finish early.
        var buffered = 2 * (KernelLimit("net/ipv4/tcp_rmem") + KernelLimit("net/ipv4/tcp_wmem")) + (2 << 20);
        var up = RandomNumberGenerator.GetBytes((int)Math.Max(24 << 20, buffered + (4 << 20)));
        var down = RandomNumberGenerator.GetBytes((int)Math.Max(20 << 20, buffered));
        async Task SendAsync(IStreamConnection c, byte[] bytes)
        {
            await c.Stream.WriteAsync(bytes);
            c.ShutdownSend();
        }

        var sendA = SendAsync(p.OuterA, up);
        var sendB = SendAsync(p.OuterB, down);
        await filling.Task.WaitAsync(Deadline);
        Assert.False(sendA.IsCompleted && sendB.IsCompleted, "nobody reads yet: the writers cannot have finished");

        var readB = ReadToEndAsync(p.OuterB.Stream);
        var readA = ReadToEndAsync(p.OuterA.Stream);
        Assert.Equal(SHA256.HashData(up), SHA256.HashData(await readB));
        Assert.Equal(SHA256.HashData(down), SHA256.HashData(await readA));
        await Task.WhenAll(sendA, sendB).WaitAsync(Deadline);
        await relay.WaitAsync(Deadline);
        Assert.Equal(up.Length, Interlocked.Read(ref fromA));
        Assert.Equal(down.Length, Interlocked.Read(ref fromB));
    }

    /// <summary>The largest value of a kernel TCP buffer setting (its third field), 4 MiB where it cannot be read.</summary>
    private static long KernelLimit(string name)
    {
        try
        {
            var fields = File.ReadAllText("/proc/sys/" + name).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            return fields.Length == 3 && long.TryParse(fields[2], out var max) ? Math.Min(max, 256L << 20) : 4L << 20;
        }
        catch (IOException)
        {
            return 4L << 20;
        }
    }

    [Fact]
    public async Task Relay_EndsCanceled_AndLeavesTheConnectionsOpen()
    {
        await using var p = await Pairs.CreateAsync();
        using var cancel = new CancellationTokenSource();
        var relay = ((IKernelStreamRelay)p.InnerA).TryRelay(p.InnerB, (_, _) => { }, cancel.Token);
        Assert.NotNull(relay);
        await p.OuterA.Stream.WriteAsync(new byte[] { 1, 2, 3 });
        var got = new byte[3];
        await p.OuterB.Stream.ReadExactlyAsync(got).AsTask().WaitAsync(Deadline);
        Assert.Equal([1, 2, 3], got);

        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => relay.WaitAsync(Deadline));
        // the relay no longer moves bytes, and the inner connection is still usable by its owner
        await p.OuterA.Stream.WriteAsync(new byte[] { 9 });
        var one = new byte[1];
        await p.InnerA.Stream.ReadExactlyAsync(one).AsTask().WaitAsync(Deadline);
        Assert.Equal(9, one[0]);
    }

    [Fact]
    public async Task Relay_FaultsWithIOException_WhenAPeerResets()
    {
        await using var p = await Pairs.CreateAsync();
        var relay = ((IKernelStreamRelay)p.InnerA).TryRelay(p.InnerB, (_, _) => { }, CancellationToken.None);
        Assert.NotNull(relay);
        // an abortive close of B's far end: linger 0 sends RST
        var socket = (p.OuterB.Stream as NetworkStream)!.Socket;
        socket.LingerState = new LingerOption(true, 0);
        socket.Close();
        await Assert.ThrowsAsync<IOException>(async () =>
        {
            // keep sending toward the reset side until the relay notices
            var chunk = new byte[64 * 1024];
            while (!relay.IsCompleted)
            {
                try
                {
                    await p.OuterA.Stream.WriteAsync(chunk).AsTask().WaitAsync(TimeSpan.FromSeconds(1));
                }
                catch (Exception e) when (e is IOException or TimeoutException)
                {
                    break;
                }
            }

            await relay.WaitAsync(Deadline);
        });
    }

    /// <summary>A direction that waits for room at its destination (a full pipe, a reader that never reads) asks epoll
    /// for room and not for input: when the destination then resets, the error alone must wake the relay and fault
    /// it, with nothing more arriving from the source.</summary>
    [Fact]
    public async Task Relay_WaitingForRoom_FaultsWhenTheDestinationResets()
    {
        await using var p = await Pairs.CreateAsync();
        var far = (p.OuterB.Stream as NetworkStream)!.Socket;
        far.ReceiveBufferSize = 16 * 1024; // the destination fills after a little: the pipe holds the rest
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        long fromA = 0;
        var relay = ((IKernelStreamRelay)p.InnerA).TryRelay(p.InnerB, (fromThis, n) =>
        {
            if (fromThis && Interlocked.Add(ref fromA, n) >= 16 * 1024)
            {
                started.TrySetResult();
            }
        }, CancellationToken.None);
        Assert.NotNull(relay);

        var send = p.OuterA.Stream.WriteAsync(new byte[32 << 20]).AsTask(); // more than pipe and buffers hold
        await started.Task.WaitAsync(Deadline);
        Assert.False(send.IsCompleted, "the source's writer must still be waiting: the relay is stuck on room");
        far.LingerState = new LingerOption(true, 0);
        far.Close(); // RST toward the relay's B side; A sends nothing more than what is already queued
        await Assert.ThrowsAsync<IOException>(() => relay.WaitAsync(Deadline));
        await p.OuterA.DisposeAsync(); // ends the pending write
        await Assert.ThrowsAnyAsync<Exception>(() => send.WaitAsync(Deadline));
    }

    /// <summary>Relays that end as they start (both far ends already half-closed, or one already reset) finish
    /// cleanly, many times over: the relay must not end, and free its handle, while its second socket is added.</summary>
    [Fact]
    public async Task Relays_ThatEndAsTheyStart_FinishCleanly_ManyTimes()
    {
        for (var i = 0; i < 100; i++)
        {
            await using var p = await Pairs.CreateAsync();
            if (i % 2 == 0)
            {
                p.OuterA.ShutdownSend();
                p.OuterB.ShutdownSend();
            }
            else
            {
                var socket = (p.OuterB.Stream as NetworkStream)!.Socket;
                socket.LingerState = new LingerOption(true, 0);
                socket.Close();
            }

            var relay = ((IKernelStreamRelay)p.InnerA).TryRelay(p.InnerB, (_, _) => { }, CancellationToken.None);
            Assert.NotNull(relay);
            if (i % 2 == 0)
            {
                await relay.WaitAsync(Deadline); // both directions saw end-of-stream at once
            }
            else
            {
                await Assert.ThrowsAsync<IOException>(() => relay.WaitAsync(Deadline));
            }
        }
    }

    [Fact]
    public async Task Relay_IsRefused_ForAConnectionOfAnotherKind_OrItself()
    {
        await using var p = await Pairs.CreateAsync();
        var relay = (IKernelStreamRelay)p.InnerA;
        Assert.Null(relay.TryRelay(new OtherConnection(), (_, _) => { }, CancellationToken.None));
        Assert.Null(relay.TryRelay(p.InnerA, (_, _) => { }, CancellationToken.None));
        // refused means untouched: the connection still carries bytes as before
        await p.OuterA.Stream.WriteAsync(new byte[] { 7 });
        var one = new byte[1];
        await p.InnerA.Stream.ReadExactlyAsync(one).AsTask().WaitAsync(Deadline);
        Assert.Equal(7, one[0]);
    }

    /// <summary>A connection of some other network (the lab's, say): the kernel cannot relay it.</summary>
    private sealed class OtherConnection : IStreamConnection
    {
        public Stream Stream { get; } = new MemoryStream();

        public IPEndPoint LocalEndPoint { get; } = new(IPAddress.Loopback, 1);

        public IPEndPoint RemoteEndPoint { get; } = new(IPAddress.Loopback, 2);

        public void ShutdownSend()
        {
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
