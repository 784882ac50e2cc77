using System.CommandLine;
using System.Diagnostics;
using NatKit.Nat;
using NatKit.Packets;
using Spectre.Console;

namespace NatKit.Cli.Commands;

/// <summary>
/// `natkit bench nat`: a quick measure of the NAT engine (established translation, new flows, expiry, bytes per
/// flow) reporting wall time and process CPU time per operation, so a loaded machine still gives a usable CPU
/// figure. BenchmarkDotNet suites in bench/NatKit.Benchmarks/Nat are the reference.
/// </summary>
internal sealed class NatBenchCommands : IVerbGroup
{
    public string? Parent => "bench";

    public Command Create()
    {
        var flows = new Option<int>("--flows") { Description = "Live flows for the memory and expiry runs.", DefaultValueFactory = _ => 1_000_000 };
        var packets = new Option<int>("--packets") { Description = "Packets for the established-flow run.", DefaultValueFactory = _ => 20_000_000 };
        var command = new Command("nat", "Measure the NAT engine: packets/s, new flows/s, expiry, bytes per flow.");
        command.Options.Add(flows);
        command.Options.Add(packets);
        command.SetAction(parse =>
        {
            var n = parse.GetValue(flows);
            var p = parse.GetValue(packets);
            if (n is < 1000 or > 16_000_000) throw new CliException("--flows must be between 1000 and 16000000.");
            if (p < 1000) throw new CliException("--packets must be at least 1000.");
            var table = new Table().AddColumn("Measure").AddColumn("Wall").AddColumn("CPU").AddColumn("Rate (CPU)");
            Established(table, p);
            Flows(table, n);
            AnsiConsole.Write(table);
            return 0;
        });
        return command;
    }

    private static NatEngine Engine(int maxFlows) => new(new NatConfig
    {
        Policy = NatPresets.RfcRecommended with { PortHoldDown = TimeSpan.Zero },
        InsidePrefixes = [Ipv4Prefix.Parse("10.0.0.0/8")],
        ExternalAddresses = Enumerable.Range(1, 32).Select(i => new Ipv4Address(203, 0, 113, (byte)i)).ToList(),
        MaxFlows = maxFlows,
    });

    private static (Ipv4Address, ushort) Inside(int i) => (new Ipv4Address(0x0A000002u + (uint)(i / 16)), (ushort)(1024 + (i % 16)));

    private static void Established(Table table, int count)
    {
        using var nat = Engine(4096);
        const int flows = 1024;
        var templates = new byte[flows][];
        for (var i = 0; i < flows; i++)
        {
            var (a, port) = Inside(i);
            templates[i] = new byte[92];
            PacketBuilder.WriteIpv4Udp(templates[i], new Ipv4Header(a, new Ipv4Address(198, 51, 100, 1)), port, 443, new byte[64]);
            var first = (byte[])templates[i].Clone();
            var len = first.Length;
            nat.Process(first, ref len, NatDirection.Outbound, 0, null);
        }

        var work = new byte[128];
        void Run(int n)
        {
            for (var i = 0; i < n; i++)
            {
                var t = templates[i & (flows - 1)];
                t.CopyTo(work, 0);
                var len = t.Length;
                nat.Process(work, ref len, NatDirection.Outbound, i >> 16, null);
            }
        }

        Run(200_000); // JIT and caches warm
        var (wall, cpu) = Time(() => Run(count));
        Row(table, $"established UDP outbound ({count:N0} packets)", wall, cpu, count, "packets/s");
    }

    private static void Flows(Table table, int count)
    {
        using (var warm = Engine(20_000)) Fill(warm, 20_000); // JIT warm
        GC.Collect();
        var before = GC.GetTotalMemory(true);
        var nat = Engine(count);
        var (wall, cpu) = Time(() => Fill(nat, count));
        Row(table, $"new UDP flows (to {count:N0}, tables growing)", wall, cpu, count, "flows/s");
        var after = GC.GetTotalMemory(true);
        var perFlow = (after - before) / (double)nat.SessionCount;
        table.AddRow($"bytes per flow at {nat.SessionCount:N0} flows", $"{perFlow:F1} B (GC heap growth)", $"{nat.TableBytes / (double)nat.SessionCount:F1} B (flow table arrays)", "target <= 128");
        var live = nat.SessionCount;
        (wall, cpu) = Time(() => nat.Tick(301_000, null));
        Row(table, $"expire {live:N0} idle flows (timer wheel)", wall, cpu, live, "flows/s");
        (wall, cpu) = Time(() => Fill(nat, count, 302_000));
        Row(table, $"new UDP flows (to {count:N0}, tables already grown)", wall, cpu, count, "flows/s");
        nat.Dispose();
    }

    private static void Fill(NatEngine nat, int count, long now = 0)
    {
        var buffer = new byte[64];
        var remote = new Ipv4Address(198, 51, 100, 1);
        for (var i = 0; i < count; i++)
        {
            var (a, port) = Inside(i);
            var len = PacketBuilder.WriteIpv4Udp(buffer, new Ipv4Header(a, remote), port, 443, default);
            nat.Process(buffer, ref len, NatDirection.Outbound, now, null);
        }
    }

    private static void Row(Table table, string what, TimeSpan wall, TimeSpan cpu, long ops, string unit)
    {
        var wallNs = wall.TotalMilliseconds * 1e6 / ops;
        var cpuNs = cpu.TotalMilliseconds * 1e6 / ops;
        table.AddRow(Markup.Escape(what), $"{wallNs:F1} ns/op", $"{cpuNs:F1} ns/op", $"{1e9 / Math.Max(cpuNs, 0.001):N0} {unit}");
    }

    private static (TimeSpan Wall, TimeSpan Cpu) Time(Action action)
    {
        var process = Process.GetCurrentProcess();
        var cpu0 = process.TotalProcessorTime;
        var sw = Stopwatch.StartNew();
        action();
        sw.Stop();
        process.Refresh();
        return (sw.Elapsed, process.TotalProcessorTime - cpu0);
    }
}
