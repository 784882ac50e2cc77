using System.CommandLine;
using System.Globalization;
using System.Net;
using NatKit.Bench;
using NatKit.Bench.Utp;
using NatKit.Utp;
using Spectre.Console;

namespace NatKit.Cli.Commands;

/// <summary>
/// `natkit bench utp`: bulk transfer over uTP between two endpoints on loopback, optionally side by side with
/// libutp (two node processes running tests/interop-node/utp-peer.js) in the same run.
/// </summary>
internal sealed class UtpBenchCommands : IVerbGroup
{
    public string? Parent => "bench";

    public Command Create()
    {
        var command = new Command("utp", "uTP bulk throughput on loopback (NatKit to NatKit; --compare-libutp adds libutp to libutp).");
        var bytes = new Option<long>("--bytes")
        {
            Description = "Bytes to transfer per run.",
            DefaultValueFactory = _ => 200L * 1024 * 1024,
        };
        var runs = new Option<int>("--runs")
        {
            Description = "Runs per implementation; the best and the median are reported.",
            DefaultValueFactory = _ => 3,
        };
        var compare = new Option<bool>("--compare-libutp")
        {
            Description = "Also run libutp to libutp (node and tests/interop-node with npm ci done).",
        };
        var nodePeer = new Option<string?>("--node-peer")
        {
            Description = "Path to utp-peer.js (default: tests/interop-node/utp-peer.js above the current directory).",
        };
        var datagram = new Option<int>("--datagram-size")
        {
            Description = "uTP datagram size, header included.",
            DefaultValueFactory = _ => UtpOptions.Default.MaxDatagramSize,
        };
        command.Options.Add(bytes);
        command.Options.Add(runs);
        command.Options.Add(compare);
        command.Options.Add(nodePeer);
        var lab = new Option<bool>("--lab")
        {
            Description = "Also transfer through an impaired in-memory lab link (virtual time).",
        };
        var labLatency = new Option<int>("--lab-latency")
        {
            Description = "Lab link one-way latency, ms.",
            DefaultValueFactory = _ => 50,
        };
        var labLoss = new Option<double>("--lab-loss")
        {
            Description = "Lab link loss probability per packet, each direction.",
            DefaultValueFactory = _ => 0.01,
        };
        var labBytes = new Option<long>("--lab-bytes")
        {
            Description = "Bytes to transfer through the lab link.",
            DefaultValueFactory = _ => 16L * 1024 * 1024,
        };
        var socketBuffer = new Option<int>("--socket-buffer")
        {
            Description = "Kernel receive and send buffer of each endpoint's UDP socket, bytes (0: the system's default; capped by net.core.rmem_max/wmem_max).",
        };
        command.Options.Add(datagram);
        command.Options.Add(socketBuffer);
        command.Options.Add(lab);
        command.Options.Add(labLatency);
        command.Options.Add(labLoss);
        command.Options.Add(labBytes);
        var json = new Option<bool>("--json") { Description = "One JSON array of named records (the one --json shape) instead of tables." };
        command.Options.Add(json);
        command.SetAction(async (parse, ct) =>
        {
            var n = parse.GetValue(bytes);
            var r = parse.GetValue(runs);
            if (n <= 0 || r <= 0)
            {
                throw new CliException("--bytes and --runs must be positive");
            }

            var buffers = parse.GetValue(socketBuffer);
            if (buffers < 0)
            {
                throw new CliException($"--socket-buffer {buffers}: must be 0 (the system's default) or more.");
            }

            var options = new UtpOptions { MaxDatagramSize = parse.GetValue(datagram) };
            try
            {
                options.Validate();
            }
            catch (ArgumentException e)
            {
                throw new CliException(e.Message);
            }

            string? script = null;
            if (parse.GetValue(compare))
            {
                script = parse.GetValue(nodePeer) ?? UtpBenchmark.FindNodePeer(Environment.CurrentDirectory) ??
                         throw new CliException("tests/interop-node/utp-peer.js not found: pass --node-peer");
                if (!Directory.Exists(Path.Combine(Path.GetDirectoryName(script)!, "node_modules", "utp-native")))
                {
                    throw new CliException("utp-native is not installed: run npm ci in " + Path.GetDirectoryName(script));
                }
            }

            var latency = TimeSpan.FromMilliseconds(parse.GetValue(labLatency));
            var loss = parse.GetValue(labLoss);
            if (latency < TimeSpan.Zero || loss is < 0 or > 1)
            {
                throw new CliException("--lab-latency must be >= 0 and --lab-loss in 0..1");
            }

            var table = new Table().AddColumns("implementation", "bytes", "best Mbit/s", "median Mbit/s", "runs");
            var natkit = new List<double>();
            var libutp = new List<double>();
            for (var i = 0; i < r; i++)
            {
                natkit.Add(await UtpBenchmark.NatKitLoopbackAsync(n, options, ct, buffers));
                if (script is not null)
                {
                    libutp.Add(await UtpBenchmark.LibutpLoopbackAsync(script, n, ct));
                }
            }

            if (parse.GetValue(json))
            {
                List<(string Name, string Json)> records = [Runs("NatKit -> NatKit", n, natkit)];
                if (script is not null)
                {
                    records.Add(Runs("libutp -> libutp", n, libutp));
                }

                if (parse.GetValue(lab))
                {
                    var t = UtpBenchmark.LabTransfer(parse.GetValue(labBytes), latency, loss, options);
                    records.Add(BenchJson.Record("lab", new
                    {
                        bytes = t.Bytes, latencyMs = latency.TotalMilliseconds, loss, virtualSeconds = t.Virtual.TotalSeconds,
                        mbitPerSecondVirtual = t.Bytes * 8 / t.Virtual.TotalSeconds / 1e6, retransmissions = t.Retransmissions,
                        timeouts = t.Timeouts, wallSeconds = t.Wall.TotalSeconds,
                    }));
                }

                records.Add(BenchJson.Record("run", new { load = BenchFigures.LoadAverage(), cores = Environment.ProcessorCount }));
                CliJson.WriteRecords(records);
                return 0;
            }

            AddRow(table, "NatKit -> NatKit", n, natkit);
            if (script is not null)
            {
                AddRow(table, "libutp -> libutp", n, libutp);
            }

            AnsiConsole.Write(table);
            var st = UtpBenchmark.LastLoopbackStatistics;
            AnsiConsole.MarkupLineInterpolated(
                $"[grey]NatKit last run: {st.PacketsSent} packets, {st.Retransmissions} retransmitted ({st.FastRetransmissions} fast), {st.Timeouts} timeouts, rtt {st.SmoothedRtt.TotalMilliseconds:0.###} ms, cwnd {st.CongestionWindow} B[/]");
            if (parse.GetValue(lab))
            {
                var result = UtpBenchmark.LabTransfer(parse.GetValue(labBytes), latency, loss, options);
                var labTable = new Table().AddColumns("lab link", "bytes", "virtual s", "Mbit/s (virtual)",
                    "retransmits", "timeouts", "wall s");
                labTable.AddRow($"{latency.TotalMilliseconds:0} ms one way, {loss:P1} loss",
                    result.Bytes.ToString("N0", CultureInfo.InvariantCulture),
                    result.Virtual.TotalSeconds.ToString("0.00", CultureInfo.InvariantCulture),
                    (result.Bytes * 8 / result.Virtual.TotalSeconds / 1e6).ToString("0.0", CultureInfo.InvariantCulture),
                    result.Retransmissions.ToString(CultureInfo.InvariantCulture),
                    result.Timeouts.ToString(CultureInfo.InvariantCulture),
                    result.Wall.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture));
                AnsiConsole.Write(labTable);
            }

            if (script is not null)
            {
                AnsiConsole.MarkupLineInterpolated(
                    $"NatKit / libutp (median): [bold]{BenchFigures.Median(natkit) / BenchFigures.Median(libutp):0.00}x[/]");
            }

            AnsiConsole.MarkupLineInterpolated(
                $"[grey]load average: {BenchFigures.LoadAverage()} on {Environment.ProcessorCount} cores[/]");
            return 0;
        });
        return command;
    }

    private static (string Name, string Json) Runs(string name, long bytes, List<double> mbits) =>
        BenchJson.Record(name, new { bytes, bestMbitPerSecond = mbits.Max(), medianMbitPerSecond = BenchFigures.Median(mbits), runs = mbits });

    private static void AddRow(Table table, string name, long bytes, List<double> mbits) =>
        table.AddRow(name, bytes.ToString("N0", CultureInfo.InvariantCulture),
            mbits.Max().ToString("0", CultureInfo.InvariantCulture),
            BenchFigures.Median(mbits).ToString("0", CultureInfo.InvariantCulture),
            mbits.Count.ToString(CultureInfo.InvariantCulture));
}
