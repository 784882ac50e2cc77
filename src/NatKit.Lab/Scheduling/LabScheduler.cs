using System.Diagnostics;

namespace NatKit.Lab.Scheduling;

/// <summary>
/// The lab's single-threaded, deterministic event loop. Two queues: a run queue of continuations posted to the
/// lab's <see cref="SynchronizationContext"/>, and a queue of future events (timers, packet deliveries) ordered by
/// virtual time and then by the order they were scheduled. The loop drains the run queue; when nothing is
/// runnable it jumps virtual time to the next event. Nothing here reads the wall clock, so a run is a pure
/// function of the code, the topology and the seed.
/// </summary>
public sealed class LabScheduler
{
    private readonly PriorityQueue<ScheduledEvent, EventKey> _events = new();
    private readonly Queue<(SendOrPostCallback Callback, object? State)> _runnable = new();
    private readonly object _runnableLock = new();
    private readonly LabSynchronizationContext _context;
    private long _sequence;
    private long _foreground;
    private int _runnableCount;
    private int _loopThread;

    public LabScheduler(DateTimeOffset? epoch = null)
    {
        Epoch = epoch ?? DefaultEpoch;
        TimeProvider = new VirtualTimeProvider(this);
        _context = new LabSynchronizationContext(this);
    }

    /// <summary>Where virtual time starts unless told otherwise: a fixed instant, so timestamps (pcap, logs)
    /// are the same on every run.</summary>
    public static DateTimeOffset DefaultEpoch { get; } = new(2024, 1, 1, 0, 0, 0, TimeSpan.Zero);

    /// <summary>The wall-clock instant that virtual time zero stands for.</summary>
    public DateTimeOffset Epoch { get; }

    /// <summary>Virtual time elapsed since the start, in <see cref="TimeSpan"/> ticks (100 ns).</summary>
    public long NowTicks { get; private set; }

    /// <summary>Virtual time elapsed since the start.</summary>
    public TimeSpan Now => TimeSpan.FromTicks(NowTicks);

    /// <summary>The clock to hand to code running in the lab: timers are events in this loop.</summary>
    public VirtualTimeProvider TimeProvider { get; }

    /// <summary>The synchronization context installed while the loop runs.</summary>
    public SynchronizationContext SynchronizationContext => _context;

    /// <summary>Work items run and events fired so far (what <see cref="LabRunOptions.MaxSteps"/> counts).</summary>
    public long Steps { get; private set; }

    /// <summary>Events waiting in the future queue.</summary>
    public int PendingEvents => _events.Count;

    /// <summary>True while a Run/Advance call is pumping on the current thread.</summary>
    public bool IsOnLoop => _loopThread != 0 && _loopThread == Environment.CurrentManagedThreadId;

    /// <summary>Schedules <paramref name="callback"/>(state, arg) at virtual time now + <paramref name="delayTicks"/>.
    /// A static callback and a pooled state make this allocation-free.</summary>
    public void Schedule(long delayTicks, Action<object, long> callback, object state, long arg = 0) =>
        Schedule(delayTicks, callback, state, arg, background: false);

    /// <summary>Schedules an event. A <paramref name="background"/> event (a router's housekeeping tick) runs
    /// like any other but does not keep a Run alive: when only background events are left and nothing is
    /// runnable, the scenario is deadlocked.</summary>
    public void Schedule(long delayTicks, Action<object, long> callback, object state, long arg, bool background)
    {
        ArgumentNullException.ThrowIfNull(callback);
        EnsureLabThread();
        var due = NowTicks + Math.Max(0, delayTicks);
        if (!background)
        {
            _foreground++;
        }

        _events.Enqueue(new ScheduledEvent(callback, state, arg, background), new EventKey(due, _sequence++));
    }

    /// <summary>Queues a continuation to run on the loop (what the lab's SynchronizationContext.Post does).
    /// Safe from any thread.</summary>
    public void Post(SendOrPostCallback callback, object? state)
    {
        ArgumentNullException.ThrowIfNull(callback);
        lock (_runnableLock)
        {
            _runnable.Enqueue((callback, state));
            _runnableCount++;
            Monitor.PulseAll(_runnableLock);
        }
    }

    /// <summary>Runs <paramref name="action"/> on the loop: now if this is the loop thread, else posted to it.
    /// For the few lab entry points that .NET itself may call from the thread pool (cancellation callbacks
    /// after <c>CancellationTokenSource.CancelAsync</c>, disposal that follows them).</summary>
    internal void OnLoop(Action<object?> action, object? state)
    {
        if (_loopThread == 0 || IsOnLoop)
        {
            action(state);
        }
        else
        {
            Post(static s =>
            {
                var (a, st) = ((Action<object?>, object?))s!;
                a(st);
            }, (action, state));
        }
    }

    private bool WaitForOffThreadPost(TimeSpan grace)
    {
        // Nothing is runnable and nothing is scheduled. Work that escaped to the thread pool (CancelAsync's
        // callbacks, a Task.Run) may still post back; give it a short wall-clock grace before calling it a
        // deadlock. A real deadlock costs only this grace.
        if (grace <= TimeSpan.Zero)
        {
            return false;
        }

        lock (_runnableLock)
        {
            return _runnable.Count > 0 || (Monitor.Wait(_runnableLock, grace) && _runnable.Count > 0);
        }
    }

    /// <summary>
    /// Runs <paramref name="scenario"/> on this thread inside the lab until its task completes, and returns its
    /// result (or rethrows its exception). Fails with <see cref="LabRunException"/> on a deadlock (the task is
    /// not done, nothing is runnable and no event is due) or when a budget in <paramref name="options"/> runs out.
    /// </summary>
    public T Run<T>(Func<Task<T>> scenario, LabRunOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(scenario);
        Task<T>? task = null;
        Pump(() => task = scenario(), () => task!.IsCompleted, long.MaxValue, options ?? LabRunOptions.Default,
            stopAtDeadline: false);
        return task!.GetAwaiter().GetResult();
    }

    /// <inheritdoc cref="Run{T}(Func{Task{T}}, LabRunOptions?)"/>
    public void Run(Func<Task> scenario, LabRunOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(scenario);
        Task? task = null;
        Pump(() => task = scenario(), () => task!.IsCompleted, long.MaxValue, options ?? LabRunOptions.Default,
            stopAtDeadline: false);
        task!.GetAwaiter().GetResult();
    }

    /// <summary>Runs everything due within the next <paramref name="duration"/> of virtual time, then leaves the
    /// clock exactly <paramref name="duration"/> later. Idle stretches are skipped, so hours pass in
    /// milliseconds.</summary>
    public void Advance(TimeSpan duration, LabRunOptions? options = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(duration, TimeSpan.Zero);
        var deadline = NowTicks + duration.Ticks;
        Pump(null, static () => false, deadline, options ?? LabRunOptions.Unbounded, stopAtDeadline: true);
    }

    /// <summary>Runs what is runnable and due now, without moving the clock.</summary>
    public void RunPending() => Advance(TimeSpan.Zero);

    internal void EnsureLabThread()
    {
        if (_loopThread != 0 && _loopThread != Environment.CurrentManagedThreadId)
        {
            throw new InvalidOperationException(
                "lab object used off the lab thread: code running in the lab must not use Task.Run, threads, " +
                "real timers or continuations that escape to the thread pool (see docs/lab.md, rules)");
        }
    }

    private void Pump(Action? start, Func<bool> done, long deadline, LabRunOptions options, bool stopAtDeadline)
    {
        if (_loopThread != 0)
        {
            throw new InvalidOperationException("the lab loop is already running (Run/Advance do not nest)");
        }

        var previous = SynchronizationContext.Current;
        _loopThread = Environment.CurrentManagedThreadId;
        SynchronizationContext.SetSynchronizationContext(_context);
        var startTicks = NowTicks;
        var startSteps = Steps;
        try
        {
            start?.Invoke();
            while (!done())
            {
                if (TryTakeRunnable(out var item))
                {
                    CountStep(options, startSteps);
                    item.Callback(item.State);
                    continue;
                }

                if (_events.TryPeek(out var next, out var key) && (stopAtDeadline || _foreground > 0))
                {
                    if (key.Due > deadline)
                    {
                        break;
                    }

                    if (key.Due - startTicks > options.MaxVirtualTime.Ticks)
                    {
                        throw new LabRunException(LabRunFailure.VirtualTimeBudget,
                            $"the scenario did not finish within {options.MaxVirtualTime} of virtual time " +
                            $"(now {Now}, next event at {TimeSpan.FromTicks(key.Due)}); something keeps " +
                            "scheduling timers or packets. Raise LabRunOptions.MaxVirtualTime if this is expected.");
                    }

                    _events.Dequeue();
                    if (!next.Background)
                    {
                        _foreground--;
                    }

                    NowTicks = Math.Max(NowTicks, key.Due);
                    CountStep(options, startSteps);

                    // Events fire with no synchronization context: .NET only runs a ConfigureAwait(false)
                    // continuation inline when the current context is null, otherwise it escapes to the thread
                    // pool. Continuations that captured the lab context still come back through Post.
                    SynchronizationContext.SetSynchronizationContext(null);
                    try
                    {
                        next.Callback(next.State, next.Arg);
                    }
                    finally
                    {
                        SynchronizationContext.SetSynchronizationContext(_context);
                    }

                    continue;
                }

                if (stopAtDeadline)
                {
                    break;
                }

                if (WaitForOffThreadPost(options.OffThreadGrace))
                {
                    continue;
                }

                throw new LabRunException(LabRunFailure.Deadlock,
                    $"deadlock at virtual time {Now}: the scenario is still waiting, nothing is runnable and no " +
                    "timer or packet is scheduled (only routers' housekeeping, if anything), so it can never finish. Typical causes: a receive with no " +
                    "timeout and no sender, an await on something outside the lab (Task.Run, a thread, a real " +
                    "timer or Task.Delay without the lab's TimeProvider).");
            }

            if (stopAtDeadline && deadline != long.MaxValue)
            {
                NowTicks = Math.Max(NowTicks, deadline);
            }
        }
        finally
        {
            SynchronizationContext.SetSynchronizationContext(previous);
            _loopThread = 0;
        }
    }

    private void CountStep(LabRunOptions options, long startSteps)
    {
        Steps++;
        if (Steps - startSteps > options.MaxSteps)
        {
            throw new LabRunException(LabRunFailure.StepBudget,
                $"the scenario did not finish within {options.MaxSteps} steps (virtual time {Now}): a busy loop " +
                "(something that posts work forever without waiting on time). Raise LabRunOptions.MaxSteps if " +
                "this is expected.");
        }
    }

    private bool TryTakeRunnable(out (SendOrPostCallback Callback, object? State) item)
    {
        if (Volatile.Read(ref _runnableCount) == 0)
        {
            item = default;
            return false; // the common case in packet-heavy runs: skip the lock
        }

        lock (_runnableLock)
        {
            if (_runnable.TryDequeue(out item))
            {
                _runnableCount--;
                return true;
            }

            return false;
        }
    }

    private readonly record struct ScheduledEvent(Action<object, long> Callback, object State, long Arg, bool Background);

    private readonly record struct EventKey(long Due, long Sequence) : IComparable<EventKey>
    {
        public int CompareTo(EventKey other)
        {
            var c = Due.CompareTo(other.Due);
            return c != 0 ? c : Sequence.CompareTo(other.Sequence);
        }
    }

    private sealed class LabSynchronizationContext(LabScheduler scheduler) : SynchronizationContext
    {
        public override void Post(SendOrPostCallback d, object? state) => scheduler.Post(d, state);

        public override void Send(SendOrPostCallback d, object? state)
        {
            Debug.Assert(scheduler.IsOnLoop, "Send from off the lab thread");
            d(state);
        }

        public override SynchronizationContext CreateCopy() => this;
    }
}

/// <summary>Limits on one Run, so a scenario that never ends fails with a message instead of hanging.</summary>
public sealed record LabRunOptions
{
    /// <summary>Defaults for Run: a day of virtual time, 50 million steps.</summary>
    public static LabRunOptions Default { get; } = new();

    /// <summary>No limits (used by Advance, whose deadline already bounds it).</summary>
    public static LabRunOptions Unbounded { get; } = new()
    {
        MaxVirtualTime = TimeSpan.MaxValue,
        MaxSteps = long.MaxValue,
    };

    /// <summary>Virtual time one Run may cover before it fails.</summary>
    public TimeSpan MaxVirtualTime { get; init; } = TimeSpan.FromDays(1);

    /// <summary>Continuations and events one Run may execute before it fails.</summary>
    public long MaxSteps { get; init; } = 50_000_000;

    /// <summary>Wall-clock time the loop waits, when it would otherwise report a deadlock, for work that .NET
    /// ran on the thread pool (for example CancellationTokenSource.CancelAsync's callbacks) to post back.</summary>
    public TimeSpan OffThreadGrace { get; init; } = TimeSpan.FromMilliseconds(500);
}

/// <summary>Why a lab run stopped early.</summary>
public enum LabRunFailure
{
    Deadlock,
    VirtualTimeBudget,
    StepBudget,
}

/// <summary>A lab run could not finish: deadlock or budget exceeded. The message says which and why.</summary>
public sealed class LabRunException : Exception
{
    public LabRunException(LabRunFailure failure, string message)
        : base(message)
    {
        Failure = failure;
    }

    public LabRunException()
        : this(LabRunFailure.Deadlock, "lab run failed")
    {
    }

    public LabRunException(string message)
        : this(LabRunFailure.Deadlock, message)
    {
    }

    public LabRunException(string message, Exception inner)
        : base(message, inner)
    {
    }

    public LabRunFailure Failure { get; }
}
