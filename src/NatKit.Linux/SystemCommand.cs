using NatKit.Net;

namespace NatKit.Linux;

/// <summary>
/// Runs the configuration tools at the edge (`ip`, `nft`, `sysctl`) through NatKit's one launcher
/// (<see cref="ChildProcess"/>) and turns a failure into an <see cref="IOException"/> that quotes the command and its
/// error output. Never used on the data path.
/// </summary>
public static class SystemCommand
{
    private static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(20);

    /// <summary>The full path of <paramref name="name"/> on PATH, or in /usr/sbin and /sbin; null when it is not
    /// installed (<see cref="ChildProcess.Which"/>).</summary>
    public static string? Which(string name) => ChildProcess.Which(name);

    /// <summary>Runs <paramref name="program"/> and returns its standard output; throws on a non-zero exit.</summary>
    public static async Task<string> RunAsync(string program, IEnumerable<string> arguments,
        CancellationToken cancellationToken = default, TimeSpan? timeout = null, string? standardInput = null)
    {
        var args = arguments.ToArray();
        var (code, output, errors) = await TryRunAsync(program, args, cancellationToken, timeout, standardInput)
            .ConfigureAwait(false);
        if (code != 0)
        {
            throw new IOException(
                $"{program} {string.Join(' ', args)} failed ({code}): {errors.Trim()} {output.Trim()}".Trim());
        }

        return output;
    }

    /// <summary>Runs a program and returns exit code, standard output and standard error.</summary>
    /// <exception cref="IOException">It cannot be started.</exception>
    /// <exception cref="TimeoutException">It did not finish within <paramref name="timeout"/> (20 s by default).</exception>
    public static async Task<(int ExitCode, string Output, string Errors)> TryRunAsync(string program,
        IEnumerable<string> arguments, CancellationToken cancellationToken = default, TimeSpan? timeout = null,
        string? standardInput = null)
    {
        var r = await ChildProcess.RunAsync(program, arguments, timeout ?? DefaultTimeout, cancellationToken, standardInput)
            .ConfigureAwait(false);
        return (r.ExitCode, r.Output, r.Errors);
    }
}
