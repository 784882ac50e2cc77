using System.CommandLine;
using NatKit.Bench.Nat;
using Spectre.Console;

namespace NatKit.Cli.Commands;

/// <summary>
/// `natkit bench nat`: a quick measure of the NAT engine (established translation, new flows, expiry, bytes per
/// flow) reporting wall time and process CPU time per operation, so a loaded machine still gives a usable CPU
/// figure (NatKit.Bench's NatEngineBenchmark). BenchmarkDotNet suites in bench/NatKit.Benchmarks/Nat are the reference.
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
        var json = new Option<bool>("--json") { Description = "One JSON array of named records (the one --json shape) instead of a table." };
        command.Options.Add(json);
        command.SetAction(parse =>
        {
            var n = parse.GetValue(flows);
            var p = parse.GetValue(packets);
            if (n is < 1000 or > 16_000_000) throw new CliException("--flows must be between 1000 and 16000000.");
            if (p < 1000) throw new CliException("--packets must be at least 1000.");
            var rows = NatEngineBenchmark.Run(n, p);
            if (parse.GetValue(json))
            {
                CliJson.WriteRecords(rows.Select(r => BenchJson.Record(r.What, r.HeapBytesPerFlow is { } heap
                    ? new { liveFlows = r.Operations, heapBytesPerFlow = Math.Round(heap, 1), tableBytesPerFlow = Math.Round(r.TableBytesPerFlow ?? 0, 1) }
                    : new { wallNsPerOp = Math.Round(r.WallNanoseconds, 1), cpuNsPerOp = Math.Round(r.CpuNanoseconds, 1), perCpuSecond = Math.Round(r.PerCpuSecond), unit = r.Unit } as object)));
                return 0;
            }

            var table = new Table().AddColumn("Measure").AddColumn("Wall").AddColumn("CPU").AddColumn("Rate (CPU)");
            foreach (var r in rows)
            {
                if (r.HeapBytesPerFlow is { } heap)
                {
                    table.AddRow(Markup.Escape(r.What), $"{heap:F1} B (GC heap growth)", $"{r.TableBytesPerFlow:F1} B (flow table arrays)", "target <= 128");
                }
                else
                {
                    table.AddRow(Markup.Escape(r.What), $"{r.WallNanoseconds:F1} ns/op", $"{r.CpuNanoseconds:F1} ns/op", $"{r.PerCpuSecond:N0} {r.Unit}");
                }
            }

            AnsiConsole.Write(table);
            return 0;
        });
        return command;
    }
}
