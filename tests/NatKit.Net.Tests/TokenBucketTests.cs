namespace NatKit.Net.Tests;

public class TokenBucketTests
{
    [Fact]
    public void Bucket_AllowsTheBurst_ThenTheRate()
    {
        var b = new TokenBucket(ratePerSecond: 1000, burst: 1500, ticksPerSecond: 1000, now: 0);
        Assert.True(b.TryTake(1500, 0));
        Assert.False(b.TryTake(1, 0));
        Assert.False(b.TryTake(600, 500)); // 500 ms refill 500 bytes
        Assert.True(b.TryTake(500, 500));
        Assert.True(b.TryTake(1500, 100_000_000)); // long idle refills to the burst, no overflow
        Assert.False(b.TryTake(1, 100_000_000));
    }

    [Fact]
    public void ZeroRate_IsUnlimited()
    {
        var b = new TokenBucket(0, 0, 1000, 0);
        Assert.True(b.TryTake(long.MaxValue, 0));
    }
}
