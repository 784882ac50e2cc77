using System.CommandLine;
using Spectre.Console;

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
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            // A flag that does not parse or does not exist is a usage error like any other: one sentence that
            // names it, exit code 2 (System.CommandLine's own handling prints the whole help and returns 1). The
            // first error only: the rest usually follow from it (an unknown flag's value is an unknown argument).
            AnsiConsole.MarkupLineInterpolated($"[red]natkit:[/] {parse.Errors[0].Message} (see --help)");

            return UsageError;
        }

        try
        {
            // The default handler would print "Unhandled exception" and a stack trace: let user errors reach us.
            return await parse.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false }).ConfigureAwait(false);
        }
        catch (Exception e) when (IsUserError(e))
        {
            AnsiConsole.MarkupLineInterpolated($"[red]natkit:[/] {e.Message}");
            return UsageError;
        }
        catch (OperationCanceledException)
        {
            return 130;
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
