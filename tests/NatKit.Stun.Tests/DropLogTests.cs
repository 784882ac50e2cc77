using NatKit.Stun.Server;

namespace NatKit.Stun.Tests;

/// <summary>Drops are logged by sampling: the first at once, then at most one summing line per interval.</summary>
public sealed class DropLogTests
{
    [Fact]
    public void TheFirstDrop_IsLoggedAtOnce_AFloodBecomesOneLinePerInterval_WithEachReasonCounted()
    {
        var time = new ManualTimeProvider();
        var log = new ListLogger();
        var drops = new DropLog(log, time, TimeSpan.FromSeconds(10));

        drops.Dropped(DropReason.Malformed);
        Assert.Equal(["dropped 1 message(s) (malformed 1); drops are logged at most once per 10 s"], log.Lines(200));

        for (var i = 0; i < 1000; i++)
        {
            drops.Dropped(i % 4 == 0 ? DropReason.Fingerprint : DropReason.RateLimited);
        }

        Assert.Single(log.Lines(200)); // within the interval: counted, not logged
        time.Advance(TimeSpan.FromSeconds(10));
        drops.Dropped(DropReason.Malformed);
        Assert.Equal("dropped 1001 message(s) (malformed 1, rate_limited 750, fingerprint 250); drops are logged at most once per 10 s",
            log.Lines(200)[1]);
    }
}
