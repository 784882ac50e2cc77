using NatKit.Net;

namespace NatKit.TestSupport;

/// <summary>
/// A real peer program started by a test, through NatKit's one launcher (<see cref="ChildProcess"/>) with the
/// defaults a test wants: output collected, standard input open, a temporary directory of its own as TMPDIR (a killed
/// peer never cleans up after itself: chromium, for one, leaves its singleton folder behind), waits bounded by a
/// time, and disposal that kills the whole tree at once and removes the directory, so a failing test never leaves a
/// server running.
/// </summary>
public sealed class ExternalProcess : IAsyncDisposable
{
    private readonly ChildProcess _process;

    private ExternalProcess(ChildProcess process) => _process = process;

    public int Id => _process.Id;

    /// <summary>The peer's own temporary directory, its TMPDIR: removed on disposal.</summary>
    public string TempDirectory => _process.TempDirectory!;

    public string Output => _process.Output;

    public string Errors => _process.Errors;

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    /// <exception cref="IOException">It cannot be started.</exception>
    public static ExternalProcess Start(string fileName, IEnumerable<string> arguments, string? workingDirectory = null,
        IReadOnlyDictionary<string, string>? environment = null) =>
        new(ChildProcess.Start(fileName, arguments, new ChildProcessOptions
        {
            WorkingDirectory = workingDirectory,
            Environment = environment,
            OwnTempDirectory = true,
            KeepStandardInput = true,
        }));

    /// <summary>Runs a program to completion within <paramref name="timeout"/>; kills it if it overruns.</summary>
    public static async Task<(int ExitCode, string Output, string Errors)> RunAsync(string fileName,
        IEnumerable<string> arguments, TimeSpan timeout, string? workingDirectory = null)
    {
        var r = await ChildProcess.RunAsync(fileName, arguments, timeout,
            options: new ChildProcessOptions { WorkingDirectory = workingDirectory, OwnTempDirectory = true });
        return (r.ExitCode, r.Output, r.Errors);
    }

    /// <summary>Writes one line to the peer's standard input (for peers driven over stdin).</summary>
    public Task WriteLineAsync(string line) => _process.WriteLineAsync(line);

    /// <summary>Waits until <paramref name="needle"/> appears on stdout or stderr.</summary>
    /// <exception cref="TimeoutException">It did not within <paramref name="timeout"/>.</exception>
    /// <exception cref="IOException">The peer ended without printing it.</exception>
    public async Task WaitForOutputAsync(string needle, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForOutputAsync(needle, cts.Token);
        }
        catch (OperationCanceledException) when (cts.IsCancellationRequested)
        {
            throw new TimeoutException(
                $"'{needle}' did not appear in {timeout} (exited: {HasExited}).\nstdout: {Output}\nstderr: {Errors}");
        }
    }

    /// <summary>Sends a POSIX signal (SIGTERM 15, SIGINT 2, SIGHUP 1) to the peer, as a service manager would.</summary>
    public void Signal(int signal) => _process.Signal(signal);

    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        return await _process.WaitForExitAsync(cts.Token);
    }

    public ValueTask DisposeAsync() => _process.DisposeAsync();
}
