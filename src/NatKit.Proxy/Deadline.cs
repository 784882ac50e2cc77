namespace NatKit.Proxy;

/// <summary>
/// A connection's one cancellation: fires when the armed time passes on the injected clock with no re-arm,
/// or when the server shuts down. Re-arming moves one timer; nothing is allocated per read.
/// </summary>
internal sealed class Deadline : IDisposable
{
    private const int Fixed = 0;
    private const int Idle = 1;

    private readonly CancellationTokenSource _cts = new();
    private readonly ITimer _timer;
    private readonly TimeProvider _time;
    private readonly CancellationTokenRegistration _shutdown;
    private readonly TimeSpan _idle;
    private long _lastActivity;
    private int _mode = Fixed;
    private int _expired;

    public Deadline(TimeProvider time, TimeSpan idle, CancellationToken shutdown)
    {
        _time = time;
        _idle = idle;
        _timer = time.CreateTimer(static s => ((Deadline)s!).OnTimer(), this, Timeout.InfiniteTimeSpan,
            Timeout.InfiniteTimeSpan);
        _shutdown = shutdown.Register(static s => ((Deadline)s!).Cancel(), this);
    }

    public CancellationToken Token => _cts.Token;

    /// <summary>True when the deadline fired because time ran out (not because of shutdown).</summary>
    public bool Expired => Volatile.Read(ref _expired) != 0;

    /// <summary>Records activity: fires only after the idle time passes with no further call. In the steady state
    /// this is one timestamp write; the timer is moved only when it fires early or the mode changes.</summary>
    public void Arm()
    {
        Volatile.Write(ref _lastActivity, _time.GetTimestamp());
        if (Interlocked.Exchange(ref _mode, Idle) != Idle)
        {
            Change(_idle);
        }
    }

    /// <summary>Fires at a fixed time from now, whatever moves meanwhile (the whole-head timeout).</summary>
    public void Arm(TimeSpan due)
    {
        Volatile.Write(ref _mode, Fixed);
        Change(due);
    }

    public void Cancel()
    {
        try
        {
            _cts.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    public void Dispose()
    {
        _shutdown.Dispose();
        _timer.Dispose();
        _cts.Dispose();
    }

    private void Change(TimeSpan due)
    {
        try
        {
            _timer.Change(due, Timeout.InfiniteTimeSpan);
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private void OnTimer()
    {
        if (Volatile.Read(ref _mode) == Idle)
        {
            var quiet = _time.GetElapsedTime(Volatile.Read(ref _lastActivity));
            if (quiet < _idle)
            {
                Change(_idle - quiet);
                return;
            }
        }

        Volatile.Write(ref _expired, 1);
        Cancel();
    }
}
