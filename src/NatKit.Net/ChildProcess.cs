using System.Diagnostics;
using System.Net;
using System.Runtime.InteropServices;
using System.Text;

namespace NatKit.Net;

/// <summary>How <see cref="ChildProcess.Start"/> runs a program.</summary>
public sealed record ChildProcessOptions
{
    /// <summary>The directory it starts in (this process's when null).</summary>
    public string? WorkingDirectory { get; init; }

    /// <summary>Variables added to (or replacing) the inherited environment.</summary>
    public IReadOnlyDictionary<string, string>? Environment { get; init; }

    /// <summary>Give the program a temporary directory of its own as TMPDIR (mode 1777, so a root-started program
    /// that drops to its own user can write there), removed with everything in it on disposal: a killed program
    /// never cleans up after itself.</summary>
    public bool OwnTempDirectory { get; init; }

    /// <summary>A directory the caller made (a configuration file in it names it) handed to the program as its own
    /// TMPDIR: removed like <see cref="OwnTempDirectory"/>'s on disposal, and also when the start fails.</summary>
    public string? TempDirectory { get; init; }

    /// <summary>Keep standard input open for <see cref="ChildProcess.WriteLineAsync"/>; otherwise it is closed at
    /// once, so a program that reads it sees end of file instead of waiting.</summary>
    public bool KeepStandardInput { get; init; }

    /// <summary>Give the program this process's own standard input, output and error (an interactive command the
    /// user runs through NatKit, such as `natkit lab netns exec`): nothing is collected, so <see
    /// cref="ChildProcess.Output"/> and <see cref="ChildProcess.Errors"/> stay empty and
    /// <see cref="ChildProcess.WaitForOutputAsync"/> never matches.</summary>
    public bool UseThisTerminal { get; init; }

    /// <summary>Also stop the program (its whole tree) when this process gets SIGINT or SIGTERM or exits, before
    /// its own clean-up can run: for long-running peers of a command a user may interrupt.</summary>
    public bool StopWithThisProcess { get; init; }

    /// <summary>How long <see cref="ChildProcess.StopAsync"/> gives the program after SIGTERM before it kills the
    /// tree; zero kills at once (the default: a peer a test or a benchmark started has nothing to save).</summary>
    public TimeSpan StopGrace { get; init; }

    /// <summary>What the program is called in error messages (the program's file name when null).</summary>
    public string? Name { get; init; }
}

/// <summary>
/// NatKit's one way to run another program: start it, wait until it is ready (a line of its output, a TCP port that
/// accepts, or any condition), collect its output, stop it and its whole process tree, and clean up what it was
/// given, also when starting or waiting fails. <see cref="RunAsync"/> runs a program to completion within a time
/// limit. Test peers, the configuration tools at the Linux edge (`ip`, `nft`), programs inside network namespaces
/// and the benchmarks' contenders all start here. It lives in NatKit.Net, the edge of the host every other part
/// already depends on: its readiness checks are sockets, and the control socket of a running process lives here too.
/// </summary>
public sealed partial class ChildProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly ChildProcessOptions _options;
    private readonly StringBuilder _output = new();
    private readonly StringBuilder _errors = new();
    private readonly List<(string Needle, TaskCompletionSource<string> Seen)> _waiters = [];
    private readonly TaskCompletionSource _outputClosed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _errorsClosed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private PosixSignalRegistration[] _signals = [];
    private int _disposed;

    private ChildProcess(Process process, ChildProcessOptions options, string name, string? tempDirectory)
    {
        _process = process;
        _options = options;
        Name = name;
        TempDirectory = tempDirectory;
    }

    /// <summary>The name used in messages.</summary>
    public string Name { get; }

    /// <summary>The process id.</summary>
    public int Id => _process.Id;

    /// <summary>Its own TMPDIR (<see cref="ChildProcessOptions.OwnTempDirectory"/>, <see cref="ChildProcessOptions.TempDirectory"/>),
    /// removed on disposal; else null.</summary>
    public string? TempDirectory { get; }

    /// <summary>True once it has ended.</summary>
    public bool HasExited => _process.HasExited;

    /// <summary>Its exit code, once it has ended.</summary>
    public int ExitCode => _process.ExitCode;

    /// <summary>Standard output so far.</summary>
    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>Standard error so far.</summary>
    public string Errors
    {
        get
        {
            lock (_output)
            {
                return _errors.ToString();
            }
        }
    }

    /// <summary>The full path of <paramref name="program"/> on PATH or in /usr/sbin and /sbin (daemons such as sshd
    /// live there and are not on every user's PATH), an absolute path when it exists; null when not installed.</summary>
    public static string? Which(string program)
    {
        ArgumentException.ThrowIfNullOrEmpty(program);
        if (Path.IsPathRooted(program))
        {
            return File.Exists(program) ? program : null;
        }

        var path = System.Environment.GetEnvironmentVariable("PATH") ?? "/usr/local/bin:/usr/bin:/bin";
        foreach (var dir in path.Split(':', StringSplitOptions.RemoveEmptyEntries).Append("/usr/sbin").Append("/sbin"))
        {
            var candidate = Path.Combine(dir, program);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    /// <summary>Starts <paramref name="program"/> (looked up with <see cref="Which"/>) with its output collected.</summary>
    /// <exception cref="IOException">It cannot be started (not installed, not executable).</exception>
    public static ChildProcess Start(string program, IEnumerable<string> arguments, ChildProcessOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(program);
        ArgumentNullException.ThrowIfNull(arguments);
        options ??= new ChildProcessOptions();
        var name = options.Name ?? Path.GetFileName(program);
        var info = new ProcessStartInfo(Which(program) ?? program)
        {
            UseShellExecute = false,
            RedirectStandardOutput = !options.UseThisTerminal,
            RedirectStandardError = !options.UseThisTerminal,
            RedirectStandardInput = !options.UseThisTerminal,
        };
        foreach (var a in arguments)
        {
            info.ArgumentList.Add(a);
        }

        if (options.WorkingDirectory is not null)
        {
            info.WorkingDirectory = options.WorkingDirectory;
        }

        var temp = options.TempDirectory;
        if (temp is not null)
        {
            info.Environment["TMPDIR"] = temp;
        }
        else if (options.OwnTempDirectory)
        {
            temp = Directory.CreateTempSubdirectory("natkit-peer-").FullName;
            if (!OperatingSystem.IsWindows())
            {
                File.SetUnixFileMode(temp, (UnixFileMode)0x3FF); // 01777, like /tmp itself
            }

            info.Environment["TMPDIR"] = temp;
        }

        foreach (var (k, v) in options.Environment ?? new Dictionary<string, string>())
        {
            info.Environment[k] = v;
        }

        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var child = new ChildProcess(process, options, name, temp);
        process.OutputDataReceived += (_, e) => child.Append(child._output, e.Data, child._outputClosed);
        process.ErrorDataReceived += (_, e) => child.Append(child._errors, e.Data, child._errorsClosed);
        try
        {
            process.Start();
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            process.Dispose();
            RemoveDirectory(temp);
            throw new IOException($"cannot start {name}: {e.Message}", e);
        }

        if (options.UseThisTerminal)
        {
            child._outputClosed.TrySetResult();
            child._errorsClosed.TrySetResult();
        }
        else
        {
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            if (!options.KeepStandardInput)
            {
                process.StandardInput.Close();
            }
        }

        if (options.StopWithThisProcess)
        {
            child._signals =
            [
                PosixSignalRegistration.Create(PosixSignal.SIGINT, _ => child.StopNow()),
                PosixSignalRegistration.Create(PosixSignal.SIGTERM, _ => child.StopNow()),
            ];
            AppDomain.CurrentDomain.ProcessExit += child.OnProcessExit;
        }

        return child;
    }

    /// <summary>Runs a program to completion within <paramref name="timeout"/> (killing its tree if it overruns)
    /// and returns its exit code and output; <paramref name="standardInput"/> is written to it first.</summary>
    /// <exception cref="TimeoutException">It did not finish in time (the message carries its output so far).</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled (it is killed).</exception>
    public static async Task<ChildProcessResult> RunAsync(string program, IEnumerable<string> arguments, TimeSpan timeout,
        CancellationToken cancellationToken = default, string? standardInput = null, ChildProcessOptions? options = null)
    {
        var args = arguments.ToArray();
        await using var p = Start(program, args, (options ?? new ChildProcessOptions()) with { KeepStandardInput = standardInput is not null });
        if (standardInput is not null)
        {
            await p._process.StandardInput.WriteAsync(standardInput).ConfigureAwait(false);
            p._process.StandardInput.Close();
        }

        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        try
        {
            await p.WaitForExitAsync(deadline.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            cancellationToken.ThrowIfCancellationRequested(); // the caller's cancel is a cancel, not a timeout
            throw new TimeoutException(
                $"{program} {string.Join(' ', args)} did not finish in {timeout.TotalSeconds:0.#} s: {p.Output}{p.Errors}".Trim());
        }

        return new ChildProcessResult(p.ExitCode, p.Output, p.Errors);
    }

    /// <summary>Returns the first line of standard output or standard error that contains <paramref name="needle"/>
    /// (a server's "listening" line), woken by the line itself.</summary>
    /// <exception cref="IOException">The program ended without printing it (the message carries its output).</exception>
    public async Task<string> WaitForOutputAsync(string needle, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(needle);
        var seen = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        var waiter = (needle, seen);
        lock (_output)
        {
            if ((FindLine(_output, needle) ?? FindLine(_errors, needle)) is { } line)
            {
                return line;
            }

            _waiters.Add(waiter);
        }

        try
        {
            var ended = Task.WhenAll(_outputClosed.Task, _errorsClosed.Task); // the process ended and all is read
            // Either wake-up may come first when the last line and the end of the output arrive together: what was
            // printed decides (below), not which wake-up it was.
            await Task.WhenAny(seen.Task, ended).WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            lock (_output)
            {
                _waiters.Remove(waiter);
            }
        }

        lock (_output)
        {
            if ((FindLine(_output, needle) ?? FindLine(_errors, needle)) is { } printed)
            {
                return printed;
            }
        }

        try
        {
            // its output ended with it; the exit itself is reaped a moment later (a program that closed its output
            // and runs on is reported without its exit code)
            await _process.WaitForExitAsync(cancellationToken).WaitAsync(TimeSpan.FromSeconds(5), cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
        }

        throw new IOException(Ended($"without printing '{needle}'"));
    }

    /// <summary>Returns once something accepts TCP connections at <paramref name="endPoint"/> (a program that
    /// prints nothing when it listens), trying every <paramref name="interval"/> (50 ms by default) on
    /// <paramref name="timeProvider"/>'s clock.</summary>
    /// <exception cref="IOException">The program ended first.</exception>
    public Task WaitForPortAsync(IPEndPoint endPoint, CancellationToken cancellationToken = default,
        TimeSpan? interval = null, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(endPoint);
        return WaitUntilAsync(async ct =>
        {
            try
            {
                await using var c = await SystemNetwork.Instance.ConnectTcpAsync(endPoint, null, ct).ConfigureAwait(false);
                return true;
            }
            catch (NetworkException)
            {
                return false;
            }
        }, $"listening on {endPoint}", cancellationToken, interval, timeProvider);
    }

    /// <summary>Returns once <paramref name="ready"/> holds, asking every <paramref name="interval"/> (50 ms by
    /// default) on <paramref name="timeProvider"/>'s clock: for readiness the program shows no other way.</summary>
    /// <exception cref="IOException">The program ended first (the message names <paramref name="what"/>).</exception>
    public async Task WaitUntilAsync(Func<CancellationToken, Task<bool>> ready, string what,
        CancellationToken cancellationToken = default, TimeSpan? interval = null, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(ready);
        while (true)
        {
            if (await ready(cancellationToken).ConfigureAwait(false))
            {
                return;
            }

            if (_process.HasExited)
            {
                await WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
                throw new IOException(Ended($"before {what}"));
            }

            await Task.Delay(interval ?? TimeSpan.FromMilliseconds(50), timeProvider ?? TimeProvider.System, cancellationToken)
                .ConfigureAwait(false);
        }
    }

    /// <summary>Writes one line to its standard input (<see cref="ChildProcessOptions.KeepStandardInput"/>).</summary>
    public async Task WriteLineAsync(string line)
    {
        await _process.StandardInput.WriteLineAsync(line).ConfigureAwait(false);
        await _process.StandardInput.FlushAsync().ConfigureAwait(false);
    }

    /// <summary>Sends a POSIX signal (SIGTERM 15, SIGINT 2, SIGHUP 1), as a service manager would.</summary>
    /// <exception cref="IOException">kill(2) failed (the process is gone).</exception>
    public void Signal(int signal)
    {
        if (Kill(_process.Id, signal) != 0)
        {
            throw new IOException($"kill({_process.Id}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
        }
    }

    /// <summary>Waits for it to end and for all its output to be read; returns its exit code.</summary>
    public async Task<int> WaitForExitAsync(CancellationToken cancellationToken = default)
    {
        await _process.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
        await Task.WhenAll(_outputClosed.Task, _errorsClosed.Task).WaitAsync(cancellationToken).ConfigureAwait(false);
        return _process.ExitCode;
    }

    /// <summary>Stops it: SIGTERM and up to <paramref name="grace"/> (<see cref="ChildProcessOptions.StopGrace"/>
    /// by default) to end, then a kill of its whole tree.</summary>
    public async Task StopAsync(TimeSpan? grace = null)
    {
        try
        {
            if (_process.HasExited)
            {
                return;
            }

            var wait = grace ?? _options.StopGrace;
            if (wait > TimeSpan.Zero)
            {
                _ = Kill(_process.Id, 15);
                using var deadline = new CancellationTokenSource(wait);
                try
                {
                    await _process.WaitForExitAsync(deadline.Token).ConfigureAwait(false);
                    return;
                }
                catch (OperationCanceledException)
                {
                    // did not end in its grace: killed below
                }
            }

            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (InvalidOperationException)
        {
            // never started, or ended and reaped meanwhile
        }
    }

    /// <summary>Stops it (<see cref="StopAsync"/>) and removes its temporary directory.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        Unregister();
        try
        {
            await StopAsync().ConfigureAwait(false);
        }
        finally
        {
            _process.Dispose();
            RemoveDirectory(TempDirectory);
        }
    }

    private string Ended(string what) =>
        $"{Name} ended (exit {(_process.HasExited ? _process.ExitCode.ToString(System.Globalization.CultureInfo.InvariantCulture) : "?")}) {what}: {Output}{Errors}".TrimEnd();

    private static string? FindLine(StringBuilder text, string needle)
    {
        foreach (var line in text.ToString().Split('\n'))
        {
            if (line.Contains(needle, StringComparison.Ordinal))
            {
                return line.TrimEnd('\r');
            }
        }

        return null;
    }

    private void Append(StringBuilder text, string? line, TaskCompletionSource closed)
    {
        if (line is null)
        {
            closed.TrySetResult();
            return;
        }

        lock (_output)
        {
            text.AppendLine(line);
            for (var i = _waiters.Count - 1; i >= 0; i--)
            {
                if (line.Contains(_waiters[i].Needle, StringComparison.Ordinal))
                {
                    _waiters[i].Seen.TrySetResult(line);
                    _waiters.RemoveAt(i);
                }
            }
        }
    }

    private void OnProcessExit(object? sender, EventArgs e) => StopNow();

    /// <summary>Kills the tree and removes the directory synchronously (from a signal handler or at exit).</summary>
    private void StopNow()
    {
        try
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit(2000);
        }
        catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            // already gone or disposed
        }

        RemoveDirectory(TempDirectory);
    }

    private void Unregister()
    {
        if (_options.StopWithThisProcess)
        {
            AppDomain.CurrentDomain.ProcessExit -= OnProcessExit;
            foreach (var s in _signals)
            {
                s.Dispose();
            }
        }
    }

    /// <summary>Removes a directory and everything in it; twice, as a child of a killed tree may still have been
    /// writing when the first pass listed it.</summary>
    private static void RemoveDirectory(string? path)
    {
        for (var attempt = 0; path is not null; attempt++)
        {
            try
            {
                Directory.Delete(path, recursive: true);
                return;
            }
            catch (DirectoryNotFoundException)
            {
                return;
            }
            catch (Exception e) when (attempt == 0 && e is IOException or UnauthorizedAccessException)
            {
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return; // left for the temporary directory's own clean-up
            }
        }
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);
}

/// <summary>What a program run to completion left: its exit code and its output.</summary>
public readonly record struct ChildProcessResult(int ExitCode, string Output, string Errors);
