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
        var parse = root.Parse(args);
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
                $"{string.Join(" ", parse.Errors.Select(e => e.Message.TrimEnd('.') + "."))} See '{command} --help'.");
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
            CliOutput.Error(e.Message);
            return UsageError;
        }
        catch (OperationCanceledException)
        {
            return 130;
        }
    }

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
