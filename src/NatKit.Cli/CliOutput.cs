using Spectre.Console;
using Spectre.Console.Rendering;

namespace NatKit.Cli;

/// <summary>
/// How every verb writes to the console. On a terminal: Spectre.Console's colours and tables. When stdout is
/// not a terminal (a pipe, a file, a test) or NO_COLOR is set (https://no-color.org): no ANSI escapes at all, and
/// when it is not a terminal no wrapping either, so `grep` and scripts see each line whole. Values (addresses,
/// names, messages) never reach markup unescaped: IPv6's brackets are markup syntax.
/// </summary>
internal static class CliOutput
{
    /// <summary>The width piped output pretends to have: wide enough that no line of ours is hard-wrapped.</summary>
    public const int PlainWidth = 4096;

    /// <summary>True when colours and styles are off (NO_COLOR, or stdout not a terminal).</summary>
    public static bool Plain { get; private set; }

    /// <summary>Sets up <see cref="AnsiConsole.Console"/> for this process; called once by Program.</summary>
    public static void Configure()
    {
        var noColor = !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("NO_COLOR"));
        var redirected = Console.IsOutputRedirected;
        Plain = noColor || redirected;
        if (!Plain)
        {
            return;
        }

        AnsiConsole.Console = Create(Console.Out, redirected);
    }

    /// <summary>A console without escapes over <paramref name="writer"/>; unwrapped unless it is a terminal.</summary>
    internal static IAnsiConsole Create(TextWriter writer, bool unwrapped)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
            Out = new AnsiConsoleOutput(writer),
        });
        if (unwrapped)
        {
            console.Profile.Width = PlainWidth;
        }

        return console;
    }

    /// <summary>One sentence for the user on stderr, prefixed "natkit:" (red on a colour terminal).</summary>
    public static void Error(string message)
    {
        var colour = !Console.IsErrorRedirected && string.IsNullOrEmpty(Environment.GetEnvironmentVariable("NO_COLOR"));
        Console.Error.WriteLine(colour ? $"\u001b[31mnatkit:\u001b[0m {message}" : $"natkit: {message}");
    }

    /// <summary>A table row of values shown as they are (never read as markup).</summary>
    public static Table AddTextRow(this Table table, params string?[] cells)
    {
        ArgumentNullException.ThrowIfNull(table);
        ArgumentNullException.ThrowIfNull(cells);
        var row = new IRenderable[cells.Length];
        for (var i = 0; i < cells.Length; i++)
        {
            row[i] = new Text(cells[i] ?? "");
        }

        return table.AddRow(row);
    }
}
