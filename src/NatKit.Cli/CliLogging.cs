using System.CommandLine;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;

namespace NatKit.Cli;

/// <summary>
/// `--log-level` and `--log-format` for the server verbs: Microsoft.Extensions.Logging's console logger on stdout,
/// one line per event, ISO-8601 UTC times. Text for people (<c>2026-12-07T14:03:11.482Z info: ...</c>), JSON for
/// log pipelines (one object per line: Timestamp, EventId, LogLevel, Category, Message, State).
/// </summary>
internal sealed class CliLogging
{
    private const string TimestampFormat = "yyyy-MM-dd'T'HH:mm:ss.fff'Z' ";

    public Option<string> Level { get; } = new("--log-level")
    {
        Description = "Least severe events logged: trace, debug, information, warning, error, critical or none.",
        DefaultValueFactory = _ => "information",
    };

    public Option<string> Format { get; } = new("--log-format")
    {
        Description = "text (one line per event) or json (one JSON object per line).",
        DefaultValueFactory = _ => "text",
    };

    public void AddTo(Command command)
    {
        ArgumentNullException.ThrowIfNull(command);
        command.Options.Add(Level);
        command.Options.Add(Format);
    }

    /// <summary>The logger factory the flags ask for; dispose it last, to flush what is queued.</summary>
    public ILoggerFactory Create(ParseResult parse) => Create(parse.GetValue(Level)!, parse.GetValue(Format)!);

    internal static ILoggerFactory Create(string levelText, string format)
    {
        var level = ParseLevel(levelText);
        var json = format switch
        {
            "text" => false,
            "json" => true,
            _ => throw new CliException($"--log-format {format}: use text or json."),
        };
        return LoggerFactory.Create(b =>
        {
            b.SetMinimumLevel(level);
            if (json)
            {
                b.AddJsonConsole(o =>
                {
                    o.TimestampFormat = TimestampFormat.TrimEnd();
                    o.UseUtcTimestamp = true;
                    o.JsonWriterOptions = new JsonWriterOptions { Indented = false };
                });
            }
            else
            {
                b.AddSimpleConsole(o =>
                {
                    o.SingleLine = true;
                    o.TimestampFormat = TimestampFormat;
                    o.UseUtcTimestamp = true;
                    o.ColorBehavior = CliOutput.Plain ? LoggerColorBehavior.Disabled : LoggerColorBehavior.Default;
                });
            }
        });
    }

    internal static LogLevel ParseLevel(string text) => text.ToLowerInvariant() switch
    {
        "trace" => LogLevel.Trace,
        "debug" => LogLevel.Debug,
        "information" or "info" => LogLevel.Information,
        "warning" or "warn" => LogLevel.Warning,
        "error" => LogLevel.Error,
        "critical" => LogLevel.Critical,
        "none" => LogLevel.None,
        _ => throw new CliException($"--log-level {text}: use trace, debug, information, warning, error, critical or none."),
    };
}
