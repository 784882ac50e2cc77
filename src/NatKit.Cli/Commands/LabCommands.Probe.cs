using System.CommandLine;
using System.Diagnostics;
using NatKit.Lab;
using NatKit.Lab.Topology;
using NatKit.Nat;
using NatKit.Scenarios.Probe;
using NatKit.Stun.Discovery;
using Spectre.Console;

namespace NatKit.Cli.Commands;

/// <summary>`natkit lab probe`: NAT behaviour discovery behind each preset, or each host of a topology.</summary>
internal sealed partial class LabCommands
{
    private static Command Probe()
    {
        var cmd = new Command("probe",
            "Classify every NAT preset from the inside: NatKit's RFC 5780 discovery client against a lab STUN server.");
        var presets = new Option<string[]>("--preset")
        {
            Description = $"Probe only these presets (repeatable): {string.Join(", ", NatPresets.All.Select(p => p.Name))}.",
        };
        var seed = new Option<int?>("--seed") { Description = "Seed of each probe's lab (default 1, or the topology's)." };
        var noLifetime = new Option<bool>("--no-lifetime") { Description = "Skip the binding-lifetime search." };
        var pcap = new Option<string?>("--pcap") { Description = "Write each probe's LAN and internet pcaps into this folder." };
        var json = new Option<bool>("--json") { Description = "Print a JSON array of discovery records, each named by its preset (or host), instead of a table." };
        var topology = new Option<string?>("--topology")
        {
            Description = "Instead of the presets: probe from every host of this topology (file or built-in name) against its STUN server host.",
        };
        var server = new Option<string?>("--server")
        {
            Description = "With --topology: the host that runs the STUN server (default: the first host with two addresses).",
        };
        foreach (var o in new Option[] { presets, seed, noLifetime, pcap, json, topology, server })
        {
            cmd.Options.Add(o);
        }

        cmd.SetAction((parse, _) =>
        {
            if (parse.GetValue(topology) is { } topologyName)
            {
                var spec = LoadTopology(topologyName);
                return Task.FromResult(ProbeTopology(spec, parse.GetValue(server),
                    parse.GetValue(seed) ?? spec.Seed, !parse.GetValue(noLifetime), parse.GetValue(json)));
            }

            var names = parse.GetValue(presets) ?? [];
            var chosen = names.Length == 0
                ? NatPresets.All
                : names.Select(n => NatPresets.Find(n) ?? throw new CliException(
                    $"unknown preset '{n}'; known: {string.Join(", ", NatPresets.All.Select(p => p.Name))}.")).ToList();
            var options = new LabProbeOptions
            {
                Seed = parse.GetValue(seed) ?? 1,
                MeasureLifetime = !parse.GetValue(noLifetime),
                PcapDirectory = parse.GetValue(pcap),
            };
            WidenWhenRedirected();
            var wall = Stopwatch.StartNew();
            var results = LabProbe.ProbePresets(chosen, options);
            if (parse.GetValue(json))
            {
                CliJson.WriteRecords(results.Select(r => (r.Name, r.Found.ToJson())));

                return Task.FromResult(results.All(r => r.AllMatch) ? 0 : 1);
            }

            var table = new Table().Title("NAT presets classified from inside the lab (RFC 5780 discovery)");
            foreach (var c in new[] { "preset", "mapping", "filtering", "new ports", "hairpin", "port kept", "lifetime", "as policy", "virtual time" })
            {
                table.AddColumn(c);
            }

            foreach (var r in results)
            {
                table.AddRow(
                    Markup.Escape(r.Name),
                    Mark(NatBehavior.ShortName(r.Found.Mapping), r.MappingMatches),
                    Mark(NatBehavior.ShortName(r.Found.Filtering), r.FilteringMatches),
                    Mark(ProbeResult.Describe(r.Ports), r.PortAllocationMatches),
                    Mark(r.Found.Hairpinning switch { true => "yes", false => "no", null => "?" }, r.HairpinningMatches),
                    Mark(r.Found.PortPreserved switch { true => "yes", false => "no", null => "?" }, r.PortPreservationMatches),
                    Mark(Lifetime(r.Found), r.LifetimeMatches),
                    r.AllMatch ? "[green]yes[/]" : "[red]NO[/]",
                    Seconds(r.VirtualTime));
            }

            AnsiConsole.Write(table);
            var mismatches = results.Count(r => !r.AllMatch);
            AnsiConsole.MarkupLineInterpolated(
                $"[grey]Each row: a lab with a STUN server on two addresses and a client behind one NAT; 'as policy' says whether every value matches the preset's policy ({mismatches} mismatching). {results.Count} labs in {wall.Elapsed.TotalMilliseconds:0} ms of wall time.[/]");
            return Task.FromResult(mismatches == 0 ? 0 : 1);
        });
        return cmd;
    }

    private static int ProbeTopology(TopologySpec spec, string? serverName, int seed, bool lifetime, bool json)
    {
        var server = serverName is null
            ? spec.Hosts.FirstOrDefault(h => h.Addresses.Count >= 2)
            : spec.Hosts.FirstOrDefault(h => h.Name == serverName);
        if (server is null || server.Addresses.Count < 2)
        {
            throw new CliException(serverName is null
                ? $"{spec.Source} has no host with two addresses to run an RFC 5780 STUN server; give one (addresses: [a, b]) or name it with --server."
                : $"--server {serverName}: no such host in {spec.Source}, or it has fewer than two addresses.");
        }

        var clients = spec.Hosts.Where(h => h != server).ToList();
        var options = new LabProbeOptions { Seed = seed, MeasureLifetime = lifetime };
        WidenWhenRedirected();
        var wall = Stopwatch.StartNew();
        var found = new (NatBehavior Behavior, TimeSpan VirtualTime)[clients.Count];
        Parallel.For(0, clients.Count, i =>
        {
            var lab = spec.Build(seed);
            var b = LabProbe.Discover(lab, lab.Host(clients[i].Name), lab.Host(server.Name), options);
            found[i] = (b, lab.Now);
        });
        if (json)
        {
            CliJson.WriteRecords(found.Select((f, i) => (clients[i].Name, f.Behavior.ToJson())));

            return 0;
        }

        var table = new Table().Title($"RFC 5780 discovery from each host of {Markup.Escape(spec.Source)} against {Markup.Escape(server.Name)}");
        foreach (var c in new[] { "host", "mapped as", "mapping", "filtering", "hairpin", "port kept", "lifetime", "virtual time" })
        {
            table.AddColumn(c);
        }

        for (var i = 0; i < clients.Count; i++)
        {
            var b = found[i].Behavior;
            table.AddRow(
                Markup.Escape(clients[i].Name),
                Markup.Escape(b.MappedEndPoint?.ToString() ?? "unreachable"),
                NatBehavior.ShortName(b.Mapping),
                NatBehavior.ShortName(b.Filtering),
                b.Hairpinning switch { true => "yes", false => "no", null => "-" },
                b.PortPreserved switch { true => "yes", false => "no", null => "-" },
                Lifetime(b),
                Seconds(found[i].VirtualTime));
        }

        AnsiConsole.Write(table);
        AnsiConsole.MarkupLineInterpolated($"[grey]{clients.Count} labs in {wall.Elapsed.TotalMilliseconds:0} ms of wall time, seed {seed}.[/]");
        return 0;
    }

    /// <summary>Piped output defaults to 80 columns, which wraps the tables: give them room.</summary>
    private static void WidenWhenRedirected()
    {
        if (Console.IsOutputRedirected && AnsiConsole.Profile.Width < 120)
        {
            AnsiConsole.Profile.Width = 120;
        }
    }

    private static string Lifetime(NatBehavior b) => b.BindingLifetime is not { } t
        ? "-"
        : b.BindingLifetimeIsLowerBound ? $">= {Seconds(t)}" : $"~{Seconds(t)}";
}
