namespace NatKit.Utp.Internal;

/// <summary>
/// LEDBAT's one-way delay estimate (RFC 6817 section 3.4.2): the base delay is the minimum over per-minute buckets
/// kept for <see cref="BaseHistoryMinutes"/> minutes, so a route change or clock drift ages out; the current delay is
/// the minimum of the last few samples, which filters noise. Delays are 32-bit microsecond clocks of two hosts,
/// so comparisons wrap.
/// </summary>
internal sealed class DelayHistory
{
    /// <summary>RFC 6817 BASE_HISTORY (10) one-minute buckets.</summary>
    public const int BaseHistoryMinutes = 10;

    /// <summary>Samples in the current-delay filter (libutp keeps 3).</summary>
    public const int CurrentFilter = 3;

    private readonly uint[] _minutes = new uint[BaseHistoryMinutes];
    private readonly uint[] _current = new uint[CurrentFilter];
    private int _minuteIndex;
    private long _minuteStartMicros;
    private int _currentIndex;
    private int _currentCount;
    private bool _any;

    public uint BaseDelay { get; private set; }

    public void Add(uint sample, long nowMicros)
    {
        if (!_any)
        {
            _any = true;
            Array.Fill(_minutes, sample);
            BaseDelay = sample;
            _minuteStartMicros = nowMicros;
        }
        else if (nowMicros - _minuteStartMicros >= 60_000_000)
        {
            _minuteStartMicros = nowMicros;
            _minuteIndex = (_minuteIndex + 1) % BaseHistoryMinutes;
            _minutes[_minuteIndex] = sample;
            BaseDelay = _minutes[0];
            for (var i = 1; i < BaseHistoryMinutes; i++)
            {
                if (Less(_minutes[i], BaseDelay))
                {
                    BaseDelay = _minutes[i];
                }
            }
        }

        if (Less(sample, _minutes[_minuteIndex]))
        {
            _minutes[_minuteIndex] = sample;
        }

        if (Less(sample, BaseDelay))
        {
            BaseDelay = sample;
        }

        _current[_currentIndex] = sample;
        _currentIndex = (_currentIndex + 1) % CurrentFilter;
        if (_currentCount < CurrentFilter)
        {
            _currentCount++;
        }
    }

    /// <summary>Current delay above the base (the queuing delay), in microseconds; 0 before any sample.</summary>
    public uint QueuingDelay
    {
        get
        {
            if (_currentCount == 0)
            {
                return 0;
            }

            var min = _current[0];
            for (var i = 1; i < _currentCount; i++)
            {
                if (Less(_current[i], min))
                {
                    min = _current[i];
                }
            }

            var d = min - BaseDelay;
            return (int)d < 0 ? 0 : d;
        }
    }

    /// <summary>Moves the base up by <paramref name="by"/> (used when the estimate exceeds the RTT, which can only
    /// mean the base is stale).</summary>
    public void Shift(uint by)
    {
        for (var i = 0; i < BaseHistoryMinutes; i++)
        {
            _minutes[i] += by;
        }

        BaseDelay += by;
    }

    private static bool Less(uint a, uint b) => (int)(a - b) < 0;
}
