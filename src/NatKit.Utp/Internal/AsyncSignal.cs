using System.Threading.Tasks.Sources;

namespace NatKit.Utp.Internal;

/// <summary>
/// One reusable waiter (one reader, one writer, one connector per connection) without a Task per wait. Wait and
/// Set are called under the endpoint's gate; continuations always run asynchronously (on the captured context,
/// which is the lab's loop in the lab), never inside the gate.
/// </summary>
internal sealed class AsyncSignal : IValueTaskSource
{
    private readonly Lock _gate;
    private ManualResetValueTaskSourceCore<bool> _core;
    private CancellationTokenRegistration _registration;
    private CancellationToken _token;
    private bool _waiting;

    public AsyncSignal(Lock gate)
    {
        _gate = gate;
        _core.RunContinuationsAsynchronously = true;
    }

    /// <summary>Starts a wait. Call under the gate, after checking the condition.</summary>
    public ValueTask WaitAsync(CancellationToken cancellationToken)
    {
        if (_waiting)
        {
            throw new InvalidOperationException("another operation of this kind is already waiting on the stream");
        }

        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled(cancellationToken);
        }

        _core.Reset();
        _waiting = true;
        _token = cancellationToken;
        if (cancellationToken.CanBeCanceled)
        {
            _registration = cancellationToken.UnsafeRegister(static s => ((AsyncSignal)s!).Cancel(), this);
        }

        return new ValueTask(this, _core.Version);
    }

    /// <summary>Wakes the waiter, if any. Call under the gate.</summary>
    public void Set()
    {
        if (!_waiting)
        {
            return;
        }

        _waiting = false;
        _registration.Unregister();
        _registration = default;
        _core.SetResult(true);
    }

    private void Cancel()
    {
        lock (_gate)
        {
            if (!_waiting)
            {
                return;
            }

            _waiting = false;
            _registration = default;
            _core.SetException(new OperationCanceledException(_token));
        }
    }

    public void GetResult(short token) => _core.GetResult(token);

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token,
        ValueTaskSourceOnCompletedFlags flags) => _core.OnCompleted(continuation, state, token, flags);
}
