using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;

namespace NatKit.Lab.Scheduling;

/// <summary>
/// A stream of the lab wrapped for code that awaits it with <c>ConfigureAwait(false)</c> through nested Task-based
/// async methods, such as <c>SslStream</c> (what <see cref="LabHost.ForForeignAwaiters"/> returns). Two things send
/// such code to the thread pool, which the lab refuses:
/// <list type="bullet">
/// <item>it calls the inner stream from a frame with no synchronization context (it ran inline from a lab event),
/// so a waiter inside the inner stream that runs its continuations asynchronously (uTP's) captures no context and
/// wakes on the thread pool. Every call into the inner stream is therefore made with the lab's context current: the
/// inner waiters capture it and wake on the loop.</item>
/// <item>an inner operation completes inside a posted continuation (the lab's context current), and .NET runs a
/// <c>ConfigureAwait(false)</c> Task continuation inline only where no context is current. Every operation that
/// did not complete at once is therefore completed to the caller in a frame with no context, on the loop thread,
/// so the caller's whole chain of continuations runs there, inline.</item>
/// </list>
/// Both happen on the loop thread, in the order the loop runs them, so virtual time stays deterministic. One read
/// and one write (or flush) may be outstanding at a time, as for any stream.
/// </summary>
internal sealed class LoopStream : Stream
{
    private readonly Stream _inner;
    private readonly LabScheduler _loop;
    private readonly LoopCompletion _read;
    private readonly LoopCompletion _write;

    public LoopStream(Stream inner, LabScheduler loop)
    {
        _inner = inner;
        _loop = loop;
        _read = new LoopCompletion();
        _write = new LoopCompletion();
    }

    public override bool CanRead => _inner.CanRead;

    public override bool CanWrite => _inner.CanWrite;

    public override bool CanSeek => false;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var previous = EnterLoopContext();
        try
        {
            var pending = _inner.ReadAsync(buffer, cancellationToken);
            return pending.IsCompleted ? pending : _read.Await(pending);
        }
        finally
        {
            SynchronizationContext.SetSynchronizationContext(previous);
        }
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var previous = EnterLoopContext();
        try
        {
            var pending = _inner.WriteAsync(buffer, cancellationToken);
            return pending.IsCompleted ? pending : _write.Await(pending);
        }
        finally
        {
            SynchronizationContext.SetSynchronizationContext(previous);
        }
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override Task FlushAsync(CancellationToken cancellationToken)
    {
        var previous = EnterLoopContext();
        try
        {
            var pending = _inner.FlushAsync(cancellationToken);
            return pending.IsCompleted ? pending : _write.Await(new ValueTask(pending)).AsTask();
        }
        finally
        {
            SynchronizationContext.SetSynchronizationContext(previous);
        }
    }

    public override async ValueTask DisposeAsync()
    {
        var previous = EnterLoopContext();
        ValueTask pending;
        try
        {
            pending = _inner.DisposeAsync();
        }
        finally
        {
            SynchronizationContext.SetSynchronizationContext(previous);
        }

        await pending;
        await base.DisposeAsync();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _inner.Dispose();
        }

        base.Dispose(disposing);
    }

    // The lab's streams are asynchronous; these forward for completeness (a blocking call stops the loop).
    public override int Read(byte[] buffer, int offset, int count) => _inner.Read(buffer, offset, count);

    public override void Write(byte[] buffer, int offset, int count) => _inner.Write(buffer, offset, count);

    public override void Flush() => _inner.Flush();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    private SynchronizationContext? EnterLoopContext()
    {
        _loop.EnsureLabThread();
        var previous = SynchronizationContext.Current;
        SynchronizationContext.SetSynchronizationContext(_loop.SynchronizationContext);
        return previous;
    }

    /// <summary>One outstanding inner operation: awaited on the loop's context, completed to the outer caller in a
    /// frame with no context. Reused for every operation of its kind (no allocation per read or write).</summary>
    private sealed class LoopCompletion : IValueTaskSource<int>, IValueTaskSource
    {
        private readonly Action _onInnerCompleted;
        private ManualResetValueTaskSourceCore<int> _core; // continuations inline: that is the point
        private ValueTaskAwaiter<int> _count;
        private ValueTaskAwaiter _done;
        private bool _hasCount;

        public LoopCompletion() => _onInnerCompleted = OnInnerCompleted;

        /// <summary>Call with the loop's context current: the inner completion is posted back to the loop.</summary>
        public ValueTask<int> Await(ValueTask<int> pending)
        {
            _core.Reset();
            _count = pending.GetAwaiter();
            _hasCount = true;
            _count.UnsafeOnCompleted(_onInnerCompleted);
            return new ValueTask<int>(this, _core.Version);
        }

        /// <inheritdoc cref="Await(ValueTask{int})"/>
        public ValueTask Await(ValueTask pending)
        {
            _core.Reset();
            _done = pending.GetAwaiter();
            _hasCount = false;
            _done.UnsafeOnCompleted(_onInnerCompleted);
            return new ValueTask(this, _core.Version);
        }

        private void OnInnerCompleted()
        {
            int result;
            try
            {
                if (_hasCount)
                {
                    result = _count.GetResult();
                }
                else
                {
                    _done.GetResult();
                    result = 0;
                }
            }
#pragma warning disable CA1031 // the inner stream's error is the caller's: handed over as it is
            catch (Exception e)
#pragma warning restore CA1031
            {
                Complete(e, 0);
                return;
            }

            Complete(null, result);
        }

        private void Complete(Exception? error, int result)
        {
            _count = default;
            _done = default;
            var previous = SynchronizationContext.Current;
            SynchronizationContext.SetSynchronizationContext(null);
            try
            {
                if (error is null)
                {
                    _core.SetResult(result);
                }
                else
                {
                    _core.SetException(error);
                }
            }
            finally
            {
                SynchronizationContext.SetSynchronizationContext(previous);
            }
        }

        public int GetResult(short token) => _core.GetResult(token);

        void IValueTaskSource.GetResult(short token) => _core.GetResult(token);

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token,
            ValueTaskSourceOnCompletedFlags flags) => _core.OnCompleted(continuation, state, token, flags);
    }
}
