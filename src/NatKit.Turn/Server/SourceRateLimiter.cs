using System.Net;
using NatKit.Turn.Policy;

namespace NatKit.Turn.Server;

/// <summary>
/// Limits how many unauthenticated requests one source address may make per second (a fixed one-second window
/// per address). A request over the limit gets no answer at all, so the relay is not an amplifier for spoofed
/// sources. The table is dropped whole when the window turns over, so there is no per-entry expiry to scan and
/// a scan from many sources costs at most one window's worth of memory (bounded by <see cref="MaxSources"/>).
/// </summary>
internal sealed class SourceRateLimiter
{
    internal const int MaxSources = 65536;

    private readonly int _perSecond;
    private readonly long _window;
    private readonly Dictionary<IpKey, int> _counts = [];
    private readonly Lock _gate = new();
    private long _windowStart;
    private bool _started;

    public SourceRateLimiter(int perSecond, long ticksPerSecond)
    {
        _perSecond = perSecond;
        _window = ticksPerSecond;
    }

    /// <summary>True when the request may be answered; counts it.</summary>
    public bool TryAcquire(IPAddress source, long now)
    {
        if (_perSecond <= 0)
        {
            return true;
        }

        var key = IpKey.Normalized(source);
        lock (_gate)
        {
            if (!_started || now - _windowStart >= _window || now < _windowStart)
            {
                _counts.Clear();
                _windowStart = now;
                _started = true;
            }

            _counts.TryGetValue(key, out var n);
            if (n >= _perSecond)
            {
                return false;
            }

            if (n == 0 && _counts.Count >= MaxSources)
            {
                return false; // a flood of distinct sources: refuse newcomers until the window turns
            }

            _counts[key] = n + 1;
            return true;
        }
    }
}
