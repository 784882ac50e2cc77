using System.Text.Json;
using NatKit.Bench;
using NatKit.Bench.Proxy;

namespace NatKit.Cli.Commands;

/// <summary>The bench verbs' `--json` records (one per contender or measure), printed through <see cref="CliJson"/>.</summary>
internal static class BenchJson
{
    /// <summary>The fields of one record as a JSON object (for <see cref="CliJson.WriteRecords"/>).</summary>
    public static (string Name, string Json) Record(string name, object fields) => (name, JsonSerializer.Serialize(fields));

    /// <summary>`bench proxy`: one record per contender, with its medians and every round; then the run's machine.</summary>
    public static IEnumerable<(string Name, string Json)> ProxyRecords(ProxyBenchmarkResult r, ProxyBenchmarkOptions o)
    {
        foreach (var c in r.Contenders)
        {
            var rps = r.RequestsPerSecond.TryGetValue(c.Name, out var runs) ? runs : null;
            yield return Record(c.Name, new
            {
                version = c.Version,
                requestsPerSecond = rps is null ? (double?)null : BenchFigures.Median(rps.Select(x => x.RequestsPerSecond)),
                requestsPerSecondRounds = rps?.Select(x => x.RequestsPerSecond),
                failed = rps?.Sum(x => x.Failed),
                non2xx = rps?.Sum(x => x.Non2xx),
                connect = r.Connect.Where(x => x.MegabytesPerSecond.ContainsKey(c.Name)).Select(x => new
                {
                    sender = x.Sender ?? r.SystemCongestionControl,
                    megabytesPerSecond = BenchFigures.Median(x.MegabytesPerSecond[c.Name]),
                    rounds = x.MegabytesPerSecond[c.Name],
                }),
            });
        }

        yield return Record("run", new
        {
            rounds = o.Rounds,
            requests = o.Requests,
            concurrency = o.Concurrency,
            connectMegabytes = o.ConnectMegabytes,
            missing = r.Missing,
            loadBefore = r.LoadBefore,
            loadAfter = r.LoadAfter,
            cores = Environment.ProcessorCount,
        });
    }

    /// <summary>`bench peer`: one record per throughput contender, one per start-up contender ("NAME start-up"),
    /// then the run's size, rounds, ssh version and load.</summary>
    public static IEnumerable<(string Name, string Json)> PeerRecords(PeerBenchmarkResult r)
    {
        foreach (var t in r.Throughput)
        {
            yield return Record(t.Name, new { what = t.What, megabytesPerSecond = t.Median, rounds = t.MegabytesPerSecond });
        }

        foreach (var s in r.Startup)
        {
            yield return Record(s.Name + " start-up", new { what = s.What, milliseconds = s.Median, samples = s.Milliseconds });
        }

        yield return Record("run", new
        {
            bytes = r.Bytes, rounds = r.Rounds, sshVersion = r.SshVersion, sshSkipped = r.SshSkipped,
            loadBefore = r.LoadBefore, loadAfter = r.LoadAfter, cores = Environment.ProcessorCount,
        });
    }
}
