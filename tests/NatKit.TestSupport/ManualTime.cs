namespace NatKit.TestSupport;

/// <summary>A clock that moves only when the test says so (shared by every part's tests). <see cref="TimerArmed"/> completes when code arms a
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
