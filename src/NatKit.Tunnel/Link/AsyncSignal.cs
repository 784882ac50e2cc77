using System.Threading.Tasks.Sources;

namespace NatKit.Tunnel.Link;

/// <summary>
/// An auto-reset event for one waiter, without an allocation per wait: <see cref="Set"/> from any thread wakes the
/// waiter (or lets its next wait return at once). The waiter's continuation never runs inside <see cref="Set"/>: it is
/// posted to the loop the signal was made for (the lab's), or else to the thread pool, so a data-plane thread that
/// sets it is never borrowed by the code it wakes.
/// </summary>
/// <remarks>
/// Why a loop and not the waiter's captured context: in the lab a waiter often waits from a continuation that a
/// lab socket ran inline with no context current, and such a wait would otherwise resume on the thread pool, which
/// the lab refuses (docs/lab.md, rules 2-4). Waiters await with ConfigureAwait(false): on the loop the waiter then
/// runs inside the posted callback, with no context current, like a lab event.
/// </remarks>
internal sealed class AsyncSignal : IValueTaskSource
{
    private static readonly SendOrPostCallback Complete = static s =>
    {
        // On the loop, with no context current (as the lab runs its events): a ConfigureAwait(false) continuation
        // that the waiter's code completes in turn then runs inline too, instead of escaping to the thread pool.
        var loop = SynchronizationContext.Current;
        SynchronizationContext.SetSynchronizationContext(null);
        try
        {
            ((AsyncSignal)s!)._core.SetResult(true);
        }
        finally
        {
            SynchronizationContext.SetSynchronizationContext(loop);
        }
    };

    private readonly SynchronizationContext? _loop;

    /// <param name="loop">Where the waiter resumes: null for the thread pool (or the context it waited in).</param>
    public AsyncSignal(SynchronizationContext? loop = null)
    {
        _loop = loop;
        _core = new() { RunContinuationsAsynchronously = loop is null };
    }

    private const int Idle = 0;
    private const int Signaled = 1;
    private const int Waiting = 2;

    private ManualResetValueTaskSourceCore<bool> _core;
    private int _state;

    /// <summary>Completes when <see cref="Set"/> is called (or was, since the last wait). One waiter at a time.</summary>
    public ValueTask WaitAsync()
    {
        if (Interlocked.CompareExchange(ref _state, Idle, Signaled) == Signaled)
        {
            return ValueTask.CompletedTask;
        }

        _core.Reset();
        if (Interlocked.CompareExchange(ref _state, Waiting, Idle) != Idle)
        {
            Volatile.Write(ref _state, Idle); // a Set came in between: take it
            return ValueTask.CompletedTask;
        }

        return new ValueTask(this, _core.Version);
    }

    /// <summary>Wakes the waiter, or remembers the signal for the next wait.</summary>
    public void Set()
    {
        while (true)
        {
            var state = Volatile.Read(ref _state);
            if (state == Signaled)
            {
                return;
            }

            if (state == Idle)
            {
                if (Interlocked.CompareExchange(ref _state, Signaled, Idle) == Idle)
                {
                    return;
                }

                continue;
            }

            if (Interlocked.CompareExchange(ref _state, Idle, Waiting) == Waiting)
            {
                if (_loop is null)
                {
                    _core.SetResult(true);
                }
                else
                {
                    _loop.Post(Complete, this);
                }

                return;
            }
        }
    }

    void IValueTaskSource.GetResult(short token) => _core.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token,
        ValueTaskSourceOnCompletedFlags flags) => _core.OnCompleted(continuation, state, token, flags);
}
