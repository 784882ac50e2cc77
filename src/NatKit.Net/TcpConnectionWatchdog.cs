namespace NatKit.Net;

/// <summary>Why a watchdog ended a connection.</summary>
public enum TcpTimeout
{
    /// <summary>No complete, valid STUN message (TLS handshake included) within the handshake window.</summary>
    Handshake,

    /// <summary>No live state (a TURN allocation) and no complete, valid STUN message for the idle timeout.</summary>
    Idle,
}

/// <summary>
/// Ends a TCP or TLS client connection of a STUN or TURN server that holds the server's memory without using it,
/// by cancelling <see cref="Token"/> (the connection's TLS handshake, reads and writes all watch it). Until the
/// first complete, valid STUN message the handshake window runs; while the connection carries live state of its
/// own (a TURN allocation, <see cref="BeginLiveState"/>) nothing runs (that state's lifetime governs; when it ends
/// the connection stays open); otherwise the idle timeout runs from the last such message or from the end of the
/// live state, whichever came later. Partial messages (a slow loris) never move it: the server calls
/// <see cref="MessageReceived"/> only for whole ones. One timer per connection, moved only when it fires early: a
/// message costs a timestamp write.
/// </summary>
public sealed class TcpConnectionWatchdog : IDisposable
{
    private readonly TimeProvider _time;
    private readonly TimeSpan _idle;
    private readonly Action<TcpTimeout> _expired;
    private readonly CancellationTokenSource _cts;
    private readonly Lock _gate = new();
    private readonly ITimer _timer;
    private long _last;
    private volatile bool _greeted;
    private bool _live;
    private bool _done;

    public TcpConnectionWatchdog(TimeProvider time, TimeSpan handshake, TimeSpan idle, Action<TcpTimeout> expired,
        CancellationToken shutdown)
    {
        _cts = CancellationTokenSource.CreateLinkedTokenSource(shutdown);
        _time = time;
        _idle = idle;
        _expired = expired;
        Token = _cts.Token;
        _timer = time.CreateTimer(static s => ((TcpConnectionWatchdog)s!).OnTimer(), this, Timeout.InfiniteTimeSpan,
            Timeout.InfiniteTimeSpan);
        _timer.Change(handshake, Timeout.InfiniteTimeSpan); // after _timer is set: the callback may use it
    }

    /// <summary>Cancelled when the connection has timed out or the server stops.</summary>
    public CancellationToken Token { get; }

    /// <summary>A complete, valid STUN message arrived.</summary>
    public void MessageReceived()
    {
        Volatile.Write(ref _last, _time.GetTimestamp());
        if (_greeted)
        {
            return;
        }

        lock (_gate)
        {
            if (!_greeted && !_done)
            {
                _greeted = true;
                _timer.Change(_idle, Timeout.InfiniteTimeSpan);
            }
        }
    }

    /// <summary>The connection now carries live state whose own lifetime governs it (a TURN allocation): no
    /// timeout runs until <see cref="EndLiveState"/>.</summary>
    public void BeginLiveState()
    {
        lock (_gate)
        {
            _live = true;
        }
    }

    /// <summary>The live state ended (an allocation expired or was deleted): the idle timeout runs from now.</summary>
    public void EndLiveState()
    {
        lock (_gate)
        {
            if (!_live || _done)
            {
                return;
            }

            _live = false;
            _greeted = true;
            Volatile.Write(ref _last, _time.GetTimestamp());
            _timer.Change(_idle, Timeout.InfiniteTimeSpan);
        }
    }

    private void OnTimer()
    {
        TcpTimeout reason;
        lock (_gate)
        {
            if (_done || _live)
            {
                return;
            }

            if (_greeted)
            {
                var quiet = _time.GetElapsedTime(Volatile.Read(ref _last));
                if (quiet < _idle)
                {
                    _timer.Change(_idle - quiet, Timeout.InfiniteTimeSpan); // a message came meanwhile
                    return;
                }

                reason = TcpTimeout.Idle;
            }
            else
            {
                reason = TcpTimeout.Handshake;
            }

            _done = true;
        }

        _expired(reason);
        try
        {
            _cts.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // the connection ended on its own meanwhile
        }
    }

    /// <summary>Stops the timer and unlinks from the server's shutdown token.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            _done = true;
        }

        _timer.Dispose();
        _cts.Dispose();
    }
}
