using NatKit.Net;

namespace NatKit.Linux;

/// <summary>
/// A long-running program inside a network namespace (<c>ip netns exec NS program ...</c>, which execs the program
/// itself, so <see cref="Id"/> is the program's), started by NatKit's one launcher (<see cref="ChildProcess"/>) with
/// its output collected. Disposing stops it: SIGTERM by id, a grace period, then a kill of its tree. Removing the
/// namespace also ends whatever still runs inside (<see cref="NetworkNamespace.DisposeAsync"/>), so nothing outlives
/// a lab.
/// </summary>
public sealed class NamespaceProcess : IAsyncDisposable
{
    private static readonly TimeSpan Grace = TimeSpan.FromSeconds(3);
    private readonly ChildProcess _process;

    private NamespaceProcess(ChildProcess process, string networkNamespace)
    {
        _process = process;
        Namespace = networkNamespace;
    }

    /// <summary>The namespace it runs in ("" for this process's own: <see cref="StartOnHost"/>).</summary>
    public string Namespace { get; }

    public int Id => _process.Id;

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    /// <summary>Standard output so far.</summary>
    public string Output => _process.Output;

    /// <summary>Standard error so far.</summary>
    public string Errors => _process.Errors;

    /// <summary>Starts <paramref name="program"/> in <paramref name="networkNamespace"/>.</summary>
    /// <exception cref="IOException">It cannot be started.</exception>
    public static NamespaceProcess Start(string networkNamespace, string program, IEnumerable<string> arguments,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(networkNamespace);
        ArgumentException.ThrowIfNullOrEmpty(program);
        ArgumentNullException.ThrowIfNull(arguments);
        return new NamespaceProcess(ChildProcess.Start("ip", ["netns", "exec", networkNamespace, program, .. arguments],
            new ChildProcessOptions { Environment = environment, StopGrace = Grace, Name = $"{program} in {networkNamespace}" }),
            networkNamespace);
    }

    /// <summary>Starts <paramref name="program"/> in this process's own network namespace (a peer a benchmark runs
    /// on loopback), with the same output collection and the same stop.</summary>
    public static NamespaceProcess StartOnHost(string program, IEnumerable<string> arguments,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(program);
        ArgumentNullException.ThrowIfNull(arguments);
        return new NamespaceProcess(ChildProcess.Start(program, arguments,
            new ChildProcessOptions { Environment = environment, StopGrace = Grace }), "");
    }

    /// <summary>Returns once a line of its output contains <paramref name="needle"/> (a server's "ready" line),
    /// woken by the line itself.</summary>
    /// <exception cref="IOException">The program ended without printing it (the message carries its output).</exception>
    public Task WaitForOutputAsync(string needle, CancellationToken cancellationToken = default) =>
        _process.WaitForOutputAsync(needle, cancellationToken);

    /// <summary>Waits for the program to end and for its output to be read; returns its exit code.</summary>
    public Task<int> WaitForExitAsync(CancellationToken cancellationToken = default) =>
        _process.WaitForExitAsync(cancellationToken);

    /// <summary>SIGTERM, up to <paramref name="grace"/> (3 s by default) to end, then a kill of the tree.</summary>
    public Task StopAsync(TimeSpan? grace = null) => _process.StopAsync(grace);

    public ValueTask DisposeAsync() => _process.DisposeAsync();
}
