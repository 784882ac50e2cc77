using NatKit.Utp.Internal;

namespace NatKit.Utp.Tests;

public sealed class DelayHistoryTests
{
    private const long Minute = 60_000_000;

    [Fact]
    public void Rfc6817_QueuingDelay_IsTheCurrentFilterMinimumAboveTheBase()
    {
        var h = new DelayHistory();
        h.Add(1_000_000, 0);                 // base: 1 s of clock offset plus path delay
        h.Add(1_050_000, 1_000);
        h.Add(1_040_000, 2_000);
        h.Add(1_080_000, 3_000);             // the last three: 50, 40, 80 ms above base
        Assert.Equal(1_000_000u, h.BaseDelay);
        Assert.Equal(40_000u, h.QueuingDelay);
    }

    [Fact]
    public void Rfc6817_BaseDelay_AgesOutAfterTheBaseHistory()
    {
        var h = new DelayHistory();
        h.Add(1_000, 0);
        for (var m = 1; m <= DelayHistory.BaseHistoryMinutes; m++)
        {
            h.Add(5_000, m * Minute);
            Assert.Equal(m < DelayHistory.BaseHistoryMinutes ? 1_000u : 5_000u, h.BaseDelay);
        }
    }

    [Fact]
    public void Delays_WrapAround32Bits()
    {
        var h = new DelayHistory();
        h.Add(uint.MaxValue - 10, 0);
        h.Add(20, 1_000); // 31 us later on a clock that wrapped
        Assert.Equal(uint.MaxValue - 10, h.BaseDelay);
        Assert.Equal(0u, h.QueuingDelay); // the filter still holds the base sample itself
        h.Add(25, 2_000);
        h.Add(30, 3_000);
        Assert.Equal(31u, h.QueuingDelay); // filter {20, 25, 30}: 31 us above a base from before the wrap
        h.Add(40, 4_000);
        Assert.Equal(36u, h.QueuingDelay);
    }
}
