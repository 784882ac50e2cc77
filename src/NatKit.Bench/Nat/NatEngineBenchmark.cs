using System.Diagnostics;
using System.Globalization;
using NatKit.Nat;
using NatKit.Packets;

namespace NatKit.Bench.Nat;

/// <summary>One measure of the NAT engine: wall and process CPU time for <see cref="Operations"/> operations.</summary>
public sealed record NatBenchRow(string What, TimeSpan Wall, TimeSpan Cpu, long Operations, string Unit)
{
    /// <summary>Nanoseconds of wall time per operation.</summary>
    public double WallNanoseconds => Wall.TotalMilliseconds * 1e6 / Operations;

    /// <summary>Nanoseconds of CPU time per operation.</summary>
    public double CpuNanoseconds => Cpu.TotalMilliseconds * 1e6 / Operations;

    /// <summary>Operations per CPU second.</summary>
    public double PerCpuSecond => 1e9 / Math.Max(CpuNanoseconds, 0.001);

    /// <summary>For the memory row: GC heap growth per live flow.</summary>
    public double? HeapBytesPerFlow { get; init; }

    /// <summary>For the memory row: the flow table's arrays per live flow.</summary>
    public double? TableBytesPerFlow { get; init; }
}

/// <summary>
/// `natkit bench nat`: a quick measure of the NAT engine (established translation, new flows, expiry, bytes per
/// flow) reporting wall time and process CPU time per operation, so a loaded machine still gives a usable CPU
/// figure. BenchmarkDotNet suites in bench/NatKit.Benchmarks/Nat are the reference.
/// </summary>
public static class NatEngineBenchmark
{
    /// <summary>Runs every measure: <paramref name="packets"/> established packets, then <paramref name="flows"/>
    /// new flows, their expiry, and new flows again into grown tables.</summary>
    public static IReadOnlyList<NatBenchRow> Run(int flows, int packets)
    {
        var rows = new List<NatBenchRow>();
        Established(rows, packets);
        Flows(rows, flows);
        return rows;
    }

    private static NatEngine Engine(int maxFlows) => new(new NatConfig
    {
        Policy = NatPresets.RfcRecommended with { PortHoldDown = TimeSpan.Zero },
        InsidePrefixes = [Ipv4Prefix.Parse("10.0.0.0/8")],
        ExternalAddresses = Enumerable.Range(1, 32).Select(i => new Ipv4Address(203, 0, 113, (byte)i)).ToList(),
        MaxFlows = maxFlows,
    });

    private static (Ipv4Address, ushort) Inside(int i) => (new Ipv4Address(0x0A000002u + (uint)(i / 16)), (ushort)(1024 + (i % 16)));

    private static void Established(List<NatBenchRow> table, int count)
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

    private static void Flows(List<NatBenchRow> table, int count)
    {
        using (var warm = Engine(20_000)) Fill(warm, 20_000); // JIT warm
        GC.Collect();
        var before = GC.GetTotalMemory(true);
        var nat = Engine(count);
        var (wall, cpu) = Time(() => Fill(nat, count));
        Row(table, $"new UDP flows (to {count:N0}, tables growing)", wall, cpu, count, "flows/s");
        var after = GC.GetTotalMemory(true);
        var perFlow = (after - before) / (double)nat.SessionCount;
        table.Add(new NatBenchRow($"bytes per flow at {nat.SessionCount:N0} flows", TimeSpan.Zero, TimeSpan.Zero, nat.SessionCount, "bytes")
        {
            HeapBytesPerFlow = perFlow,
            TableBytesPerFlow = nat.TableBytes / (double)nat.SessionCount,
        });
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

    private static void Row(List<NatBenchRow> table, string what, TimeSpan wall, TimeSpan cpu, long ops, string unit) =>
        table.Add(new NatBenchRow(what, wall, cpu, ops, unit));

    private static (TimeSpan Wall, TimeSpan Cpu) Time(Action action)
    {
        var process = Process.GetCurrentProcess();
        var cpu0 = process.TotalProcessorTime;
        var started = Stopwatch.GetTimestamp();
        action();
        var wall = Stopwatch.GetElapsedTime(started);
        process.Refresh();
        return (wall, process.TotalProcessorTime - cpu0);
    }
}
