using System.CommandLine;
using System.Globalization;
using NatKit.Linux;
using Spectre.Console;

namespace NatKit.Cli.Commands;

/// <summary>`natkit bench gateway`: NatKit's gateway side by side with kernel nftables NAT, in one run.</summary>
internal sealed class GatewayBenchCommands : IVerbGroup
{
    public string? Parent => "bench";

    public Command Create()
    {
        var seconds = new Option<int>("--seconds") { Description = "Length of each iperf3 run.", DefaultValueFactory = _ => 5 };
        var preset = new Option<string>("--preset") { Description = "NatKit's NAT preset.", DefaultValueFactory = _ => "linux-masquerade" };
        var noOffload = new Option<bool>("--no-offload") { Description = "Run NatKit without TUN offloads." };
        var tuning = new DataPlaneCliOptions();
        var paths = new Option<string>("--paths") { Description = "Comma-separated paths to measure: direct, kernel, natkit.", DefaultValueFactory = _ => "direct,kernel,natkit" };
        var figures = new Option<string>("--figures") { Description = "Comma-separated figures: tcp1, tcp4, udp, ping (default all).", DefaultValueFactory = _ => "tcp1,tcp4,udp,ping" };
        var command = new Command("gateway",
            "TCP (1 and 4 streams), 64-byte UDP packets/s and added latency: NatKit gateway vs kernel nftables masquerade (root, iperf3, nft, ping).")
        {
            seconds, preset, noOffload, tuning.Realtime, tuning.BatchPause, paths, figures,
        };
        command.SetAction(async (parse, ct) =>
        {
            var policy = GatewayCommands.Policy(parse.GetValue(preset)!, null);
            var duration = TimeSpan.FromSeconds(Math.Clamp(parse.GetValue(seconds), 1, 60));
            var offloads = parse.GetValue(noOffload) ? TunOffloads.None : TunOffloads.All;
            var chosen = ParsePaths(parse.GetValue(paths)!);
            var wanted = ParseFigures(parse.GetValue(figures)!);
            var results = new Dictionary<string, GatewayBenchmarkResult>();
            await AnsiConsole.Status().StartAsync("measuring", async status =>
            {
                foreach (var path in chosen)
                {
                    results[path] = await GatewayBenchmark.MeasureAsync(path, duration, policy, offloads,
                        tuning.Read(parse), s => status.Status(s), wanted, ct).ConfigureAwait(false);
                }
            }).ConfigureAwait(false);

            var none = new GatewayBenchmarkResult("-", double.NaN, double.NaN, double.NaN, double.NaN, double.NaN);
            var (direct, kernel, natkit) = (results.GetValueOrDefault("direct", none),
                results.GetValueOrDefault("kernel", none), results.GetValueOrDefault("natkit", none));
            var table = new Table().AddColumns("figure", "direct", "kernel NAT", "NatKit", "NatKit / kernel");
            table.AddRow("TCP 1 stream (Gbit/s)", Gbit(direct.TcpOneStreamBitsPerSecond), Gbit(kernel.TcpOneStreamBitsPerSecond),
                Gbit(natkit.TcpOneStreamBitsPerSecond), Ratio(natkit.TcpOneStreamBitsPerSecond, kernel.TcpOneStreamBitsPerSecond));
            table.AddRow("TCP 4 streams (Gbit/s)", Gbit(direct.TcpFourStreamsBitsPerSecond), Gbit(kernel.TcpFourStreamsBitsPerSecond),
                Gbit(natkit.TcpFourStreamsBitsPerSecond), Ratio(natkit.TcpFourStreamsBitsPerSecond, kernel.TcpFourStreamsBitsPerSecond));
            table.AddRow("UDP 64 B (kpackets/s)", K(direct.Udp64PacketsPerSecond), K(kernel.Udp64PacketsPerSecond),
                K(natkit.Udp64PacketsPerSecond), Ratio(natkit.Udp64PacketsPerSecond, kernel.Udp64PacketsPerSecond));
            table.AddRow("ping RTT avg (µs)", Us(direct.RoundTripMicroseconds), Us(kernel.RoundTripMicroseconds),
                Us(natkit.RoundTripMicroseconds), Ratio(natkit.RoundTripMicroseconds, kernel.RoundTripMicroseconds));
            table.AddRow("ping RTT min (µs)", Us(direct.MinRoundTripMicroseconds), Us(kernel.MinRoundTripMicroseconds),
                Us(natkit.MinRoundTripMicroseconds), Ratio(natkit.MinRoundTripMicroseconds, kernel.MinRoundTripMicroseconds));
            table.AddRow("added RTT vs direct, avg / min (µs)", "",
                $"{Us(kernel.RoundTripMicroseconds - direct.RoundTripMicroseconds)} / {Us(kernel.MinRoundTripMicroseconds - direct.MinRoundTripMicroseconds)}",
                $"{Us(natkit.RoundTripMicroseconds - direct.RoundTripMicroseconds)} / {Us(natkit.MinRoundTripMicroseconds - direct.MinRoundTripMicroseconds)}", "");
            AnsiConsole.Write(table);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"load average {NatKit.Bench.BenchFigures.LoadAverage()} on {Environment.ProcessorCount} cores; NatKit preset {parse.GetValue(preset)}, offloads {offloads}, real-time priority {parse.GetValue(tuning.Realtime)}, batch pause {parse.GetValue(tuning.BatchPause)} µs"));
            return 0;
        });
        return command;
    }

    private static string[] ParsePaths(string text)
    {
        var list = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        foreach (var p in list)
        {
            if (p is not ("direct" or "kernel" or "natkit"))
            {
                throw new CliException($"unknown path '{p}': use direct, kernel or natkit");
            }
        }

        return list.Length == 0 ? throw new CliException("--paths names no path") : list;
    }

    private static GatewayFigures ParseFigures(string text)
    {
        var figures = GatewayFigures.None;
        foreach (var f in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            figures |= f switch
            {
                "tcp1" => GatewayFigures.TcpOneStream,
                "tcp4" => GatewayFigures.TcpFourStreams,
                "udp" => GatewayFigures.Udp64,
                "ping" => GatewayFigures.Ping,
                _ => throw new CliException($"unknown figure '{f}': use tcp1, tcp4, udp or ping"),
            };
        }

        return figures == GatewayFigures.None ? throw new CliException("--figures names no figure") : figures;
    }

    private static string Gbit(double bps) => double.IsNaN(bps) ? "-" : (bps / 1e9).ToString("0.00", CultureInfo.InvariantCulture);

    private static string K(double pps) => double.IsNaN(pps) ? "-" : (pps / 1e3).ToString("0.0", CultureInfo.InvariantCulture);

    private static string Us(double us) => double.IsNaN(us) ? "-" : us.ToString("0", CultureInfo.InvariantCulture);

    private static string Ratio(double a, double b) => double.IsNaN(a) || double.IsNaN(b) || b <= 0 ? "-" : (a / b).ToString("0.00", CultureInfo.InvariantCulture) + "x";
}
