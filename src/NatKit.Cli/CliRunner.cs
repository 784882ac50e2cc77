using System.CommandLine;
using System.Runtime.InteropServices;

namespace NatKit.Cli;

/// <summary>
/// Runs the parsed command and turns the errors a user can cause (a bad flag value, a missing file, a port in
/// use, a malformed configuration) into one clear sentence and exit code 2, never a stack trace.
/// </summary>
internal static class CliRunner
{
    public const int UsageError = 2;
    public const int InternalError = 70;

    public static async Task<int> RunAsync(RootCommand root, string[] args)
    {
        CliOutput.Configure();
        ParseResult parse;
        try
        {
            (parse, _configFile, _fromConfig) = Parse(root, args);
        }
        catch (CliException e)
        {
            CliOutput.Error(e.Message);
            return UsageError;
        }

        _root = root;
        _arguments = args;
        if (parse.Errors.Count > 0)
        {
            // System.CommandLine would print every error and the whole help and exit 1: one sentence, exit 2.
            var names = new List<string>();
            for (var c = parse.CommandResult; c is not null; c = c.Parent as System.CommandLine.Parsing.CommandResult)
            {
                if (c.Command is not RootCommand) names.Insert(0, c.Command.Name);
            }

            var command = string.Join(' ', names.Prepend("natkit"));
            CliOutput.Error(
                $"{string.Join(" ", parse.Errors.Select(e => InUsersWords(e.Message).TrimEnd('.') + "."))} See '{command} --help'.");
            return UsageError;
        }

        // SIGINT and SIGTERM cancel the verb's token and nothing more: a server verb drains, prints its summary and
        // returns 0 (System.CommandLine's own handling would exit 130/143 after two seconds, summary or not). A
        // second signal while it drains ends the process the default way.
        using var stop = new CancellationTokenSource();
        void OnSignal(PosixSignalContext context)
        {
            context.Cancel = !stop.IsCancellationRequested;
            stop.Cancel();
        }

        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        try
        {
            // The default handler would print "Unhandled exception" and a stack trace: let user errors reach us.
            var configuration = new InvocationConfiguration
            {
                EnableDefaultExceptionHandler = false,
                ProcessTerminationTimeout = null,
            };
            return await parse.InvokeAsync(configuration, stop.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (IsUserError(e))
        {
            CliOutput.Error(FromConfig(e.Message));
            return UsageError;
        }
        catch (OperationCanceledException)
        {
            return 130;
        }
    }

    private static RootCommand? _root;
    private static string[] _arguments = [];
    private static string? _configFile;
    private static IReadOnlySet<string> _fromConfig = new HashSet<string>();

    /// <summary>The command line with --config's file folded in (<see cref="CliConfig"/>).</summary>
    private static (ParseResult Parse, string? File, IReadOnlySet<string> FromFile) Parse(RootCommand root, string[] args)
    {
        var parse = root.Parse(args);
        var (extra, file, fromFile) = CliConfig.Expand(parse);
        return extra.Length == 0 && file is null ? (parse, null, fromFile) : (root.Parse([.. args, .. extra]), file, fromFile);
    }

    /// <summary>Parses the command line and --config's file again, as they are now (for a reload on SIGHUP).</summary>
    public static ParseResult ParseAgain()
    {
        var root = _root ?? throw new InvalidOperationException("no command is running");
        var (parse, _, _) = Parse(root, _arguments);
        return parse.Errors.Count == 0
            ? parse
            : throw new CliException(FromConfig(InUsersWords(parse.Errors[0].Message)));
    }

    /// <summary>A message about a flag whose value came from --config's file says so.</summary>
    private static string FromConfig(string message) =>
        _configFile is not null && _fromConfig.Any(f => message.StartsWith(f + " ", StringComparison.Ordinal) ||
                                                         message.StartsWith(f + ":", StringComparison.Ordinal))
            ? $"--config {_configFile}: {message}"
            : message;

    /// <summary>Waits for SIGINT or SIGTERM (or <paramref name="ct"/>), then returns, so a server verb can stop
    /// gracefully and exit 0.</summary>
    public static async Task UntilStoppedAsync(CancellationToken ct)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        void OnSignal(PosixSignalContext context)
        {
            context.Cancel = true;
            stop.Cancel();
        }

        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        try
        {
            await Task.Delay(Timeout.Infinite, stop.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>System.CommandLine's "Cannot parse argument 'abc' for option '--seed' as expected type
    /// 'System.Nullable`1[System.Int32]'" as the user would say it: "--seed abc: expected a whole number".</summary>
    internal static string InUsersWords(string message)
    {
        var m = System.Text.RegularExpressions.Regex.Match(message,
            "^Cannot parse argument '(?<value>.*)' for (?:option|argument) '(?<name>[^']*)' as expected type '(?<type>[^']*)'");
        if (!m.Success)
        {
            return message;
        }

        var type = m.Groups["type"].Value;
        var inner = System.Text.RegularExpressions.Regex.Match(type, @"Nullable`1\[(.*)\]$");
        if (inner.Success)
        {
            type = inner.Groups[1].Value;
        }

        var expected = type switch
        {
            "System.Int32" or "System.Int64" or "System.UInt16" or "System.UInt32" or "System.Byte" => "a whole number",
            "System.Double" or "System.Single" or "System.Decimal" => "a number",
            "System.Boolean" => "true or false",
            "System.TimeSpan" => "a duration like 00:00:30",
            _ when type.Contains('.', StringComparison.Ordinal) => "a " + type[(type.LastIndexOf('.') + 1)..].ToLowerInvariant(),
            _ => type,
        };
        return $"{m.Groups["name"].Value} {m.Groups["value"].Value}: expected {expected}";
    }

    /// <summary>Errors that come from what the user asked for, not from a bug in NatKit.</summary>
    public static bool IsUserError(Exception e) => e is ArgumentException or FormatException or IOException
        or InvalidDataException or UnauthorizedAccessException or NotSupportedException or CliException;
}

/// <summary>Thrown by a verb to stop with one sentence for the user.</summary>
public sealed class CliException : Exception
{
    public CliException(string message)
        : base(message)
    {
    }

    public CliException()
    {
    }

    public CliException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
