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
        var realtime = new Option<int>("--realtime") { Description = "SCHED_FIFO priority (1-99) for NatKit's data-plane thread; 0 = normal scheduling.", DefaultValueFactory = _ => 0 };
        var command = new Command("gateway",
            "TCP (1 and 4 streams), 64-byte UDP packets/s and added latency: NatKit gateway vs kernel nftables masquerade (root, iperf3, nft, ping).")
        {
            seconds, preset, noOffload, realtime,
        };
        command.SetAction(async (parse, ct) =>
        {
            var policy = GatewayCommands.Policy(parse.GetValue(preset)!, null);
            var duration = TimeSpan.FromSeconds(Math.Clamp(parse.GetValue(seconds), 1, 60));
            var offloads = parse.GetValue(noOffload) ? TunOffloads.None : TunOffloads.All;
            var results = new Dictionary<string, GatewayBenchmarkResult>();
            await AnsiConsole.Status().StartAsync("measuring", async status =>
            {
                foreach (var path in (string[])["direct", "kernel", "natkit"])
                {
                    results[path] = await GatewayBenchmark.MeasureAsync(path, duration, policy, offloads,
                        parse.GetValue(realtime), s => status.Status(s), ct).ConfigureAwait(false);
                }
            }).ConfigureAwait(false);

            var (direct, kernel, natkit) = (results["direct"], results["kernel"], results["natkit"]);
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
                $"load average {File.ReadAllText("/proc/loadavg").Split(' ')[0]} on {Environment.ProcessorCount} cores; NatKit preset {parse.GetValue(preset)}, offloads {offloads}, realtime {parse.GetValue(realtime)}"));
            return 0;
        });
        return command;
    }

    private static string Gbit(double bps) => (bps / 1e9).ToString("0.00", CultureInfo.InvariantCulture);

    private static string K(double pps) => (pps / 1e3).ToString("0.0", CultureInfo.InvariantCulture);

    private static string Us(double us) => us.ToString("0", CultureInfo.InvariantCulture);

    private static string Ratio(double a, double b) => b <= 0 ? "-" : (a / b).ToString("0.00", CultureInfo.InvariantCulture) + "x";
}
