using System.Globalization;
using System.Text.RegularExpressions;

namespace NatKit.Bench.Proxy;

/// <summary>What one `ab` (ApacheBench) run reports: requests per second, failed requests and non-2xx answers.</summary>
public sealed partial record AbReport(double RequestsPerSecond, int Failed, int Non2xx)
{
    /// <summary>Reads ab's text report. False when it has no "Requests per second" line (ab failed, or this is not
    /// ab's output); "Failed requests" and "Non-2xx responses" count 0 when absent (ab prints the latter only when
    /// there were some).</summary>
    public static bool TryParse(string output, out AbReport report)
    {
        ArgumentNullException.ThrowIfNull(output);
        report = new AbReport(0, 0, 0);
        var rps = RpsPattern().Match(output);
        if (!rps.Success || !double.TryParse(rps.Groups[1].Value, NumberStyles.Float, CultureInfo.InvariantCulture, out var perSecond))
        {
            return false;
        }

        var failed = FailedPattern().Match(output);
        var non2xx = Non2xxPattern().Match(output);
        if ((failed.Success && !int.TryParse(failed.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out _)) ||
            (non2xx.Success && !int.TryParse(non2xx.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out _)))
        {
            return false; // a count too large for an int is not a report we understand
        }

        report = new AbReport(perSecond,
            failed.Success ? int.Parse(failed.Groups[1].Value, CultureInfo.InvariantCulture) : 0,
            non2xx.Success ? int.Parse(non2xx.Groups[1].Value, CultureInfo.InvariantCulture) : 0);
        return true;
    }

    [GeneratedRegex(@"^Requests per second:\s+([0-9]+(?:\.[0-9]+)?)", RegexOptions.Multiline)]
    private static partial Regex RpsPattern();

    [GeneratedRegex(@"^Failed requests:\s+([0-9]+)", RegexOptions.Multiline)]
    private static partial Regex FailedPattern();

    [GeneratedRegex(@"^Non-2xx responses:\s+([0-9]+)", RegexOptions.Multiline)]
    private static partial Regex Non2xxPattern();
}
