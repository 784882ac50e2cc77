using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using NatKit.Lab;
using NatKit.Lab.Topology;
using NatKit.Nat;
using NatKit.Scenarios.Probe;
using NatKit.Scenarios.Reachability;
using NatKit.Stun.Discovery;
using Spectre.Console;

namespace NatKit.Cli.Commands;

/// <summary>`natkit lab run TOPOLOGY` and `natkit lab probe`: the in-memory lab from the command line.</summary>
internal sealed class LabCommands : IVerbGroup
{
    public Command Create()
    {
        var lab = new Command("lab", "The in-memory network: hosts and NAT routers in virtual time (docs/lab.md).");
        lab.Subcommands.Add(Run());
        lab.Subcommands.Add(Probe());
        return lab;
    }

    private static Command Run()
    {
        var cmd = new Command("run", "Build a topology, send UDP from every host to every other host, print what got through.");
        var topology = new Argument<string>("TOPOLOGY")
        {
            Description = $"A topology file (.yaml, .yml or .json), or a built-in name ({string.Join(", ", BuiltInTopologies.Names)}).",
            DefaultValueFactory = _ => "two-homes",
        };
        var pcap = new Option<string?>("--pcap") { Description = "Write one pcap per segment into this folder." };
        var seed = new Option<int?>("--seed") { Description = "Override the topology's seed." };
        var port = new Option<int>("--port") { Description = "UDP port every host binds.", DefaultValueFactory = _ => 5000 };
        var rounds = new Option<int>("--rounds") { Description = "Datagrams per sender and address.", DefaultValueFactory = _ => 3 };
        cmd.Arguments.Add(topology);
        foreach (var o in new Option[] { pcap, seed, port, rounds })
        {
            cmd.Options.Add(o);
        }

        cmd.SetAction((parse, _) =>
        {
            var spec = LoadTopology(parse.GetValue(topology)!);
            var p = parse.GetValue(port);
            if (p is < 1 or > 65535) throw new CliException($"--port {p} is not a port.");
            var r = parse.GetValue(rounds);
            if (r is < 1 or > 1000) throw new CliException($"--rounds {r} must be between 1 and 1000.");
            var network = spec.Build(parse.GetValue(seed));
            var captures = new List<Lab.Capture.PacketCapture>();
            var dir = parse.GetValue(pcap);
            if (dir is not null)
            {
                Directory.CreateDirectory(dir);
                foreach (var s in network.Segments)
                {
                    captures.Add(network.Capture(s, File.Create(Path.Combine(dir, $"{s.Name}.pcap"))));
                }
            }

            WidenWhenRedirected();
            var wall = Stopwatch.StartNew();
            IReadOnlyList<ReachabilityCell> cells;
            try
            {
                cells = UdpReachability.Run(network, p, r);
            }
            finally
            {
                captures.ForEach(c => c.Dispose());
            }

            PrintReachability(spec, cells);
            PrintRouters(network, spec);
            AnsiConsole.MarkupLineInterpolated(
                $"[grey]{network.Stats.ToString()}; {network.Now.TotalSeconds:0.###} s of virtual time in {wall.Elapsed.TotalMilliseconds:0} ms, seed {network.Seed}[/]");
            if (dir is not null)
            {
                AnsiConsole.MarkupLineInterpolated($"[grey]pcaps: {string.Join(", ", network.Segments.Select(s => Path.Combine(dir, s.Name + ".pcap")))}[/]");
            }

            return Task.FromResult(0);
        });
        return cmd;
    }

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

    internal static TopologySpec LoadTopology(string nameOrPath)
    {
        try
        {
            if (!File.Exists(nameOrPath) && BuiltInTopologies.Names.Contains(nameOrPath))
            {
                return BuiltInTopologies.Load(nameOrPath);
            }

            return TopologyLoader.LoadFile(nameOrPath);
        }
        catch (TopologyException e)
        {
            throw new CliException($"topology refused:{Environment.NewLine}{e.Message}", e);
        }
    }

    private static void PrintReachability(TopologySpec spec, IReadOnlyList<ReachabilityCell> cells)
    {
        var table = new Table().Title($"UDP reachability in {Markup.Escape(spec.Source)}");
        foreach (var c in new[] { "from", "to", "address", "got through", "seen as", "echo back" })
        {
            table.AddColumn(c);
        }

        foreach (var c in cells)
        {
            var through = c.Received > 0;
            table.AddRow(
                Markup.Escape(c.From),
                Markup.Escape(c.To),
                c.ToAddress.ToString(),
                through ? $"[green]{c.Received}/{c.Sent}[/]" : $"[red]0/{c.Sent}[/]",
                c.SeenAs?.ToString() ?? "",
                c.Echoed > 0 ? $"[green]{c.Echoed}[/]" : through ? "[red]0[/]" : "");
        }

        AnsiConsole.Write(table);
    }

    private static void PrintRouters(VirtualNetwork network, TopologySpec spec)
    {
        if (network.Routers.Count == 0) return;
        var table = new Table().Title("NAT routers");
        foreach (var c in new[] { "router", "preset", "outside", "mappings", "translated out/in", "hairpinned", "dropped (why)" })
        {
            table.AddColumn(c);
        }

        foreach (var r in network.Routers)
        {
            var counters = r.Engine.Counters;
            var why = string.Join(", ", Enum.GetValues<NatDropReason>()
                .Where(reason => reason != NatDropReason.None && r.Engine.DropCount(reason) > 0)
                .Select(reason => $"{reason} {r.Engine.DropCount(reason)}"));
            table.AddRow(
                Markup.Escape(r.Name),
                Markup.Escape(spec.Routers.First(x => x.Name == r.Name).PresetName),
                string.Join(", ", r.OutsideAddresses),
                counters.MappingsCreated.ToString(CultureInfo.InvariantCulture),
                $"{counters.PacketsOutbound}/{counters.PacketsInbound}",
                counters.Hairpinned.ToString(CultureInfo.InvariantCulture),
                $"{counters.Dropped}{(why.Length > 0 ? $" ({why})" : "")}");
        }

        AnsiConsole.Write(table);
    }

    private static string Mark(string text, bool matches) =>
        matches ? $"[green]{Markup.Escape(text)}[/]" : $"[red]{Markup.Escape(text)}[/]";

    private static string Lifetime(NatBehavior b) => b.BindingLifetime is not { } t
        ? "-"
        : b.BindingLifetimeIsLowerBound ? $">= {Seconds(t)}" : $"~{Seconds(t)}";

    private static string Seconds(TimeSpan t) => t.TotalSeconds >= 120
        ? string.Create(CultureInfo.InvariantCulture, $"{t.TotalMinutes:0.#} min")
        : string.Create(CultureInfo.InvariantCulture, $"{t.TotalSeconds:0.#} s");
}
