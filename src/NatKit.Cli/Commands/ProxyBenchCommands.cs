using System.CommandLine;
using System.Globalization;
using System.Net.Sockets;
using NatKit.Bench;
using NatKit.Bench.Proxy;
using NatKit.Net;
using Spectre.Console;

namespace NatKit.Cli.Commands;

/// <summary>
/// `natkit bench proxy`: NatKit's proxy side by side with tinyproxy and squid in one run, against the same loopback
/// origin: requests/s with keep-alive under `ab -k -X`, and CONNECT bulk throughput against a direct connection.
/// Everything it starts listens on 127.0.0.1 and is stopped at the end (NatKit.Bench's ProxyBenchmark does the work).
/// </summary>
internal sealed class ProxyBenchCommands : IVerbGroup
{
    public string? Parent => "bench";

    public Command Create()
    {
        var cmd = new Command("proxy", "Requests/s (ab -k -X) and CONNECT throughput: natkit vs tinyproxy and squid (when installed) vs direct, on loopback.");
        var requests = new Option<int>("--requests") { Description = "Requests per ab run.", DefaultValueFactory = _ => 20000 };
        var concurrency = new Option<int>("--concurrency") { Description = "ab concurrency.", DefaultValueFactory = _ => 32 };
        var megabytes = new Option<int>("--connect-mb")
        {
            Description = "Megabytes sent through each CONNECT throughput run.",
            DefaultValueFactory = _ => 2048,
        };
        var bodyBytes = new Option<int>("--body-bytes") { Description = "Origin response body size.", DefaultValueFactory = _ => 1024 };
        var rounds = new Option<int>("--rounds") { Description = "Interleaved rounds; each figure is the median (CONNECT also shows the range).", DefaultValueFactory = _ => 5 };
        var figures = new Option<string>("--figures") { Description = "Comma-separated: rps (ab -k), connect (CONNECT bulk).", DefaultValueFactory = _ => "rps,connect" };
        var spliceReference = new Option<bool>("--splice-reference")
        {
            Description = "Also run CONNECT through a minimal C splice(2) relay (compiled here with cc): the ceiling for a userspace tunnel on this machine.",
        };
        var proxyCc = new Option<string>("--congestion-control")
        {
            Description = "TCP congestion control natkit (and the splice reference) use on both legs; 'system' keeps the "
                + "system's default. tinyproxy and squid have no such setting: they use the system's.",
            DefaultValueFactory = _ => "cubic",
        };
        var endpointCc = new Option<string>("--endpoint-cc")
        {
            Description = "TCP congestion control of the CONNECT load's sender, so also of the direct connection: "
                + "'system' (what clients here get), an algorithm's name, or 'both' (the default): one CONNECT row "
                + "with the system's and one with natkit's, like with like.",
            DefaultValueFactory = _ => "both",
        };
        var json = new Option<bool>("--json") { Description = "The figures as one JSON array of named records instead of a table." };
        foreach (var o in new Option[] { requests, concurrency, megabytes, bodyBytes, rounds, figures, spliceReference, proxyCc, endpointCc, json })
        {
            cmd.Options.Add(o);
        }

        cmd.SetAction(async (parse, ct) =>
        {
            var wanted = parse.GetValue(figures)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (wanted.Length == 0 || wanted.Any(f => f is not ("rps" or "connect")))
            {
                throw new CliException("--figures takes rps, connect or both");
            }

            var proxyChoice = CongestionChoice(parse, proxyCc, "--congestion-control");
            // The sender's algorithm is what matters: congestion control governs sending, and the sink only acks.
            List<string?> senders = parse.GetValue(endpointCc) == "both"
                ? proxyChoice is null || proxyChoice == SystemNetwork.DefaultCongestionControl ? [null] : [null, proxyChoice]
                : [CongestionChoice(parse, endpointCc, "--endpoint-cc")];
            await RunAsync(parse.GetValue(requests), parse.GetValue(concurrency), parse.GetValue(megabytes),
                parse.GetValue(bodyBytes), Math.Max(1, parse.GetValue(rounds)), wanted.Contains("rps"),
                wanted.Contains("connect"), parse.GetValue(spliceReference), proxyChoice, senders, parse.GetValue(json), ct);
            return 0;
        });
        return cmd;
    }

    /// <summary>A congestion control the run asks for: null for the system's default. A default the kernel will not
    /// give this user falls back to the system's with a note; one the user typed is an error.</summary>
    private static string? CongestionChoice(ParseResult parse, Option<string> option, string name)
    {
        var value = parse.GetValue(option)!;
        if (value == "system")
        {
            return null;
        }

        try
        {
            SystemNetwork.CheckCongestionControl(value);
            return value;
        }
        catch (NetworkException e) when (parse.GetResult(option) is null or { Implicit: true })
        {
            AnsiConsole.MarkupLine($"[yellow]{name}: {Markup.Escape(e.Message)}; using the system's default[/]");
            return null;
        }
        catch (NetworkException e)
        {
            throw new CliException($"{name}: {e.Message}");
        }
    }

    private static async Task RunAsync(int requests, int concurrency, int megabytes, int bodyBytes, int rounds,
        bool measureRps, bool measureConnect, bool spliceReference, string? proxyCc, List<string?> senders, bool json,
        CancellationToken ct)
    {
        // natkit's own contender runs as the apphost, or `dotnet natkit.dll` when started that way
        var host = Environment.ProcessPath ?? throw new CliException("cannot tell where natkit runs from");
        string[] natkit = Path.GetFileNameWithoutExtension(host) == "dotnet" ? [host, typeof(ProxyBenchCommands).Assembly.Location] : [host];
        var options = new ProxyBenchmarkOptions
        {
            Natkit = natkit,
            NatkitVersion = typeof(ProxyBenchCommands).Assembly.GetName().Version?.ToString() ?? "",
            Requests = requests,
            Concurrency = concurrency,
            ConnectMegabytes = megabytes,
            BodyBytes = bodyBytes,
            Rounds = rounds,
            MeasureRps = measureRps,
            MeasureConnect = measureConnect,
            SpliceReference = spliceReference,
            ProxyCongestionControl = proxyCc,
            Senders = senders,
            Progress = json ? null : line => AnsiConsole.MarkupLine(Markup.Escape(line)),
        };
        var r = await ProxyBenchmark.RunAsync(options, ct);
        if (json)
        {
            CliJson.WriteRecords(BenchJson.ProxyRecords(r, options));
            return;
        }

        foreach (var name in r.Missing)
        {
            AnsiConsole.MarkupLine($"[yellow]{name} is not installed (apt-get install {name}): its column stays empty[/]");
        }

        var system = r.SystemCongestionControl;
        AnsiConsole.MarkupLine(Markup.Escape($"TCP congestion control: natkit{(spliceReference ? " and splice-c" : "")} {proxyCc ?? system}; "
            + $"tinyproxy and squid {system} (the system's: they have no such setting); CONNECT sender (so direct) "
            + string.Join(", then ", senders.Select(c => c ?? $"{system} (the system's)"))));
        AnsiConsole.MarkupLine($"load average before: {Markup.Escape(r.LoadBefore)} (2 cores; other work on the machine skews absolute numbers)");
        string[] columns = r.Contenders.Any(c => c.Name == "splice-c") ? ["direct", "natkit", "tinyproxy", "squid", "splice-c"] : ["direct", "natkit", "tinyproxy", "squid"];
        var table = new Table().Border(TableBorder.Rounded).AddColumn($"measure (median of {rounds})")
            .AddColumns(columns).AddColumn("ratio (medians)");
        string Cell<T>(IReadOnlyDictionary<string, T> d, string name, Func<T, string> f) => d.TryGetValue(name, out var v) ? f(v) : "-";
        string Ratio(Dictionary<string, double> d, string name, string goal) =>
            d.TryGetValue("natkit", out var n) && d.TryGetValue(name, out var v) && v > 0 ? $"{F(n / v)}x {name}{goal}" : "";

        if (measureRps)
        {
            var perSecond = r.RequestsPerSecond.ToDictionary(kv => kv.Key, kv => BenchFigures.Median(kv.Value.Select(x => x.RequestsPerSecond)));
            var ratios = string.Join(", ", new[] { Ratio(perSecond, "tinyproxy", " (goal >= 2)"), Ratio(perSecond, "squid", "") }.Where(x => x.Length > 0));
            table.AddRow([$"requests/s (ab -k, c={concurrency})", .. columns.Select(n => Cell(perSecond, n, F)), ratios]);
            table.AddRow(["failed / non-2xx (all rounds)", .. columns.Select(n => Cell(r.RequestsPerSecond, n, x => $"{x.Sum(y => y.Failed)}/{x.Sum(y => y.Non2xx)}")), ""]);
        }

        foreach (var runs in r.Connect)
        {
            var medians = runs.MegabytesPerSecond.ToDictionary(kv => kv.Key, kv => BenchFigures.Median(kv.Value));
            var ratios = string.Join(", ", new[]
            {
                Ratio(medians, "direct", " (goal >= 0.8)"), Ratio(medians, "tinyproxy", ""), Ratio(medians, "squid", ""), Ratio(medians, "splice-c", ""),
            }.Where(x => x.Length > 0));
            table.AddRow([$"CONNECT MB/s ({megabytes} MB), sender {runs.Sender ?? system}", .. columns.Select(n => Cell(medians, n, F)), ratios]);
            table.AddRow(["  range", .. columns.Select(n => Cell(runs.MegabytesPerSecond, n, x => $"{x.Min():0}-{x.Max():0}")), ""]);
        }

        if (Console.IsOutputRedirected)
        {
            AnsiConsole.Profile.Width = Math.Max(AnsiConsole.Profile.Width, 160); // a log keeps the table readable
        }

        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine($"load average after: {Markup.Escape(r.LoadAfter)}");
    }

    private static string F(double v) => v.ToString("0.00", CultureInfo.InvariantCulture);
}
