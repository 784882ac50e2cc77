using System.Diagnostics;
using System.Text;

namespace NatKit.TestSupport;

/// <summary>
/// A real peer program started by a test. Output is collected; disposal kills the whole process tree,
/// so a failing test never leaves a server running. The peer gets a temporary directory of its own as TMPDIR,
/// removed on disposal: a killed peer never cleans up after itself (chromium, for one, leaves its
/// org.chromium.Chromium.XXXXXX singleton folder behind), so what it leaves there must go with it.
/// </summary>
public sealed class ExternalProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stdout = new();
    private readonly StringBuilder _stderr = new();
    private readonly object _gate = new();
    private readonly List<(string Needle, TaskCompletionSource Seen)> _waiters = [];

    private ExternalProcess(Process process, string tempDirectory)
    {
        _process = process;
        TempDirectory = tempDirectory;
    }

    public int Id => _process.Id;

    /// <summary>The peer's own temporary directory, its TMPDIR: removed on disposal.</summary>
    public string TempDirectory { get; }

    public string Output
    {
        get
        {
            lock (_gate)
            {
                return _stdout.ToString();
            }
        }
    }

    public string Errors
    {
        get
        {
            lock (_gate)
            {
                return _stderr.ToString();
            }
        }
    }

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    public static ExternalProcess Start(string fileName, IEnumerable<string> arguments, string? workingDirectory = null,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        var info = new ProcessStartInfo(TestHost.Which(fileName) ?? fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var a in arguments)
        {
            info.ArgumentList.Add(a);
        }

        if (workingDirectory is not null)
        {
            info.WorkingDirectory = workingDirectory;
        }

        var tempDirectory = Directory.CreateTempSubdirectory("natkit-peer-").FullName;
        if (!OperatingSystem.IsWindows())
        {
            // like /tmp itself: a root-started peer that drops to its own user (nobody, proxy) can still write here
            File.SetUnixFileMode(tempDirectory, (UnixFileMode)0x3FF); // 01777
        }

        info.Environment["TMPDIR"] = tempDirectory;
        if (environment is not null)
        {
            foreach (var (k, v) in environment)
            {
                info.Environment[k] = v;
            }
        }

        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var result = new ExternalProcess(process, tempDirectory);
        process.OutputDataReceived += (_, e) => result.Append(result._stdout, e.Data);
        process.ErrorDataReceived += (_, e) => result.Append(result._stderr, e.Data);
        try
        {
            process.Start();
        }
        catch
        {
            process.Dispose();
            RemoveTempDirectory(tempDirectory);
            throw;
        }

        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return result;
    }

    /// <summary>Runs a program to completion within <paramref name="timeout"/>; kills it if it overruns.</summary>
    public static async Task<(int ExitCode, string Output, string Errors)> RunAsync(string fileName,
        IEnumerable<string> arguments, TimeSpan timeout, string? workingDirectory = null)
    {
        await using var p = Start(fileName, arguments, workingDirectory);
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await p._process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException(
                $"{fileName} {string.Join(' ', arguments)} did not finish in {timeout}: {p.Output}\n{p.Errors}");
        }

        p._process.WaitForExit(); // flush the asynchronous output readers
        return (p._process.ExitCode, p.Output, p.Errors);
    }

    /// <summary>Writes one line to the peer's standard input (for peers driven over stdin).</summary>
    public async Task WriteLineAsync(string line)
    {
        await _process.StandardInput.WriteLineAsync(line);
        await _process.StandardInput.FlushAsync();
    }

    /// <summary>Waits until <paramref name="needle"/> appears on stdout or stderr.</summary>
    public async Task WaitForOutputAsync(string needle, TimeSpan timeout)
    {
        TaskCompletionSource seen = new(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            if (_stdout.ToString().Contains(needle, StringComparison.Ordinal) ||
                _stderr.ToString().Contains(needle, StringComparison.Ordinal))
            {
                return;
            }

            _waiters.Add((needle, seen));
        }

        var exited = _process.WaitForExitAsync();
        var done = await Task.WhenAny(seen.Task, exited, Task.Delay(timeout));
        if (done != seen.Task)
        {
            throw new TimeoutException(
                $"'{needle}' did not appear (exited: {_process.HasExited}).\nstdout: {Output}\nstderr: {Errors}");
        }
    }

    /// <summary>Sends a POSIX signal (SIGTERM 15, SIGINT 2, SIGHUP 1) to the peer, as a service manager would.</summary>
    public void Signal(int signal)
    {
        if (Kill(_process.Id, signal) != 0)
        {
            throw new InvalidOperationException($"kill({_process.Id}, {signal}) failed");
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);

    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(cts.Token);
        _process.WaitForExit();
        return _process.ExitCode;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }
        }
        catch (InvalidOperationException)
        {
            // never started or already reaped
        }

        _process.Dispose();
        RemoveTempDirectory(TempDirectory);
    }

    private static void RemoveTempDirectory(string path)
    {
        // twice: a child of the killed tree may still have been writing when the first pass listed the folder
        for (var attempt = 0; ; attempt++)
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
            catch (IOException) when (attempt == 0)
            {
            }
        }
    }

    private void Append(StringBuilder sb, string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_gate)
        {
            sb.AppendLine(line);
            for (var i = _waiters.Count - 1; i >= 0; i--)
            {
                if (line.Contains(_waiters[i].Needle, StringComparison.Ordinal))
                {
                    _waiters[i].Seen.TrySetResult();
                    _waiters.RemoveAt(i);
                }
            }
        }
    }
}
