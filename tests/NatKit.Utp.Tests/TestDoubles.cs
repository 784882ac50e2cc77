using System.Net;
using System.Runtime.InteropServices;
using System.Threading.Channels;
using NatKit.Net;

namespace NatKit.Utp.Tests;

/// <summary>
/// An in-test datagram network for state-machine tests (the Done-when lab tests use NatKit.Lab): sockets by
/// address, zero latency, and seeded loss, duplication and reordering (a held-back datagram is released after the
/// next few). <see cref="Blackhole"/> cuts a host off.
/// </summary>
internal sealed class TestDatagramNetwork
{
    private readonly Dictionary<IPEndPoint, TestDatagramSocket> _sockets = [];
    private readonly Random _random;
    private readonly Lock _gate = new();
    private readonly List<(byte[] Data, IPEndPoint From, IPEndPoint To, int Left)> _held = [];

    public TestDatagramNetwork(int seed = 1) => _random = new Random(seed);

    public double Loss { get; set; }

    public double Duplicate { get; set; }

    public double Reorder { get; set; }

    public HashSet<IPEndPoint> Blackhole { get; } = [];

    public long Delivered { get; private set; }

    /// <summary>Every datagram sent: its length and sender (before loss is decided).</summary>
    public event Action<int, IPEndPoint>? Sent;

    public TestDatagramSocket Bind(IPEndPoint address)
    {
        lock (_gate)
        {
            var s = new TestDatagramSocket(this, address);
            _sockets.Add(address, s);
            return s;
        }
    }

    internal void Send(ReadOnlySpan<byte> data, IPEndPoint from, IPEndPoint to)
    {
        Sent?.Invoke(data.Length, from);
        lock (_gate)
        {
            if (Blackhole.Contains(from) || Blackhole.Contains(to) || _random.NextDouble() < Loss)
            {
                ReleaseHeld();
                return;
            }

            var copy = data.ToArray();
            if (_random.NextDouble() < Reorder)
            {
                _held.Add((copy, from, to, 1 + _random.Next(4)));
                return;
            }

            DeliverLocked(copy, from, to);
            if (_random.NextDouble() < Duplicate)
            {
                DeliverLocked(copy, from, to);
            }

            ReleaseHeld();
        }
    }

    private void ReleaseHeld()
    {
        for (var i = _held.Count - 1; i >= 0; i--)
        {
            var h = _held[i];
            if (--h.Left <= 0)
            {
                _held.RemoveAt(i);
                DeliverLocked(h.Data, h.From, h.To);
            }
            else
            {
                _held[i] = h;
            }
        }
    }

    private void DeliverLocked(byte[] data, IPEndPoint from, IPEndPoint to)
    {
        if (_sockets.TryGetValue(to, out var s))
        {
            Delivered++;
            s.Inbox.Writer.TryWrite((data, from));
        }
    }
}

internal sealed class TestDatagramSocket(TestDatagramNetwork network, IPEndPoint address) : IDatagramSocket
{
    public Channel<(byte[] Data, IPEndPoint From)> Inbox { get; } =
        Channel.CreateUnbounded<(byte[], IPEndPoint)>(new UnboundedChannelOptions { SingleReader = true });

    public IPEndPoint LocalEndPoint => address;

    public ValueTask<int> SendToAsync(ReadOnlyMemory<byte> datagram, IPEndPoint remoteEndPoint,
        CancellationToken cancellationToken = default)
    {
        network.Send(datagram.Span, address, remoteEndPoint);
        return ValueTask.FromResult(datagram.Length);
    }

    public async ValueTask<ReceivedDatagram> ReceiveFromAsync(Memory<byte> buffer,
        CancellationToken cancellationToken = default)
    {
        try
        {
            var (data, from) = await Inbox.Reader.ReadAsync(cancellationToken);
            var n = Math.Min(data.Length, buffer.Length);
            data.AsSpan(0, n).CopyTo(buffer.Span);
            return new ReceivedDatagram(n, from);
        }
        catch (ChannelClosedException e)
        {
            throw new ObjectDisposedException("socket", e);
        }
    }

    public void Dispose() => Inbox.Writer.TryComplete();

    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }
}


/// <summary>
/// A datagram socket that, like a kernel under pressure, sometimes reads the caller's buffer late: a held send returns
/// a ValueTask that is not yet complete and keeps only the caller's memory; the bytes are copied out (and forwarded to
/// <paramref name="inner"/>) only when the hold ends, after a few more sends or when the test calls
/// <see cref="ReleaseAll"/>. It also snapshots each held buffer, so a caller that rewrites (or hands to the pool) a
/// buffer a send still reads shows up in <see cref="MutatedWhileHeld"/>.
/// </summary>
internal sealed class LateReadingDatagramSocket(IDatagramSocket inner, int seed) : IDatagramSocket
{
    private readonly Lock _gate = new();
    private readonly Random _random = new(seed);
    private readonly List<Held> _held = [];

    /// <summary>Chance that a send is held (0 sends everything at once).</summary>
    public double HoldProbability { get; set; }

    /// <summary>A held send is read after 1 to this many later sends on this socket.</summary>
    public int MaxHoldSends { get; set; } = 64;

    public int HeldTotal { get; private set; }

    public int MutatedWhileHeld { get; private set; }

    /// <summary>The arrays of sends that are held right now.</summary>
    public List<byte[]> HeldArrays()
    {
        lock (_gate)
        {
            var arrays = new List<byte[]>();
            foreach (var h in _held)
            {
                if (MemoryMarshal.TryGetArray(h.Memory, out var segment))
                {
                    arrays.Add(segment.Array!);
                }
            }

            return arrays;
        }
    }

    public IPEndPoint LocalEndPoint => inner.LocalEndPoint;

    public ValueTask<int> SendToAsync(ReadOnlyMemory<byte> datagram, IPEndPoint remoteEndPoint,
        CancellationToken cancellationToken = default)
    {
        List<Held>? due = null;
        TaskCompletionSource<int>? pending = null;
        lock (_gate)
        {
            for (var i = _held.Count - 1; i >= 0; i--)
            {
                var h = _held[i];
                if (--h.SendsLeft <= 0)
                {
                    (due ??= []).Add(h);
                    _held.RemoveAt(i);
                }
            }

            if (_random.NextDouble() < HoldProbability)
            {
                HeldTotal++;
                pending = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
                _held.Add(new Held(datagram, datagram.ToArray(), remoteEndPoint, pending, 1 + _random.Next(MaxHoldSends)));
            }
        }

        if (due is not null)
        {
            // Oldest first, as the kernel would drain its queue.
            for (var i = due.Count - 1; i >= 0; i--)
            {
                Complete(due[i]);
            }
        }

        if (pending is not null)
        {
            return new ValueTask<int>(pending.Task);
        }

        return inner.SendToAsync(datagram, remoteEndPoint, cancellationToken);
    }

    /// <summary>Reads and forwards every held send now.</summary>
    public void ReleaseAll()
    {
        List<Held> all;
        lock (_gate)
        {
            all = [.. _held];
            _held.Clear();
        }

        foreach (var h in all)
        {
            Complete(h);
        }
    }

    private void Complete(Held h)
    {
        // The late read: whatever the caller's memory holds now is what leaves.
        var bytes = h.Memory.ToArray();
        if (!bytes.AsSpan().SequenceEqual(h.Snapshot))
        {
            lock (_gate)
            {
                MutatedWhileHeld++;
            }
        }

        try
        {
            var sent = inner.SendToAsync(bytes, h.To).AsTask().GetAwaiter().GetResult();
            h.Completion.SetResult(sent);
        }
        catch (Exception e)
        {
            h.Completion.SetException(e);
        }
    }

    public ValueTask<ReceivedDatagram> ReceiveFromAsync(Memory<byte> buffer,
        CancellationToken cancellationToken = default) => inner.ReceiveFromAsync(buffer, cancellationToken);

    public void Dispose()
    {
        ReleaseAll();
        inner.Dispose();
    }

    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }

    private sealed class Held(ReadOnlyMemory<byte> memory, byte[] snapshot, IPEndPoint to,
        TaskCompletionSource<int> completion, int sendsLeft)
    {
        public ReadOnlyMemory<byte> Memory { get; } = memory;

        public byte[] Snapshot { get; } = snapshot;

        public IPEndPoint To { get; } = to;

        public TaskCompletionSource<int> Completion { get; } = completion;

        public int SendsLeft { get; set; } = sendsLeft;
    }
}
