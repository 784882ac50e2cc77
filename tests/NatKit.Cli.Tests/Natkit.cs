using System.Text.RegularExpressions;

namespace NatKit.Cli.Tests;

/// <summary>`natkit` run as a user runs it (dotnet natkit.dll, output piped): to completion, or as a server the
/// test stops with a signal.</summary>
internal static partial class Natkit
{
    public static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    public const int SigHup = 1;
    public const int SigInt = 2;
    public const int SigTerm = 15;

    public static string Dll => Path.Combine(AppContext.BaseDirectory, "natkit.dll");

    /// <summary>Runs one command to its end.</summary>
    public static Task<(int ExitCode, string Output, string Errors)> RunAsync(params string[] arguments) =>
        ExternalProcess.RunAsync("dotnet", [Dll, .. arguments], Deadline);

    /// <summary>Starts a server verb and returns once <paramref name="ready"/> is printed.</summary>
    public static Task<ExternalProcess> StartAsync(string ready, params string[] arguments) =>
        StartAsync(ready, null, arguments);

    /// <summary>Starts a server verb with extra environment variables and returns once <paramref name="ready"/>
    /// is printed.</summary>
    public static async Task<ExternalProcess> StartAsync(string ready, IReadOnlyDictionary<string, string>? environment,
        params string[] arguments)
    {
        var p = ExternalProcess.Start("dotnet", [Dll, .. arguments], environment: environment);
        try
        {
            await p.WaitForOutputAsync(ready, Deadline);
            return p;
        }
        catch
        {
            await p.DisposeAsync();
            throw;
        }
    }

    /// <summary>The checkout the tests were built from (the folder holding NatKit.slnx).</summary>
    public static string RepositoryRoot
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "NatKit.slnx")))
                {
                    return dir.FullName;
                }
            }

            throw new InvalidOperationException("no NatKit.slnx above " + AppContext.BaseDirectory);
        }
    }

    /// <summary>Sends SIGTERM and returns the exit code.</summary>
    public static async Task<int> StopAsync(ExternalProcess p, int signal = SigTerm)
    {
        p.Signal(signal);
        return await p.WaitForExitAsync(Deadline);
    }

    /// <summary>The port of the first <paramref name="prefix"/>PORT in the output ("[::1]:" gives the port the
    /// server bound for --listen [::1]:0).</summary>
    public static int PortAfter(string output, string prefix)
    {
        var m = Regex.Match(output, Regex.Escape(prefix) + "([0-9]+)");
        Assert.True(m.Success, $"no {prefix}PORT in: {output}");
        return int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Asserts the usage-error contract: exit code 2, one "natkit:" sentence containing
    /// <paramref name="expected"/>, no stack trace.</summary>
    public static void AssertRefused((int ExitCode, string Output, string Errors) run, string expected)
    {
        var all = run.Output + run.Errors;
        Assert.True(run.ExitCode == 2, $"exit {run.ExitCode}: {all}");
        Assert.Contains(expected, all, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", all, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", all, StringComparison.Ordinal);
        Assert.Single(all.Split("natkit:", StringSplitOptions.None).Skip(1));
        Assert.Single(run.Errors.Trim().Split('\n'));
    }

    /// <summary>Piped output carries no ANSI escape.</summary>
    public static void AssertPlain(string output) =>
        Assert.False(output.Contains('\u001b', StringComparison.Ordinal), "ANSI escape in piped output: " + output);
}
