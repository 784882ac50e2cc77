using System.Net;

namespace NatKit.Net;

/// <summary>What a <see cref="DatagramPush"/> does with a datagram while nobody is pushed to (queue a copy, most
/// often). Called under the push's lock, so a push that starts meanwhile finds it queued.</summary>
public delegate void DatagramFallback<in TState>(TState state, ReadOnlySpan<byte> datagram, IPEndPoint source);

/// <summary>
/// The push half of an <see cref="IPushDatagramSocket"/> that is a view over another loop's datagrams (a TURN
/// allocation's relayed data, a traversal's path to one peer): at most one receiver at a time, offered each datagram
/// inline on the thread that delivers it, the drains passed on, and the push's task completed when its token is
/// cancelled or the owner ends it. Delivery and the start of a push take one lock, so the switch from queueing to
/// pushing neither strands a datagram in the queue nor offers one before those queued earlier.
/// </summary>
public sealed class DatagramPush
{
    private readonly Lock _gate = new();
    private IDatagramReceiver? _receiver;
    private TaskCompletionSource? _ended;

    /// <summary>
    /// Pushes to <paramref name="receiver"/> from now on (<see cref="IPushDatagramSocket.PushToAsync"/>'s contract):
    /// <paramref name="handOverQueued"/> first gives it what the owner queued before, under the lock. The task
    /// completes when <paramref name="cancellationToken"/> is cancelled or <see cref="End"/> is called, on the thread
    /// that ends it (no hop: an in-memory lab's loop stays on it).
    /// </summary>
    /// <exception cref="InvalidOperationException">Another receiver is pushed to.</exception>
    public Task Start(IDatagramReceiver receiver, Action<IDatagramReceiver>? handOverQueued,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(receiver);
        var ended = new TaskCompletionSource();
        lock (_gate)
        {
            if (_receiver is not null)
            {
                throw new InvalidOperationException("the datagrams are pushed to another receiver already");
            }

            handOverQueued?.Invoke(receiver);
            _ended = ended;
            Volatile.Write(ref _receiver, receiver);
        }

        if (cancellationToken.CanBeCanceled)
        {
            cancellationToken.UnsafeRegister(static s =>
            {
                var (push, ended) = ((DatagramPush, TaskCompletionSource))s!;
                push.EndOne(ended);
            }, (this, ended));
        }

        return ended.Task;
    }

    /// <summary>Offers one datagram to the receiver pushed to, or, with none, hands it to
    /// <paramref name="otherwise"/> (both under the lock). The span is the caller's; nothing is copied here.</summary>
    public void Deliver<TState>(ReadOnlySpan<byte> datagram, IPEndPoint source, TState state,
        DatagramFallback<TState> otherwise)
    {
        ArgumentNullException.ThrowIfNull(otherwise);
        lock (_gate)
        {
            if (_receiver is { } receiver)
            {
                receiver.TryReceive(datagram, source);
                return;
            }

            otherwise(state, datagram, source);
        }
    }

    /// <summary>The socket underneath has nothing more queued: the receiver pushed to, if any, flushes what it
    /// batched per burst (uTP's delayed ACKs).</summary>
    public void Drained()
    {
        if (Volatile.Read(ref _receiver) is null)
        {
            return;
        }

        lock (_gate)
        {
            _receiver?.OnDrained();
        }
    }

    /// <summary>Ends the push in progress, whichever it is (the owner closed): nothing is offered after this.</summary>
    public void End() => EndOne(null);

    private void EndOne(TaskCompletionSource? which)
    {
        TaskCompletionSource? ended = null;
        lock (_gate)
        {
            if (which is null || ReferenceEquals(_ended, which))
            {
                ended = _ended;
                _ended = null;
                Volatile.Write(ref _receiver, null);
            }
        }

        ended?.TrySetResult();
    }
}
