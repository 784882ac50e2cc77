using System.Diagnostics;

namespace NatKit.Linux;

/// <summary>
/// Runs the configuration tools at the edge (`ip`, `nft`, `sysctl`) and turns a failure into an
/// <see cref="IOException"/> that quotes the command and its error output. Never used on the data path.
/// </summary>
public static class SystemCommand
{
    private static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(20);

    /// <summary>The full path of <paramref name="name"/> on PATH, or in /usr/sbin and /sbin (daemons such as sshd
    /// live there and are not on every user's PATH); null when it is not installed.</summary>
    public static string? Which(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        var path = Environment.GetEnvironmentVariable("PATH") ?? "/usr/local/bin:/usr/bin:/bin";
        foreach (var dir in path.Split(':', StringSplitOptions.RemoveEmptyEntries).Append("/usr/sbin").Append("/sbin"))
        {
            var candidate = Path.Combine(dir, name);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    /// <summary>Runs <paramref name="program"/> and returns its standard output; throws on a non-zero exit.</summary>
    public static async Task<string> RunAsync(string program, IEnumerable<string> arguments,
        CancellationToken cancellationToken = default, TimeSpan? timeout = null, string? standardInput = null)
    {
        var (code, output, errors) = await TryRunAsync(program, arguments, cancellationToken, timeout, standardInput)
            .ConfigureAwait(false);
        if (code != 0)
        {
            throw new IOException(
                $"{program} {string.Join(' ', arguments)} failed ({code}): {errors.Trim()} {output.Trim()}".Trim());
        }

        return output;
    }

    /// <summary>Runs a program and returns exit code, standard output and standard error.</summary>
    public static async Task<(int ExitCode, string Output, string Errors)> TryRunAsync(string program,
        IEnumerable<string> arguments, CancellationToken cancellationToken = default, TimeSpan? timeout = null,
        string? standardInput = null)
    {
        var info = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = standardInput is not null,
            UseShellExecute = false,
        };
        foreach (var a in arguments)
        {
            info.ArgumentList.Add(a);
        }

        using var process = new Process { StartInfo = info };
        try
        {
            process.Start();
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new IOException($"cannot run {program}: {e.Message}", e);
        }

        if (standardInput is not null)
        {
            await process.StandardInput.WriteAsync(standardInput).ConfigureAwait(false);
            process.StandardInput.Close();
        }

        var output = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var errors = process.StandardError.ReadToEndAsync(cancellationToken);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout ?? DefaultTimeout);
        try
        {
            await process.WaitForExitAsync(deadline.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            cancellationToken.ThrowIfCancellationRequested(); // the caller's cancel is a cancel, not a timeout
            throw new TimeoutException($"{program} {string.Join(' ', arguments)} did not finish in time");
        }

        return (process.ExitCode, await output.ConfigureAwait(false), await errors.ConfigureAwait(false));
    }
}
