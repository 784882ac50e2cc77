using System.CommandLine;
using System.Globalization;
using NatKit.Lab;
using NatKit.Lab.Topology;
using NatKit.Scenarios.Matrix;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace NatKit.Cli.Commands;

/// <summary>`natkit lab matrix`: the traversal between two lab hosts for every pair of NAT types (docs/traversal.md).</summary>
internal sealed class LabMatrixCommands : IVerbGroup
{
    /// <summary>The one sentence when no traversal runner is plugged into <see cref="MatrixRunners.Default"/>.</summary>
    public const string NoRunner =
        "lab matrix has no traversal to run yet: the grid appears once NatKit's traversal node is plugged into MatrixRunners.Default.";

    public string? Parent => "lab";

    public Command Create()
    {
        var cmd = new Command("matrix",
            "Connect two lab hosts through every pair of NAT types with NatKit's traversal; print the grid (path, method, time to connect).");
        var html = new Option<string?>("--html") { Description = "Also write the grid as one self-contained HTML page to this file." };
        var json = new Option<string?>("--json") { Description = "Also write every cell to this file as JSON: one array of records named \"A x B\"." };
        var noRelay = new Option<bool>("--no-relay") { Description = "No TURN server in the labs: shows which cells fail without a relay." };
        var loss = new Option<string?>("--loss") { Description = "Loss on every link: a fraction (0.02) or a percentage (2%)." };
        var latency = new Option<string?>("--latency")
        {
            Description = "Latency of every link (25ms, 0.1s); a datagram crosses the sender's link and the receiver's at each hop. Default 5ms.",
        };
        var seed = new Option<string?>("--seed") { Description = "Seed of the run (default 1); each cell's lab seed derives from it, so a run repeats exactly." };
        var types = new Option<string[]>("--types")
        {
            Description = $"Only these NAT types (comma-separated or repeated): {string.Join(", ", MatrixTypes.All.Select(t => t.Name))}, or any lab preset.",
            AllowMultipleArgumentsPerToken = true,
        };
        var netns = new Option<bool>("--netns")
        {
            Description = $"Run the cells on real Linux NATs, one at a time, as network namespaces (root), each next to the in-memory lab's result; default types: {string.Join(", ", NetnsMatrix.DefaultTypes.Select(t => t.Name))}.",
        };
        var portmap = new Option<bool>("--portmap")
        {
            Description = "Routers serve the port mapping protocols their presets offer (NAT-PMP, PCP) and the peers use them: relay cells behind such routers turn direct (method port-mapped).",
        };
        foreach (var o in new Option[] { html, json, noRelay, loss, latency, seed, types, netns, portmap })
        {
            cmd.Options.Add(o);
        }

        cmd.SetAction(async (parse, ct) =>
        {
            var options = Options(parse.GetValue(types), parse.GetValue(seed), parse.GetValue(loss), parse.GetValue(latency),
                parse.GetValue(noRelay), parse.GetValue(netns)) with { PortMapping = parse.GetValue(portmap) };

            var htmlFile = Writable(parse.GetValue(html), "--html");
            var jsonFile = Writable(parse.GetValue(json), "--json");
            if (parse.GetValue(netns))
            {
                if (htmlFile is not null || jsonFile is not null)
                {
                    throw new CliException("--html and --json write the in-memory grid; with --netns the result is one line per cell.");
                }

                if (!Environment.IsPrivilegedProcess)
                {
                    throw new CliException("--netns needs root: it builds network namespaces.");
                }

                // the in-memory default latency only makes virtual time pass: real links stay clean unless asked
                var impaired = parse.GetValue(latency) is not null || parse.GetValue(loss) is not null;
                return await RunNetnsAsync(options, new NetnsMatrixOptions { Link = impaired ? NetnsMatrixOptions.From(options.Link) : null }, ct);
            }

            if (MatrixRunners.Default is not { } runner)
            {
                AnsiConsole.MarkupLineInterpolated($"[red]natkit:[/] {NoRunner}");
                return 1;
            }

            var result = Run(options, runner);
            AnsiConsole.Write(Grid(result));
            if (result.Cells.Any(c => c.SameLan))
            {
                AnsiConsole.Write(SameLan(result));
            }

            AnsiConsole.MarkupLine(Markup.Escape(Summary(result)));
            if (htmlFile is not null) File.WriteAllText(htmlFile, MatrixReport.ToHtml(result));
            if (jsonFile is not null) File.WriteAllText(jsonFile, CliJson.Format(MatrixReport.Records(result)));
            return result.ExitCode;
        });
        return cmd;
    }

    /// <summary>`--netns`: a line per cell, the real result next to the lab's; exit 0 when every cell agrees with
    /// the lab and none failed with a relay configured.</summary>
    private static async Task<int> RunNetnsAsync(MatrixOptions options, NetnsMatrixOptions netns, CancellationToken ct)
    {
        if (MatrixRunners.Default is not { } lab)
        {
            AnsiConsole.MarkupLineInterpolated($"[red]natkit:[/] {NoRunner}");
            return 1;
        }

        // the agents run as processes of their own in the peers' namespaces, as a real deployment's would
        string[] self = [.. LabNetnsCommands.SelfCommand()];
        var runner = MatrixAgent.ProcessRunner(self[0], self[1..]);
        var results = await NetnsMatrix.RunAsync(options, runner, lab, netns, r => AnsiConsole.MarkupLine(NetnsLine(r)), ct);
        var disagree = results.Count(r => !r.AgreesWithLab);
        var failed = options.Relay ? results.Count(r => r.Outcome.Path == MatrixPath.Failed) : 0;
        AnsiConsole.MarkupLine(Markup.Escape(string.Create(CultureInfo.InvariantCulture,
            $"{results.Count} namespace cells: {disagree} disagree with the in-memory lab, {failed} failed with a relay configured.")));
        return disagree == 0 && failed == 0 ? 0 : 1;
    }

    /// <summary>"kernel-random x open: direct (birthday) in 812 ms; lab: direct; agrees".</summary>
    internal static string NetnsLine(NetnsCellResult r)
    {
        var o = r.Outcome;
        var line = $"{Markup.Escape($"{r.A.Name} x {r.B.Name}")}: [{Colour(o.Path)}]{MatrixReport.Name(o.Path)}[/]";
        if (o.Method is { } m) line += Markup.Escape($" ({MatrixReport.Name(m)})");
        if (o.ConnectTime is { } t) line += Markup.Escape($" in {MatrixReport.Milliseconds(t)}");
        line += r.Lab is { } lab ? $"; lab: {MatrixReport.Name(lab.Path)}" : "; lab: not run";
        line += r.AgreesWithLab ? "; [green]agrees[/]" : "; [red bold]disagrees[/]";
        if (o.Detail is { } d && o.Path == MatrixPath.Failed) line += Markup.Escape($" ({d})");
        return line;
    }

    /// <summary>The run the flags ask for; a bad flag is one sentence naming it.</summary>
    internal static MatrixOptions Options(string[]? types, string? seed, string? loss, string? latency, bool noRelay,
        bool netns = false)
    {
        var chosen = new List<MatrixType>();
        foreach (var name in (types ?? []).SelectMany(t => t.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)))
        {
            var t = MatrixTypes.Find(name) ?? throw new CliException(
                $"--types: unknown NAT type '{name}'; known: {string.Join(", ", MatrixTypes.Names)}.");
            if (!chosen.Any(c => c.Name == t.Name)) chosen.Add(t);
        }

        if (types is { Length: > 0 } && chosen.Count == 0)
        {
            throw new CliException("--types: no NAT type named.");
        }

        var runSeed = 1;
        if (seed is not null && !int.TryParse(seed, NumberStyles.Integer, CultureInfo.InvariantCulture, out runSeed))
        {
            throw new CliException($"--seed '{seed}' is not a whole number.");
        }

        var link = new MatrixLabOptions().Link;
        if (latency is not null)
        {
            if (!LabDuration.TryParse(latency, out var l) || l > TimeSpan.FromSeconds(10))
            {
                throw new CliException($"--latency '{latency}' is not a duration from 0 to 10s with a unit (25ms, 0.1s).");
            }

            link = link with { Latency = l };
        }

        if (loss is not null)
        {
            var text = loss.Trim();
            var percent = text.EndsWith('%');
            if (!double.TryParse(percent ? text[..^1] : text, NumberStyles.Float, CultureInfo.InvariantCulture, out var p) ||
                double.IsNaN(p) || (percent ? p / 100 : p) is < 0 or >= 1)
            {
                throw new CliException($"--loss '{loss}' is not a loss from 0 to below 1 (0.02) or from 0% to below 100% (2%).");
            }

            link = link with { Loss = percent ? p / 100 : p };
        }

        return new MatrixOptions
        {
            Types = chosen.Count > 0 ? chosen : netns ? NetnsMatrix.DefaultTypes : MatrixTypes.All,
            Seed = runSeed,
            Link = link,
            Relay = !noRelay,
        };
    }

    /// <summary>A file the run will write, checked before the run so a typo does not cost the whole grid.</summary>
    private static string? Writable(string? file, string flag)
    {
        if (file is null) return null;
        var dir = Path.GetDirectoryName(Path.GetFullPath(file));
        if (string.IsNullOrWhiteSpace(file) || Directory.Exists(file) || (dir is not null && !Directory.Exists(dir)))
        {
            throw new CliException($"{flag} '{file}' is not a file in an existing folder.");
        }

        return file;
    }

    /// <summary>The cells with a progress bar (each cell ticks it as it finishes, from its lab's thread).</summary>
    private static MatrixResult Run(MatrixOptions options, MatrixCellRunner runner)
    {
        var count = TraversalMatrix.Cells(options.Types).Count;
        MatrixResult? result = null;
        AnsiConsole.Progress()
            .AutoClear(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask($"{count} cells", maxValue: count);
                result = TraversalMatrix.Run(options, runner, _ => task.Increment(1));
            });
        return result!;
    }

    /// <summary>Spectre colour of a path.</summary>
    internal static string Colour(MatrixPath path) => path switch
    {
        MatrixPath.Direct => "green",
        MatrixPath.Hairpin => "aqua",
        MatrixPath.Relay => "yellow",
        _ => "red",
    };

    /// <summary>One cell: path (coloured), method, virtual connect time; "≠ oracle" when the path is not the one
    /// the knobs imply.</summary>
    internal static string CellMarkup(MatrixCellResult c)
    {
        var o = c.Outcome;
        var lines = new List<string> { $"[{Colour(o.Path)}]{MatrixReport.Name(o.Path)}[/]" };
        if (o.Method is { } m && o.Path != MatrixPath.Relay) lines.Add(Markup.Escape(MatrixReport.Name(m)));
        if (o.ConnectTime is { } t) lines.Add(Markup.Escape(MatrixReport.Milliseconds(t)));
        if (!c.Agrees) lines.Add($"[red bold]≠ oracle: {MatrixReport.Name(c.Expected.Path)}[/]");
        return string.Join('\n', lines);
    }

    /// <summary>The A x B grid: rows connect to columns.</summary>
    internal static Table Grid(MatrixResult result)
    {
        var grid = result.GridTypes;
        var table = new Table().Title("NatKit traversal matrix (rows connect to columns; virtual time to connect)");
        table.AddColumn(new TableColumn("A \\ B"));
        foreach (var b in grid)
        {
            table.AddColumn(new TableColumn(Markup.Escape(b.Name)).Centered());
        }

        foreach (var a in grid)
        {
            var row = new List<IRenderable> { new Markup($"[bold]{Markup.Escape(a.Name)}[/]") };
            foreach (var b in grid)
            {
                row.Add(result.Cell(a.Name, b.Name) is { } c ? new Markup(CellMarkup(c)).Centered() : new Text(""));
            }

            table.AddRow(row);
        }

        return table;
    }

    /// <summary>The same-LAN cells, one column each.</summary>
    internal static Table SameLan(MatrixResult result)
    {
        var cells = result.Cells.Where(c => c.SameLan).ToList();
        var table = new Table().Title("Two hosts on one LAN behind one NAT");
        foreach (var c in cells)
        {
            table.AddColumn(new TableColumn(Markup.Escape(c.A.Name)).Centered());
        }

        table.AddRow(cells.Select(c => (IRenderable)new Markup(CellMarkup(c)).Centered()));
        return table;
    }

    /// <summary>One line: cells, wall time, link, relay, disagreements.</summary>
    internal static string Summary(MatrixResult result)
    {
        var o = result.Options;
        var failed = result.Cells.Count(c => c.Path == MatrixPath.Failed);
        return string.Create(CultureInfo.InvariantCulture,
            $"{result.Cells.Count} cells in {result.WallTime.TotalSeconds:0.0} s of wall time (seed {o.Seed}; every link {MatrixReport.Milliseconds(o.Link.Latency)}, {o.Link.Loss * 100:0.##}% loss; relay {(o.Relay ? "on" : "off")}): {failed} failed, {result.Disagreements} disagree with the oracle.");
    }
}
