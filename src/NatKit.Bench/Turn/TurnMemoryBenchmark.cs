using System.Globalization;
using NatKit.Net;
using NatKit.Turn.Client;
using NatKit.Turn.Load;

namespace NatKit.Bench.Turn;

/// <summary>A TURN server's resident memory before and after holding allocations, and the cost of one.</summary>
public sealed record TurnMemoryResult(int Allocations, long ResidentBefore, long ResidentAfter)
{
    /// <summary>(after - before) / allocations.</summary>
    public double BytesPerAllocation => (ResidentAfter - ResidentBefore) / (double)Allocations;
}

/// <summary>`natkit bench turn --hold`: makes allocations on a server this machine runs, holds them, and reads the
/// server's resident memory (Linux /proc) before and after.</summary>
public static class TurnMemoryBenchmark
{
    /// <summary>Holds <paramref name="count"/> allocations and measures the server process <paramref name="pid"/>.</summary>
    /// <exception cref="IOException">No such process, or no VmRSS for it.</exception>
    /// <exception cref="TurnException">The server refused an allocation.</exception>
    public static async Task<TurnMemoryResult> HoldAsync(TurnClientOptions client, TurnLoadOptions options, int count,
        int pid, CancellationToken ct)
    {
        var before = ResidentBytes(pid);
        var generator = new TurnLoadGenerator(SystemNetwork.Instance, client, options);
        var held = await generator.HoldAsync(count, cancellationToken: ct).ConfigureAwait(false);
        try
        {
            await Task.Delay(TimeSpan.FromSeconds(2), ct).ConfigureAwait(false); // let the server settle (GC, lazily built tables)
            return new TurnMemoryResult(count, before, ResidentBytes(pid));
        }
        finally
        {
            await generator.ReleaseAsync(held, ct).ConfigureAwait(false);
        }
    }

    /// <summary>VmRSS of a process, in bytes (Linux).</summary>
    /// <exception cref="IOException">No such process (or not Linux), or no VmRSS line.</exception>
    public static long ResidentBytes(int pid)
    {
        var path = $"/proc/{pid}/status";
        if (!File.Exists(path))
        {
            throw new IOException("no such process (or not Linux)");
        }

        return ParseResident(File.ReadLines(path)) ?? throw new IOException($"no VmRSS in {path}");
    }

    /// <summary>The VmRSS line of a /proc/PID/status, in bytes; null when there is none.</summary>
    internal static long? ParseResident(IEnumerable<string> status)
    {
        foreach (var line in status)
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal) &&
                long.TryParse(line["VmRSS:".Length..].Trim().Split(' ')[0], NumberStyles.None, CultureInfo.InvariantCulture, out var kb))
            {
                return kb * 1024;
            }
        }

        return null;
    }
}
