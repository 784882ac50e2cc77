using System.Net;
using NatKit.Net;

namespace NatKit.Turn.Tests.Support;

/// <summary>A clock that moves only when a test says so; timers fire inside <see cref="Advance"/>.</summary>
public sealed class ManualTime : TimeProvider
{
    private readonly Lock _gate = new();
    private readonly List<ManualTimer> _timers = [];
    private DateTimeOffset _now = DateTimeOffset.FromUnixTimeSeconds(1_700_000_000);
    private long _ticks = 1_000_000;

    public override DateTimeOffset GetUtcNow()
    {
        lock (_gate)
        {
            return _now;
        }
    }

    public override long GetTimestamp()
    {
        lock (_gate)
        {
            return _ticks;
        }
    }

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public void Advance(TimeSpan by)
    {
        List<ManualTimer> due;
        lock (_gate)
        {
            _now += by;
            _ticks += by.Ticks;
            due = _timers.Where(t => t.Due <= _ticks).ToList();
        }

        foreach (var t in due)
        {
            t.Fire(_ticks);
        }
    }

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        var t = new ManualTimer(this, callback, state);
        t.Change(dueTime, period);
        return t;
    }

    private sealed class ManualTimer(ManualTime owner, TimerCallback callback, object? state) : ITimer
    {
        private long _period;

        public long Due { get; private set; } = long.MaxValue;

        public bool Change(TimeSpan dueTime, TimeSpan period)
        {
            lock (owner._gate)
            {
                _period = period == Timeout.InfiniteTimeSpan ? 0 : period.Ticks;
                Due = dueTime == Timeout.InfiniteTimeSpan ? long.MaxValue : owner._ticks + dueTime.Ticks;
                if (!owner._timers.Contains(this))
                {
                    owner._timers.Add(this);
                }
            }

            return true;
        }

        public void Fire(long now)
        {
            lock (owner._gate)
            {
                Due = _period > 0 ? now + _period : long.MaxValue;
            }

            callback(state);
        }

        public void Dispose()
        {
            lock (owner._gate)
            {
                owner._timers.Remove(this);
            }
        }

        public ValueTask DisposeAsync()
        {
            Dispose();
            return ValueTask.CompletedTask;
        }
    }
}

/// <summary>The real loopback network with a test's clock.</summary>
public sealed class ClockedNetwork(TimeProvider time) : INetwork
{
    public TimeProvider TimeProvider => time;

    public IReadOnlyList<IPAddress> LocalAddresses => SystemNetwork.Instance.LocalAddresses;

    public ValueTask<IDatagramSocket> BindUdpAsync(IPEndPoint localEndPoint, CancellationToken cancellationToken = default) =>
        SystemNetwork.Instance.BindUdpAsync(localEndPoint, cancellationToken);

    public ValueTask<IStreamListener> ListenTcpAsync(IPEndPoint localEndPoint, int backlog = 512,
        CancellationToken cancellationToken = default) =>
        SystemNetwork.Instance.ListenTcpAsync(localEndPoint, backlog, cancellationToken);

    public ValueTask<IStreamConnection> ConnectTcpAsync(IPEndPoint remoteEndPoint, IPEndPoint? localEndPoint = null,
        CancellationToken cancellationToken = default) =>
        SystemNetwork.Instance.ConnectTcpAsync(remoteEndPoint, localEndPoint, cancellationToken);
}
