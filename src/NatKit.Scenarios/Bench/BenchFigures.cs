using System.Globalization;

namespace NatKit.Scenarios.Bench;

/// <summary>The few numbers every side-by-side benchmark reports: the median of its rounds and the machine's load
/// while it ran (numbers from a busy machine are read as ratios, never as absolutes).</summary>
public static class BenchFigures
{
    /// <summary>The middle value (the mean of the two middle ones for an even count).</summary>
    /// <exception cref="ArgumentException">No values.</exception>
    public static double Median(IEnumerable<double> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        var sorted = values.Order().ToArray();
        if (sorted.Length == 0)
        {
            throw new ArgumentException("no values", nameof(values));
        }

        var mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
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
