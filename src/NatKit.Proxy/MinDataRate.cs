namespace NatKit.Proxy;

/// <summary>
/// A minimum data rate for request bodies (as Kestrel's MinRequestBodyDataRate): once a body's first byte has
/// arrived, the bytes received divided by the time spent waiting for the client must stay at or above the rate
/// after a grace period, or the connection's <see cref="Deadline"/> is cancelled. Only time spent waiting for the
/// client counts: while the proxy is writing upstream (backpressure from the origin) the clock is paused. A
/// client that trickles a body one byte at a time keeps re-arming the idle timeout; this cuts it off.
/// </summary>
internal sealed class MinDataRate : IDisposable
{
    private static readonly TimeSpan MaxDue = TimeSpan.FromHours(1);
    private readonly Lock _gate = new();
    private readonly TimeProvider _time;
    private readonly double _bytesPerSecond;
    private readonly TimeSpan _grace;
    private readonly Deadline _deadline;
    private readonly ITimer _timer;
    private long _bytes;
    private TimeSpan _waited;
    private long _readSince;
    private bool _reading;
    private bool _started;
    private int _violated;

    public MinDataRate(TimeProvider time, double bytesPerSecond, TimeSpan grace, Deadline deadline)
    {
        _time = time;
        _bytesPerSecond = bytesPerSecond;
        _grace = grace;
        _deadline = deadline;
        _timer = time.CreateTimer(static s => ((MinDataRate)s!).OnTimer(), this, Timeout.InfiniteTimeSpan,
            Timeout.InfiniteTimeSpan);
    }

    /// <summary>True once the rate was not met and the deadline was cancelled for it.</summary>
    public bool Violated => Volatile.Read(ref _violated) != 0;

    /// <summary>The rate a request body must keep, for messages.</summary>
    public double BytesPerSecond => _bytesPerSecond;

    /// <summary>Starts a new body: nothing counted until its first byte arrives.</summary>
    public void Reset()
    {
        lock (_gate)
        {
            _bytes = 0;
            _waited = TimeSpan.Zero;
            _reading = false;
            _started = false;
        }
    }

    /// <summary>The proxy starts waiting for body bytes from the client.</summary>
    public void BeginRead()
    {
        TimeSpan due;
        lock (_gate)
        {
            _readSince = _time.GetTimestamp();
            _reading = true;
            if (!_started)
            {
                return; // before the first byte only the idle timeout applies (Expect: 100-continue waits here)
            }

            due = Limit() - _waited;
        }

        Change(due);
    }

    /// <summary>The wait ended with <paramref name="received"/> bytes (0 or less at the end or on error).</summary>
    public void EndRead(int received)
    {
        lock (_gate)
        {
            if (_started && _reading)
            {
                _waited += _time.GetElapsedTime(_readSince);
            }

            _reading = false;
            if (received > 0)
            {
                _bytes += received;
                _started = true;
            }
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
            if (!_reading || !_started)
            {
                return; // the next wait arms the timer again
            }

            var waited = _waited + _time.GetElapsedTime(_readSince);
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
