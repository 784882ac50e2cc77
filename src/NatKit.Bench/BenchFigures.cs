using System.Globalization;

namespace NatKit.Bench;

/// <summary>The few numbers every side-by-side benchmark reports: the median of its rounds and the machine's load
/// while it ran (numbers from a busy machine are read as ratios, never as absolutes).</summary>
public static class BenchFigures
{
    /// <summary>The middle value (the mean of the two middle ones for an even count): <see cref="Percentile"/> 0.5.</summary>
    /// <exception cref="ArgumentException">No values.</exception>
    public static double Median(IEnumerable<double> values) => Percentile(values, 0.5);

    /// <summary>The <paramref name="fraction"/> percentile (0 the least, 1 the greatest), interpolated linearly between
    /// the two nearest ranks, as spreadsheets and numpy do by default.</summary>
    /// <exception cref="ArgumentException">No values, a NaN among them, or a fraction outside 0..1.</exception>
    public static double Percentile(IEnumerable<double> values, double fraction)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (fraction is not (>= 0 and <= 1))
        {
            throw new ArgumentException($"fraction {fraction}: must be 0 to 1", nameof(fraction));
        }

        var sorted = values.ToArray();
        if (sorted.Length == 0)
        {
            throw new ArgumentException("no values", nameof(values));
        }

        if (Array.Exists(sorted, double.IsNaN))
        {
            throw new ArgumentException("a value is NaN", nameof(values));
        }

        Array.Sort(sorted);
        var rank = fraction * (sorted.Length - 1);
        var low = (int)Math.Floor(rank);
        var high = Math.Min(low + 1, sorted.Length - 1);
        return sorted[low] + (sorted[high] - sorted[low]) * (rank - low);
    }

    /// <summary>The one-minute load average (/proc/loadavg), or "unknown".</summary>
    public static string LoadAverage()
    {
        try
        {
            return File.ReadAllText("/proc/loadavg").Split(' ')[0];
        }
        catch (IOException)
        {
            return "unknown";
        }
        catch (UnauthorizedAccessException)
        {
            return "unknown";
        }
    }

    /// <summary>"load 1.23 on 2 cores".</summary>
    public static string Machine() =>
        string.Create(CultureInfo.InvariantCulture, $"load {LoadAverage()} on {Environment.ProcessorCount} cores");
}
