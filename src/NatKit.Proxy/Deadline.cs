namespace NatKit.Proxy;

/// <summary>
/// A connection's one cancellation: fires when the armed time passes on the injected clock with no re-arm,
/// or when the server shuts down. Re-arming moves one timer; nothing is allocated per read.
/// </summary>
internal sealed class Deadline : IDisposable
{
    private readonly CancellationTokenSource _cts = new();
    private readonly ITimer _timer;
    private readonly CancellationTokenRegistration _shutdown;
    private readonly TimeSpan _idle;
    private int _expired;

    public Deadline(TimeProvider time, TimeSpan idle, CancellationToken shutdown)
    {
        _idle = idle;
        _timer = time.CreateTimer(static s => ((Deadline)s!).Expire(), this, Timeout.InfiniteTimeSpan,
            Timeout.InfiniteTimeSpan);
        _shutdown = shutdown.Register(static s => ((Deadline)s!).Cancel(), this);
    }

    public CancellationToken Token => _cts.Token;

    /// <summary>True when the deadline fired because time ran out (not because of shutdown).</summary>
    public bool Expired => Volatile.Read(ref _expired) != 0;

    /// <summary>Fires after the idle time unless re-armed.</summary>
    public void Arm() => Arm(_idle);

    public void Arm(TimeSpan due)
    {
        try
        {
            _timer.Change(due, Timeout.InfiniteTimeSpan);
        }
        catch (ObjectDisposedException)
        {
        }
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

    private void Expire()
    {
        Volatile.Write(ref _expired, 1);
        Cancel();
    }
}
