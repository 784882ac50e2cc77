namespace NatKit.Lab.Scheduling;

/// <summary>
/// A <see cref="System.TimeProvider"/> over the lab's virtual clock. Timers are events in the lab's queue, so
/// <c>Task.Delay(d, timeProvider)</c>, <c>new CancellationTokenSource(d, timeProvider)</c> and
/// <c>task.WaitAsync(d, timeProvider)</c> all fire in virtual time, on the lab thread.
/// </summary>
public sealed class VirtualTimeProvider : TimeProvider
{
    private static readonly Action<object, long> FireTimer = static (state, generation) =>
        ((LabTimer)state).Fire(generation);

    private readonly LabScheduler _scheduler;

    internal VirtualTimeProvider(LabScheduler scheduler) => _scheduler = scheduler;

    public override TimeZoneInfo LocalTimeZone => TimeZoneInfo.Utc;

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public override DateTimeOffset GetUtcNow() => _scheduler.Epoch + _scheduler.Now;

    public override long GetTimestamp() => _scheduler.NowTicks;

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        ArgumentNullException.ThrowIfNull(callback);
        var timer = new LabTimer(_scheduler, callback, state);
        timer.Change(dueTime, period);
        return timer;
    }

    private sealed class LabTimer(LabScheduler scheduler, TimerCallback callback, object? state) : ITimer
    {
        private readonly ExecutionContext? _context = ExecutionContext.Capture();
        private readonly TimerCallback _callback = callback;
        private readonly object? _state = state;
        private long _generation;
        private long _periodTicks;
        private bool _disposed;

        public bool Change(TimeSpan dueTime, TimeSpan period)
        {
            if (_disposed)
            {
                return false;
            }

            _generation++;
            _periodTicks = period == Timeout.InfiniteTimeSpan ? -1 : Math.Max(1, period.Ticks);
            if (dueTime != Timeout.InfiniteTimeSpan)
            {
                ArgumentOutOfRangeException.ThrowIfLessThan(dueTime, TimeSpan.Zero);
                scheduler.Schedule(dueTime.Ticks, FireTimer, this, _generation);
            }

            return true;
        }

        public void Fire(long generation)
        {
            if (_disposed || generation != _generation)
            {
                return; // changed or disposed since this firing was scheduled
            }

            if (_periodTicks > 0)
            {
                scheduler.Schedule(_periodTicks, FireTimer, this, _generation);
            }

            if (_context is null)
            {
                _callback(_state);
            }
            else
            {
                ExecutionContext.Run(_context, static s =>
                {
                    var t = (LabTimer)s!;
                    t._callback(t._state);
                }, this);
            }
        }

        public void Dispose()
        {
            _disposed = true;
            _generation++;
        }

        public ValueTask DisposeAsync()
        {
            Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
