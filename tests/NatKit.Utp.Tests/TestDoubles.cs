using System.Net;
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

/// <summary>A clock the test moves by hand; timers fire synchronously inside <see cref="Advance"/>.</summary>
internal sealed class ManualTimeProvider : TimeProvider
{
    private readonly Lock _gate = new();
    private readonly List<ManualTimer> _timers = [];
    private long _now;

    public TimeSpan Elapsed => TimeSpan.FromTicks(Interlocked.Read(ref _now));

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override long GetTimestamp() => Interlocked.Read(ref _now);

    public override DateTimeOffset GetUtcNow() => new DateTimeOffset(2024, 1, 1, 0, 0, 0, TimeSpan.Zero) + Elapsed;

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        var t = new ManualTimer(this, callback, state);
        lock (_gate)
        {
            _timers.Add(t);
        }

        t.Change(dueTime, period);
        return t;
    }

    /// <summary>Moves time forward in <paramref name="step"/>s, firing due timers at each step.</summary>
    public void Advance(TimeSpan by, TimeSpan step)
    {
        var end = Elapsed + by;
        while (Elapsed < end)
        {
            var next = Elapsed + step < end ? Elapsed + step : end;
            Interlocked.Exchange(ref _now, next.Ticks);
            ManualTimer[] timers;
            lock (_gate)
            {
                timers = [.. _timers];
            }

            foreach (var t in timers)
            {
                t.FireIfDue(next.Ticks);
            }
        }
    }

    private sealed class ManualTimer(ManualTimeProvider owner, TimerCallback callback, object? state) : ITimer
    {
        private long _due = -1;
        private long _period = -1;

        public bool Change(TimeSpan dueTime, TimeSpan period)
        {
            lock (this)
            {
                _due = dueTime == Timeout.InfiniteTimeSpan ? -1 : owner.GetTimestamp() + dueTime.Ticks;
                _period = period == Timeout.InfiniteTimeSpan ? -1 : period.Ticks;
            }

            return true;
        }

        public void FireIfDue(long now)
        {
            while (true)
            {
                lock (this)
                {
                    if (_due < 0 || _due > now)
                    {
                        return;
                    }

                    _due = _period > 0 ? _due + _period : -1;
                }

                callback(state);
            }
        }

        public void Dispose()
        {
            lock (this)
            {
                _due = -1;
            }
        }

        public ValueTask DisposeAsync()
        {
            Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
