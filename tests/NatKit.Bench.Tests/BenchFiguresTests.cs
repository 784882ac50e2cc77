using FsCheck;
namespace NatKit.Bench.Tests;

/// <summary>The one statistics helper of the benchmarks: medians and percentiles of their rounds.</summary>
public sealed class BenchFiguresTests
{
    [Theory]
    [InlineData(new[] { 5.0 }, 5.0)]
    [InlineData(new[] { 3.0, 1.0, 2.0 }, 2.0)]
    [InlineData(new[] { 4.0, 1.0, 3.0, 2.0 }, 2.5)] // an even count: the mean of the two middle values
    [InlineData(new[] { 1.0, 1.0, 100.0 }, 1.0)] // an outlier does not move it
    public void Median_IsTheMiddleOfTheSortedValues(double[] values, double median) =>
        Assert.Equal(median, BenchFigures.Median(values));

    [Theory]
    [InlineData(0.0, 10.0)]
    [InlineData(1.0, 50.0)]
    [InlineData(0.5, 30.0)]
    [InlineData(0.25, 20.0)]
    [InlineData(0.9, 46.0)] // between ranks 3 (40) and 4 (50): 40 + 0.6 * 10
    public void Percentile_InterpolatesBetweenNearestRanks(double fraction, double expected) =>
        Assert.Equal(expected, BenchFigures.Percentile([50, 10, 40, 20, 30], fraction), 9);

    [Fact]
    public void NoValues_NaN_OrAFractionOutside0To1_AreRefused()
    {
        Assert.Throws<ArgumentException>(() => BenchFigures.Median([]));
        Assert.Throws<ArgumentException>(() => BenchFigures.Median([1, double.NaN]));
        Assert.Throws<ArgumentException>(() => BenchFigures.Percentile([1], 1.5));
        Assert.Throws<ArgumentException>(() => BenchFigures.Percentile([1], double.NaN));
    }

    [Fact]
    public void Percentile_IsMonotone_AndWithinTheValues() =>
        FsCheck.Fluent.Prop.ForAll<int[], byte, byte>((values, a, b) =>
        {
            if (values is null || values.Length == 0)
            {
                return true;
            }

            var xs = values.Select(v => v / 7.0).ToArray();
            var (lo, hi) = (Math.Min(a, b) / 255.0, Math.Max(a, b) / 255.0);
            var p = BenchFigures.Percentile(xs, lo);
            var q = BenchFigures.Percentile(xs, hi);
            return p <= q && p >= xs.Min() && q <= xs.Max();
        }).QuickCheckThrowOnFailure();

    [Fact]
    public void LoadAverage_IsANumber_OrUnknown()
    {
        var load = BenchFigures.LoadAverage();
        Assert.True(load == "unknown" || double.TryParse(load, System.Globalization.CultureInfo.InvariantCulture, out _), load);
    }
}
