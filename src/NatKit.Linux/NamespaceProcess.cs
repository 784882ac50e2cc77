using System.Diagnostics;
using System.Text;
using NatKit.Linux.Interop;

namespace NatKit.Linux;

/// <summary>
/// A long-running program inside a network namespace (<c>ip netns exec NS program ...</c>, which execs the program
/// itself, so <see cref="Id"/> is the program's), its output collected. Disposing stops it: SIGTERM by id, a grace
/// period, then a kill of its tree. Removing the namespace also ends whatever still runs inside
/// (<see cref="NetworkNamespace.DisposeAsync"/>), so nothing outlives a lab.
/// </summary>
public sealed class NamespaceProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly StringBuilder _errors = new();
    private readonly List<(string Needle, TaskCompletionSource Found)> _waiters = [];

    private NamespaceProcess(Process process, string networkNamespace)
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
    public string Output
    {
        get
        {
            lock (_output) return _output.ToString();
        }
    }

    /// <summary>Standard error so far.</summary>
    public string Errors
    {
        get
        {
            lock (_errors) return _errors.ToString();
        }
    }

    /// <summary>Starts <paramref name="program"/> in <paramref name="networkNamespace"/>.</summary>
    public static NamespaceProcess Start(string networkNamespace, string program, IEnumerable<string> arguments,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(networkNamespace);
        ArgumentException.ThrowIfNullOrEmpty(program);
        ArgumentNullException.ThrowIfNull(arguments);
        return Launch("ip", ["netns", "exec", networkNamespace, program, .. arguments], networkNamespace, environment,
            $"{program} in {networkNamespace}");
    }

    /// <summary>Starts <paramref name="program"/> in this process's own network namespace (a peer a benchmark runs
    /// on loopback), with the same output collection and the same stop.</summary>
    public static NamespaceProcess StartOnHost(string program, IEnumerable<string> arguments,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(program);
        ArgumentNullException.ThrowIfNull(arguments);
        return Launch(program, [.. arguments], "", environment, program);
    }

    private static NamespaceProcess Launch(string fileName, string[] arguments, string networkNamespace,
        IReadOnlyDictionary<string, string>? environment, string what)
    {
        var info = new ProcessStartInfo(fileName)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
        };
        foreach (var a in arguments)
        {
            info.ArgumentList.Add(a);
        }

        foreach (var (k, v) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[k] = v;
        }

        var process = new Process { StartInfo = info };
        var p = new NamespaceProcess(process, networkNamespace);
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (p._output)
            {
                p._output.AppendLine(e.Data);
                p._waiters.RemoveAll(w => e.Data.Contains(w.Needle, StringComparison.Ordinal) && w.Found.TrySetResult());
            }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null) lock (p._errors) p._errors.AppendLine(e.Data);
        };
        bool started;
        try
        {
            started = process.Start();
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            process.Dispose();
            throw new IOException($"cannot start {what}: {e.Message}", e);
        }

        if (!started)
        {
            process.Dispose();
            throw new IOException($"cannot start {what}");
        }

        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        process.StandardInput.Close();
        return p;
    }

    /// <summary>Returns once a line of standard output contains <paramref name="needle"/> (a server's "ready"
    /// line), woken by the line itself.</summary>
    /// <exception cref="IOException">The program ended without printing it (the message carries its output).</exception>
    public async Task WaitForOutputAsync(string needle, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(needle);
        var found = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var waiter = (needle, found);
        lock (_output)
        {
            if (_output.ToString().Contains(needle, StringComparison.Ordinal)) return;
            _waiters.Add(waiter);
        }

        var exited = _process.WaitForExitAsync(cancellationToken);
        try
        {
            if (await Task.WhenAny(found.Task, exited).ConfigureAwait(false) == found.Task) return;
            await exited.ConfigureAwait(false); // cancellation surfaces here
        }
        finally
        {
            lock (_output) _waiters.Remove(waiter);
        }

        if (Output.Contains(needle, StringComparison.Ordinal)) return; // the last lines, read after the exit
        throw new IOException($"the program in {Namespace} ended (exit {_process.ExitCode}) without printing '{needle}': {Output}{Errors}");
    }

    /// <summary>Waits for the program to end and for its output to be read; returns its exit code.</summary>
    public async Task<int> WaitForExitAsync(CancellationToken cancellationToken = default)
    {
        await _process.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
        return _process.ExitCode;
    }

    /// <summary>SIGTERM, up to <paramref name="grace"/> (3 s by default) to end, then a kill of the tree.</summary>
    public async Task StopAsync(TimeSpan? grace = null)
    {
        if (_process.HasExited) return;
        _ = Libc.Kill(_process.Id, Libc.SIGTERM);
        using var wait = new CancellationTokenSource(grace ?? TimeSpan.FromSeconds(3));
        try
        {
            await _process.WaitForExitAsync(wait.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            try
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
            }
            catch (InvalidOperationException)
            {
                // ended meanwhile
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        _process.Dispose();
    }
}
