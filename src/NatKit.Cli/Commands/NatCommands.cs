using System.CommandLine;
using NatKit.Nat;
using Spectre.Console;

namespace NatKit.Cli.Commands;

/// <summary>`natkit nat presets` and `natkit nat explain PRESET`: what each named NAT behaviour means.</summary>
internal sealed class NatCommands : IVerbGroup
{
    public Command Create()
    {
        var nat = new Command("nat", "The userspace NAT44 engine: presets and their RFC 4787/5382/5508/6888 knobs.");

        var markdown = new Option<bool>("--markdown") { Description = "Print a Markdown table (as in docs/nat.md)." };
        var presets = new Command("presets", "A table of every preset and its knob values.");
        presets.Options.Add(markdown);
        presets.SetAction(parse =>
        {
            if (parse.GetValue(markdown))
            {
                Console.Out.Write(MarkdownTable(NatPresets.All));
                return 0;
            }

            // Ten presets across need room: piped output has no terminal width, so give it one.
            if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = Math.Max(AnsiConsole.Profile.Width, 200);
            AnsiConsole.Write(PresetTable(NatPresets.All));
            return 0;
        });
        nat.Subcommands.Add(presets);

        var name = new Argument<string>("preset") { Description = "A preset name (see `natkit nat presets`)." };
        var explain = new Command("explain", "What a preset does, knob by knob, with the RFC requirement each models.");
        explain.Arguments.Add(name);
        explain.SetAction(parse =>
        {
            var wanted = parse.GetValue(name) ?? "";
            var preset = NatPresets.Find(wanted)
                ?? throw new CliException($"unknown preset '{wanted}'; known: {string.Join(", ", NatPresets.All.Select(p => p.Name))}.");
            AnsiConsole.MarkupLineInterpolated($"[bold]{preset.Name}[/]: {preset.Summary}");
            AnsiConsole.WriteLine();
            AnsiConsole.WriteLine(preset.Explanation);
            AnsiConsole.WriteLine();
            var table = new Table().AddColumn("Knob").AddColumn("Value").AddColumn("Models");
            foreach (var k in NatKnobs.Describe(preset.Policy))
            {
                table.AddRow(Markup.Escape(k.Name), Markup.Escape(k.Value), Markup.Escape(k.Requirement));
            }

            AnsiConsole.Write(table);
            return 0;
        });
        nat.Subcommands.Add(explain);
        return nat;
    }

    /// <summary>The same table in Markdown, knobs down with the requirement each models.</summary>
    internal static string MarkdownTable(IReadOnlyList<NatPreset> presets)
    {
        var knobs = presets.Select(p => NatKnobs.Describe(p.Policy)).ToList();
        var sb = new System.Text.StringBuilder();
        sb.Append("| Knob (models) | ").AppendJoin(" | ", presets.Select(p => $"`{p.Name}`")).AppendLine(" |");
        sb.Append("|---|").AppendJoin("", presets.Select(_ => "---|")).AppendLine();
        for (var row = 0; row < knobs[0].Count; row++)
        {
            sb.Append("| ").Append(knobs[0][row].Name).Append(" (").Append(knobs[0][row].Requirement).Append(") | ")
                .AppendJoin(" | ", knobs.Select(k => k[row].Value)).AppendLine(" |");
        }

        return sb.ToString();
    }

    /// <summary>Knobs down, presets across.</summary>
    internal static Table PresetTable(IReadOnlyList<NatPreset> presets)
    {
        var table = new Table().AddColumn("Knob");
        foreach (var p in presets) table.AddColumn(Markup.Escape(p.Name));
        var knobs = presets.Select(p => NatKnobs.Describe(p.Policy)).ToList();
        for (var row = 0; row < knobs[0].Count; row++)
        {
            var cells = new List<string> { Markup.Escape(knobs[0][row].Name) };
            cells.AddRange(knobs.Select(k => Markup.Escape(k[row].Value)));
            table.AddRow(cells.ToArray());
        }

        return table;
    }
}
