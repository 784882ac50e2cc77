using NatKit.Net;

namespace NatKit.Proxy.Http;

/// <summary>Where an upstream connection goes: an origin, or the parent proxy.</summary>
internal readonly record struct UpstreamKey(string Host, int Port);

/// <summary>A connection to an origin (or parent) with its read buffer; lives in the pool between requests.</summary>
internal sealed class UpstreamConnection : IAsyncDisposable
{
    public UpstreamConnection(UpstreamKey key, IStreamConnection connection, int bufferSize)
    {
        Key = key;
        Connection = connection;
        Reader = new PooledReader(connection.Stream, bufferSize);
    }

    public UpstreamKey Key { get; }

    public IStreamConnection Connection { get; }

    public PooledReader Reader { get; }

    /// <summary>True once it served a request: a failure before any response byte may then be retried.</summary>
    public bool Reused { get; set; }

    public long IdleSince { get; set; }

    public async ValueTask DisposeAsync()
    {
        Reader.Dispose();
        await Connection.DisposeAsync().ConfigureAwait(false);
    }
}

/// <summary>
/// Idle persistent upstream connections (RFC 9112 section 9.3), bounded per destination and overall. A
/// connection idle longer than the configured time is closed instead of reused.
/// </summary>
internal sealed class UpstreamPool : IAsyncDisposable
{
    private readonly Dictionary<UpstreamKey, Stack<UpstreamConnection>> _idle = [];
    private readonly Lock _gate = new();
    private readonly TimeProvider _time;
    private readonly int _maxPerHost;
    private readonly int _maxTotal;
    private readonly TimeSpan _maxIdle;
    private int _total;
    private long _retries;
    private bool _disposed;

    public UpstreamPool(TimeProvider time, int maxPerHost, int maxTotal, TimeSpan maxIdle)
    {
        _time = time;
        _maxPerHost = maxPerHost;
        _maxTotal = maxTotal;
        _maxIdle = maxIdle;
    }

    public int IdleCount
    {
        get
        {
            lock (_gate)
            {
                return _total;
            }
        }
    }

    /// <summary>Requests sent again on a fresh connection after a pooled one turned out closed.</summary>
    public long Retries => Interlocked.Read(ref _retries);

    public void CountRetry() => Interlocked.Increment(ref _retries);

    /// <summary>An idle connection to <paramref name="key"/>, or null.</summary>
    public UpstreamConnection? TryRent(UpstreamKey key)
    {
        List<UpstreamConnection>? stale = null;
        UpstreamConnection? found = null;
        lock (_gate)
        {
            if (_idle.TryGetValue(key, out var stack))
            {
                while (stack.Count > 0)
                {
                    var c = stack.Pop();
                    _total--;
                    if (_time.GetElapsedTime(c.IdleSince) < _maxIdle && c.Reader.Available == 0 && !LooksClosed(c))
                    {
                        found = c;
                        break;
                    }

                    (stale ??= []).Add(c);
                }
            }
        }

        if (stale is not null)
        {
            foreach (var c in stale)
            {
                _ = c.DisposeAsync().AsTask();
            }
        }

        return found;
    }

    /// <summary>An idle connection that became readable was closed by the server (or sent bytes it should not
    /// have): either way not one to send a request on. A connection that cannot tell is tried, and a failure
    /// before any response byte is retried when that is safe.</summary>
    private static bool LooksClosed(UpstreamConnection c) =>
        c.Connection is IStreamReadiness { ReadWouldNotBlock: true };

    /// <summary>Keeps <paramref name="connection"/> for reuse, or closes it when the pool is full.</summary>
    public void Return(UpstreamConnection connection)
    {
        connection.Reused = true;
        connection.IdleSince = _time.GetTimestamp();
        connection.Reader.ReleaseIfEmpty(); // an idle pooled connection holds no buffer
        lock (_gate)
        {
            if (!_disposed && _total < _maxTotal)
            {
                if (!_idle.TryGetValue(connection.Key, out var stack))
                {
                    stack = new Stack<UpstreamConnection>();
                    _idle[connection.Key] = stack;
                }

                if (stack.Count < _maxPerHost)
                {
                    stack.Push(connection);
                    _total++;
                    return;
                }
            }
        }

        _ = connection.DisposeAsync().AsTask();
    }

    public async ValueTask DisposeAsync()
    {
        List<UpstreamConnection> all = [];
        lock (_gate)
        {
            _disposed = true;
            foreach (var (_, stack) in _idle)
            {
                all.AddRange(stack);
            }

            _idle.Clear();
            _total = 0;
        }

        foreach (var c in all)
        {
            await c.DisposeAsync().ConfigureAwait(false);
        }
    }
}
