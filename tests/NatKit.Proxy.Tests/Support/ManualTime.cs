using System.Net;
using NatKit.Net;

namespace NatKit.Proxy.Tests.Support;

/// <summary>A clock that moves only when the test says so. <see cref="TimerArmed"/> completes when code arms a
/// timer, so a test can wait for the proxy to start timing before it advances.</summary>
public sealed class ManualTime : TimeProvider
{
    private readonly Lock _gate = new();
    private readonly List<Timer> _timers = [];
    private long _ticks;
    private TaskCompletionSource _armed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override long GetTimestamp() => Interlocked.Read(ref _ticks);

    public override DateTimeOffset GetUtcNow() => new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero).AddTicks(GetTimestamp());

    /// <summary>Completes the next time a timer is armed with a finite due time.</summary>
    public Task TimerArmed
    {
        get
        {
            lock (_gate)
            {
                return _armed.Task;
            }
        }
    }

    public void ResetArmed()
    {
        lock (_gate)
        {
            _armed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        }
    }

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        var t = new Timer(this, callback, state);
        lock (_gate)
        {
            _timers.Add(t);
        }

        t.Change(dueTime, period);
        return t;
    }

    public void Advance(TimeSpan by)
    {
        Interlocked.Add(ref _ticks, by.Ticks);
        while (true)
        {
            Timer? due = null;
            lock (_gate)
            {
                foreach (var t in _timers)
                {
                    if (t.DueAt is { } at && at <= _ticks)
                    {
                        due = t;
                        break;
                    }
                }

                if (due is not null)
                {
                    due.DueAt = due.Period > TimeSpan.Zero ? due.DueAt + due.Period.Ticks : null;
                }
            }

            if (due is null)
            {
                return;
            }

            due.Callback(due.State);
        }
    }

    private sealed class Timer(ManualTime owner, TimerCallback callback, object? state) : ITimer
    {
        public TimerCallback Callback { get; } = callback;

        public object? State { get; } = state;

        public long? DueAt { get; set; }

        public TimeSpan Period { get; private set; }

        public bool Change(TimeSpan dueTime, TimeSpan period)
        {
            TaskCompletionSource? armed = null;
            lock (owner._gate)
            {
                DueAt = dueTime == Timeout.InfiniteTimeSpan ? null : owner._ticks + dueTime.Ticks;
                Period = period == Timeout.InfiniteTimeSpan ? TimeSpan.Zero : period;
                if (DueAt is not null)
                {
                    armed = owner._armed;
                }
            }

            armed?.TrySetResult();
            return true;
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

/// <summary>The real network with another clock: real loopback sockets, virtual time.</summary>
public sealed class ClockedNetwork(INetwork inner, TimeProvider time) : INetwork
{
    public TimeProvider TimeProvider => time;

    public IReadOnlyList<IPAddress> LocalAddresses => inner.LocalAddresses;

    public ValueTask<IDatagramSocket> BindUdpAsync(IPEndPoint localEndPoint, CancellationToken cancellationToken = default) =>
        inner.BindUdpAsync(localEndPoint, cancellationToken);

    public ValueTask<IStreamListener> ListenTcpAsync(IPEndPoint localEndPoint, int backlog = 512,
        CancellationToken cancellationToken = default) => inner.ListenTcpAsync(localEndPoint, backlog, cancellationToken);

    public ValueTask<IStreamConnection> ConnectTcpAsync(IPEndPoint remoteEndPoint, IPEndPoint? localEndPoint = null,
        CancellationToken cancellationToken = default) => inner.ConnectTcpAsync(remoteEndPoint, localEndPoint, cancellationToken);
}

/// <summary>The real network, refusing any connection that would leave loopback: fuzzed requests may name any
/// address, and none of them may be reached.</summary>
public sealed class LoopbackOnlyNetwork(INetwork inner) : INetwork
{
    public TimeProvider TimeProvider => inner.TimeProvider;

    public IReadOnlyList<IPAddress> LocalAddresses => inner.LocalAddresses;

    public ValueTask<IDatagramSocket> BindUdpAsync(IPEndPoint localEndPoint, CancellationToken cancellationToken = default) =>
        IPAddress.IsLoopback(localEndPoint.Address)
            ? inner.BindUdpAsync(localEndPoint, cancellationToken)
            : throw new NetworkException(System.Net.Sockets.SocketError.AccessDenied, "test: loopback only");

    public ValueTask<IStreamListener> ListenTcpAsync(IPEndPoint localEndPoint, int backlog = 512,
        CancellationToken cancellationToken = default) => inner.ListenTcpAsync(localEndPoint, backlog, cancellationToken);

    public ValueTask<IStreamConnection> ConnectTcpAsync(IPEndPoint remoteEndPoint, IPEndPoint? localEndPoint = null,
        CancellationToken cancellationToken = default) =>
        IPAddress.IsLoopback(remoteEndPoint.Address)
            ? inner.ConnectTcpAsync(remoteEndPoint, localEndPoint, cancellationToken)
            : throw new NetworkException(System.Net.Sockets.SocketError.ConnectionRefused, "test: loopback only");
}
