namespace NatKit.Net;

/// <summary>
/// A token bucket (of bytes, packets, requests: whatever the owner counts): refills at <c>rate</c> tokens per second
/// up to <c>burst</c>. Time comes from the caller (timestamps of the owner's TimeProvider), so it is pure and
/// testable. Not thread-safe: the owner guards it. A rate of zero means unlimited.
/// </summary>
public struct TokenBucket
{
    private readonly long _ratePerSecond;
    private readonly long _burst;
    private readonly long _ticksPerSecond;
    private long _tokens;
    private long _last;

    public TokenBucket(long ratePerSecond, long burst, long ticksPerSecond, long now)
    {
        _ratePerSecond = ratePerSecond;
        _burst = Math.Max(burst, ratePerSecond > 0 ? 1 : 0);
        _ticksPerSecond = ticksPerSecond;
        _tokens = _burst;
        _last = now;
    }

    public readonly bool Unlimited => _ratePerSecond <= 0;

    /// <summary>Takes <paramref name="amount"/> tokens if there are enough; false (and nothing taken) otherwise.</summary>
    public bool TryTake(long amount, long now)
    {
        if (_ratePerSecond <= 0)
        {
            return true;
        }

        var elapsed = now - _last;
        if (elapsed > 0)
        {
            // Refill; cap elapsed first so the product cannot overflow after a long idle period.
            var cap = _ticksPerSecond * ((_burst / _ratePerSecond) + 1);
            var refill = Math.Min(elapsed, cap) * _ratePerSecond / _ticksPerSecond;
            if (refill > 0)
            {
                _tokens = Math.Min(_burst, _tokens + refill);
                _last = now;
            }
        }

        if (_tokens < amount)
        {
            return false;
        }

        _tokens -= amount;
        return true;
    }
}
