using System.Globalization;
using Microsoft.Extensions.Logging;

namespace NatKit.Stun.Server;

/// <summary>
/// Drops logged by sampling: the first drop is logged at once, later ones are counted and summed up in at most one
/// line per <see cref="Interval"/> (a flood of garbage never floods the log). Counting is lock-free; only the
/// thread that wins the interval builds a line.
/// </summary>
internal sealed partial class DropLog
{
    public static readonly TimeSpan DefaultInterval = TimeSpan.FromSeconds(10);

    private static readonly string[] Names = ["malformed", "rate_limited", "not_request", "fingerprint", "unsupported", "connection_limit"];

    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly long[] _counts = new long[Names.Length];
    private long _lastLine = long.MinValue; // no line yet

    public DropLog(ILogger logger, TimeProvider time, TimeSpan interval)
    {
        _logger = logger;
        _time = time;
        Interval = interval;
    }

    public TimeSpan Interval { get; }

    public void Dropped(DropReason reason)
    {
        Interlocked.Increment(ref _counts[(int)reason]);
        if (!_logger.IsEnabled(LogLevel.Warning))
        {
            return;
        }

        var now = _time.GetTimestamp();
        var last = Interlocked.Read(ref _lastLine);
        if (last != long.MinValue && _time.GetElapsedTime(last, now) < Interval)
        {
            return;
        }

        if (Interlocked.CompareExchange(ref _lastLine, now, last) != last)
        {
            return; // another thread writes this line
        }

        var total = 0L;
        var parts = new List<string>();
        for (var i = 0; i < _counts.Length; i++)
        {
            var n = Interlocked.Exchange(ref _counts[i], 0);
            if (n > 0)
            {
                total += n;
                parts.Add(string.Create(CultureInfo.InvariantCulture, $"{Names[i]} {n}"));
            }
        }

        if (total > 0)
        {
            LogDropped(_logger, total, string.Join(", ", parts), Interval.TotalSeconds);
        }
    }

    [LoggerMessage(EventId = 200, Level = LogLevel.Warning,
        Message = "dropped {Count} message(s) ({Reasons}); drops are logged at most once per {IntervalSeconds} s")]
    private static partial void LogDropped(ILogger logger, long count, string reasons, double intervalSeconds);
}
