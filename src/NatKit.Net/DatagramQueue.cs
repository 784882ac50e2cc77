using System.Buffers;
using System.Net;
using System.Threading.Tasks.Sources;
using NatKit.Net.Internal;

namespace NatKit.Net;

/// <summary>
/// The receive half of <see cref="IDatagramSocket"/>'s contract over datagrams someone pushes in: a multiplexer's
/// sub-socket, a TURN allocation's relayed data. <see cref="TryWrite"/> copies a datagram straight into the buffer of
/// a waiting receive, or into a pooled buffer in a bounded queue; <see cref="ReceiveAsync"/> keeps every promise of
/// <see cref="IDatagramSocket.ReceiveFromAsync"/>: a datagram larger than the buffer is dropped, never cut short, and
/// the receive goes on to the next one; one receive at a time; cancellation; <see cref="ObjectDisposedException"/>
/// once <see cref="Complete"/> has been called. Thread-safe; allocates nothing per datagram in the steady state.
/// </summary>
/// <remarks>
/// A waiting receive completes on the thread that writes the datagram, with no hop to the thread pool (so code
/// awaiting it with <c>ConfigureAwait(false)</c> stays on an in-memory lab's loop, docs/lab.md rule 4).
/// </remarks>
public sealed class DatagramQueue : IValueTaskSource<ReceivedDatagram>
{
    private readonly Lock _gate = new();
    private readonly Queue<Item> _items = new();
    private readonly string _objectName;
    private ManualResetValueTaskSourceCore<ReceivedDatagram> _core;
    private Memory<byte> _waitBuffer;
    private CancellationToken _waitToken;
    private CancellationTokenRegistration _registration;
    private bool _waiting; // a receive waits, with _waitBuffer
    private bool _busy; // a receive is outstanding: set when it waits, cleared when its result is taken
    private bool _completed;
    private long _dropped;
    private long _oversize;

    /// <param name="capacity">Datagrams held while no receive waits; more are dropped (and counted), as a full
    /// socket buffer drops them.</param>
    /// <param name="objectName">The name <see cref="ObjectDisposedException"/> carries once completed.</param>
    public DatagramQueue(int capacity, string objectName = nameof(DatagramQueue))
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        Capacity = capacity;
        _objectName = objectName;
        _core.RunContinuationsAsynchronously = false;
    }

    public int Capacity { get; }

    /// <summary>Datagrams waiting to be received.</summary>
    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _items.Count;
            }
        }
    }

    /// <summary>Datagrams dropped because the queue was full.</summary>
    public long Dropped => Volatile.Read(ref _dropped);

    /// <summary>Datagrams dropped because they were larger than the receive's buffer.</summary>
    public long OversizeDropped => Volatile.Read(ref _oversize);

    /// <summary>True once <see cref="Complete"/> was called.</summary>
    public bool IsCompleted
    {
        get
        {
            lock (_gate)
            {
                return _completed;
            }
        }
    }

    /// <summary>Hands one datagram to the waiting receive, or queues a copy. False when it was dropped: the queue is
    /// full, it does not fit the waiting receive's buffer, or the queue is completed.</summary>
    public bool TryWrite(ReadOnlySpan<byte> datagram, IPEndPoint source)
    {
        ArgumentNullException.ThrowIfNull(source);
        CancellationTokenRegistration registration;
        ReceivedDatagram result;
        lock (_gate)
        {
            if (_completed)
            {
                return false;
            }

            if (!_waiting)
            {
                if (_items.Count >= Capacity)
                {
                    _dropped++;
                    DatagramMetrics.QueueDropped(oversize: false);
                    return false;
                }

                var copy = ArrayPool<byte>.Shared.Rent(Math.Max(1, datagram.Length));
                datagram.CopyTo(copy);
                _items.Enqueue(new Item(copy, datagram.Length, source));
                return true;
            }

            if (datagram.Length > _waitBuffer.Length)
            {
                _oversize++;
                DatagramMetrics.QueueDropped(oversize: true);
                return false;
            }

            datagram.CopyTo(_waitBuffer.Span);
            result = new ReceivedDatagram(datagram.Length, source);
            registration = EndWaitLocked();
        }

        registration.Unregister();
        _core.SetResult(result);
        return true;
    }

    /// <summary>Receives the next datagram that fits <paramref name="buffer"/> (see <see cref="DatagramQueue"/>).</summary>
    /// <exception cref="ObjectDisposedException">The queue was completed.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    /// <exception cref="InvalidOperationException">Another receive is outstanding.</exception>
    public ValueTask<ReceivedDatagram> ReceiveAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        short version;
        lock (_gate)
        {
            if (_busy)
            {
                throw new InvalidOperationException("a receive is already pending on this socket (one at a time)");
            }

            if (_completed)
            {
                throw new ObjectDisposedException(_objectName);
            }

            while (_items.TryDequeue(out var item))
            {
                if (item.Length > buffer.Length)
                {
                    _oversize++;
                    DatagramMetrics.QueueDropped(oversize: true);
                    ArrayPool<byte>.Shared.Return(item.Buffer);
                    continue;
                }

                item.Buffer.AsSpan(0, item.Length).CopyTo(buffer.Span);
                ArrayPool<byte>.Shared.Return(item.Buffer);
                return new ValueTask<ReceivedDatagram>(new ReceivedDatagram(item.Length, item.Source));
            }

            if (cancellationToken.IsCancellationRequested)
            {
                return ValueTask.FromCanceled<ReceivedDatagram>(cancellationToken);
            }

            _core.Reset();
            version = _core.Version;
            _busy = true;
            _waiting = true;
            _waitBuffer = buffer;
            _waitToken = cancellationToken;
        }

        if (cancellationToken.CanBeCanceled)
        {
            // Registered outside the gate: a token cancelled meanwhile runs the callback at once, which takes it.
            var registration = cancellationToken.UnsafeRegister(
                static (s, token) => ((DatagramQueue)s!).Cancel(token), this);
            lock (_gate)
            {
                if (_waiting && _core.Version == version)
                {
                    _registration = registration;
                    registration = default;
                }
            }

            registration.Unregister(); // the wait ended before it was stored (no-op when stored)
        }

        return new ValueTask<ReceivedDatagram>(this, version);
    }

    /// <summary>Hands every datagram queued now to <paramref name="receiver"/>, oldest first, and releases their
    /// buffers: for an owner that switches from queueing to pushing (<see cref="IPushDatagramSocket"/>), so what
    /// arrived before the switch is not stranded. Returns how many were handed over.</summary>
    public int DrainTo(IDatagramReceiver receiver)
    {
        ArgumentNullException.ThrowIfNull(receiver);
        var count = 0;
        while (true)
        {
            Item item;
            lock (_gate)
            {
                if (!_items.TryDequeue(out item))
                {
                    return count;
                }
            }

            try
            {
                receiver.TryReceive(item.Buffer.AsSpan(0, item.Length), item.Source);
                count++;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(item.Buffer);
            }
        }
    }

    /// <summary>Ends the queue: the waiting receive and every later one throw <see cref="ObjectDisposedException"/>;
    /// queued datagrams are released; later writes are refused. Idempotent.</summary>
    public void Complete()
    {
        bool wake;
        CancellationTokenRegistration registration = default;
        lock (_gate)
        {
            if (_completed)
            {
                return;
            }

            _completed = true;
            while (_items.TryDequeue(out var item))
            {
                ArrayPool<byte>.Shared.Return(item.Buffer);
            }

            wake = _waiting;
            if (wake)
            {
                registration = EndWaitLocked();
            }
        }

        if (wake)
        {
            registration.Unregister();
            _core.SetException(new ObjectDisposedException(_objectName));
        }
    }

    private void Cancel(CancellationToken token)
    {
        CancellationTokenRegistration registration;
        lock (_gate)
        {
            if (!_waiting || _waitToken != token)
            {
                return; // a late callback for a receive that has completed since
            }

            registration = EndWaitLocked();
        }

        registration.Unregister();
        _core.SetException(new OperationCanceledException(token));
    }

    private CancellationTokenRegistration EndWaitLocked()
    {
        var registration = _registration;
        _registration = default;
        _waiting = false;
        _waitBuffer = default;
        _waitToken = default;
        return registration;
    }

    ReceivedDatagram IValueTaskSource<ReceivedDatagram>.GetResult(short token)
    {
        try
        {
            return _core.GetResult(token);
        }
        finally
        {
            lock (_gate)
            {
                if (token == _core.Version)
                {
                    _busy = false;
                }
            }
        }
    }

    ValueTaskSourceStatus IValueTaskSource<ReceivedDatagram>.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource<ReceivedDatagram>.OnCompleted(Action<object?> continuation, object? state, short token,
        ValueTaskSourceOnCompletedFlags flags) => _core.OnCompleted(continuation, state, token, flags);

    private readonly record struct Item(byte[] Buffer, int Length, IPEndPoint Source);
}
