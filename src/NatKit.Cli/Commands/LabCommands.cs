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
internal sealed partial class LabCommands : IVerbGroup
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
            // one line, as every refusal: the loader lists one problem a line
            var problems = e.Message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            throw new CliException($"topology refused: {string.Join("; ", problems)}", e);
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

    private static string Seconds(TimeSpan t) => t.TotalSeconds >= 120
        ? string.Create(CultureInfo.InvariantCulture, $"{t.TotalMinutes:0.#} min")
        : string.Create(CultureInfo.InvariantCulture, $"{t.TotalSeconds:0.#} s");
}
