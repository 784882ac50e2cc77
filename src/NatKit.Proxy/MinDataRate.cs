using System.Runtime.CompilerServices;

namespace NatKit.Proxy;

/// <summary>
/// A minimum average data rate for one direction of a message (as Kestrel's MinRequestBodyDataRate and
/// MinResponseDataRate): the bytes moved divided by the time spent waiting on the peer must stay at or above the
/// rate once a grace period of such waiting has passed, or the connection's <see cref="Deadline"/> is cancelled.
/// Only waits on this peer count: for a request body, the time spent waiting for the client's bytes (not writing
/// them to a slow origin); for a response, the time spent blocked writing to the client (not reading from a slow
/// origin). A peer that moves one byte at a time keeps re-arming the idle timeout; this cuts it off. The check
/// runs on a timer of the injected clock, armed when a wait begins, so a stalled peer is cut at the moment its
/// average falls below the rate.
/// </summary>
internal sealed class MinDataRate : IDisposable
{
    private static readonly TimeSpan MaxDue = TimeSpan.FromHours(1);
    private readonly Lock _gate = new();
    private readonly TimeProvider _time;
    private readonly double _bytesPerSecond;
    private readonly TimeSpan _grace;
    private readonly Deadline _deadline;
    private readonly bool _fromFirstByte;
    private readonly ITimer _timer;
    private long _bytes;
    private TimeSpan _waited;
    private long _waitSince;
    private bool _waiting;
    private bool _started;
    private int _violated;

    /// <param name="time">The clock the waits are measured on.</param>
    /// <param name="bytesPerSecond">The slowest average rate allowed.</param>
    /// <param name="grace">How long the rate may be lower before it counts.</param>
    /// <param name="deadline">The connection's deadline, cancelled on a violation.</param>
    /// <param name="fromFirstByte">True to count waits only once the first byte has moved (a request body: a
    /// client may wait for <c>100 Continue</c> before sending one); false to count from the first wait (a
    /// response, whose first write is its head).</param>
    public MinDataRate(TimeProvider time, double bytesPerSecond, TimeSpan grace, Deadline deadline,
        bool fromFirstByte)
    {
        _time = time;
        _bytesPerSecond = bytesPerSecond;
        _grace = grace;
        _deadline = deadline;
        _fromFirstByte = fromFirstByte;
        _timer = time.CreateTimer(static s => ((MinDataRate)s!).OnTimer(), this, Timeout.InfiniteTimeSpan,
            Timeout.InfiniteTimeSpan);
    }

    /// <summary>True once the rate was not met and the deadline was cancelled for it.</summary>
    public bool Violated => Volatile.Read(ref _violated) != 0;

    /// <summary>The rate to keep, for messages.</summary>
    public double BytesPerSecond => _bytesPerSecond;

    /// <summary>Starts a new message: nothing counted yet.</summary>
    public void Reset()
    {
        lock (_gate)
        {
            _bytes = 0;
            _waited = TimeSpan.Zero;
            _waiting = false;
            _started = !_fromFirstByte;
        }
    }

    /// <summary>The proxy starts waiting on the peer (a read of body bytes, or a write the peer must take).</summary>
    public void Begin()
    {
        TimeSpan due;
        lock (_gate)
        {
            _waitSince = _time.GetTimestamp();
            _waiting = true;
            if (!_started)
            {
                return; // before the first byte only the idle timeout applies (Expect: 100-continue waits here)
            }

            due = Limit() - _waited;
        }

        Change(due);
    }

    /// <summary>The wait ended with <paramref name="moved"/> bytes (0 or less at the end or on error).</summary>
    public void End(int moved)
    {
        lock (_gate)
        {
            if (_started && _waiting)
            {
                _waited += _time.GetElapsedTime(_waitSince);
            }

            _waiting = false;
            if (moved > 0)
            {
                _bytes += moved;
                _started = true;
            }
        }
    }

    /// <summary>Reads more into <paramref name="source"/>, timing the wait.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<int> FillAsync(PooledReader source, CancellationToken cancellationToken)
    {
        Begin();
        var n = 0;
        try
        {
            n = await source.FillAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            End(n);
        }

        return n;
    }

    /// <summary>Writes <paramref name="bytes"/> to <paramref name="destination"/>, timing the write: a write
    /// that blocks because the peer does not take the bytes is time the peer owes.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask WriteAsync(Stream destination, ReadOnlyMemory<byte> bytes,
        CancellationToken cancellationToken)
    {
        Begin();
        var written = 0;
        try
        {
            await destination.WriteAsync(bytes, cancellationToken).ConfigureAwait(false);
            written = bytes.Length;
        }
        finally
        {
            End(written);
        }
    }

    public void Dispose() => _timer.Dispose();

    /// <summary>The waiting time after which the bytes so far fall below the rate (never before the grace).</summary>
    private TimeSpan Limit()
    {
        var needed = TimeSpan.FromSeconds(_bytes / _bytesPerSecond);
        return needed > _grace ? needed : _grace;
    }

    private void OnTimer()
    {
        TimeSpan due;
        lock (_gate)
        {
            if (!_waiting || !_started)
            {
                return; // the next wait arms the timer again
            }

            var waited = _waited + _time.GetElapsedTime(_waitSince);
            due = Limit() - waited;
            if (due <= TimeSpan.Zero)
            {
                Volatile.Write(ref _violated, 1);
            }
        }

        if (Violated)
        {
            _deadline.Cancel();
            return;
        }

        Change(due);
    }

    private void Change(TimeSpan due)
    {
        // A long fast body puts the limit far ahead (a timer takes at most ~49 days): fire at most an hour ahead
        // and look again then.
        due = due < TimeSpan.Zero ? TimeSpan.Zero : due > MaxDue ? MaxDue : due;
        try
        {
            _timer.Change(due, Timeout.InfiniteTimeSpan);
        }
        catch (ObjectDisposedException)
        {
        }
    }
}
