using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace NatKit.Net.Tests;

/// <summary>The one process launcher: readiness (a line, a port, a condition), output, the stop of the whole
/// tree, and the clean-up of what it made, also when the program fails. Runs `sh` only.</summary>
public sealed class ChildProcessTests
{
    private static readonly TimeSpan Long = TimeSpan.FromMinutes(1);

    [Fact]
    public async Task WaitForOutput_ReturnsTheReadyLine_FromStdoutOrStderr()
    {
        await using var p = ChildProcess.Start("sh", ["-c", "echo starting; echo 'listening 4242' >&2; exec sleep 600"]);
        using var cts = new CancellationTokenSource(Long);
        Assert.Equal("listening 4242", await p.WaitForOutputAsync("listening ", cts.Token));
        Assert.Equal("starting", await p.WaitForOutputAsync("start", cts.Token)); // already printed: found at once
        Assert.Contains("starting", p.Output, StringComparison.Ordinal);
        Assert.Contains("listening 4242", p.Errors, StringComparison.Ordinal);
        Assert.False(p.HasExited);
    }

    [Fact]
    public async Task UseThisTerminal_CollectsNothing_AndWaitForExitGivesTheExitCode()
    {
        // The program writes to this process's own output (the test runner's), not into Output/Errors.
        await using var p = ChildProcess.Start("sh", ["-c", "echo to-the-terminal; exit 7"],
            new ChildProcessOptions { UseThisTerminal = true });
        using var cts = new CancellationTokenSource(Long);
        Assert.Equal(7, await p.WaitForExitAsync(cts.Token));
        Assert.Equal("", p.Output);
        Assert.Equal("", p.Errors);
    }

    [Fact]
    public async Task WaitForOutput_ProgramEndsWithoutTheLine_ThrowsWithItsOutputAndExitCode()
    {
        await using var p = ChildProcess.Start("sh", ["-c", "echo 'bad config' >&2; exit 3"]);
        using var cts = new CancellationTokenSource(Long);
        var e = await Assert.ThrowsAsync<IOException>(() => p.WaitForOutputAsync("ready", cts.Token));
        Assert.Contains("exit 3", e.Message, StringComparison.Ordinal);
        Assert.Contains("bad config", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task WaitForPort_ReturnsOnceSomethingListens_AndThrowsWhenTheProgramEndsFirst()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(4);
        var open = (IPEndPoint)listener.LocalEndPoint!;
        using var cts = new CancellationTokenSource(Long);
        await using (var p = ChildProcess.Start("sh", ["-c", "exec sleep 600"]))
        {
            await p.WaitForPortAsync(open, cts.Token);
        }

        listener.Close(); // nothing listens there now
        await using var ended = ChildProcess.Start("sh", ["-c", "exit 0"]);
        var e = await Assert.ThrowsAsync<IOException>(() =>
            ended.WaitForPortAsync(open, cts.Token, TimeSpan.FromMilliseconds(5)));
        Assert.Contains("before listening on", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task WaitUntil_AsksUntilTheConditionHolds()
    {
        await using var p = ChildProcess.Start("sh", ["-c", "exec sleep 600"]);
        var asked = 0;
        using var cts = new CancellationTokenSource(Long);
        await p.WaitUntilAsync(_ => Task.FromResult(++asked == 3), "three asks", cts.Token, TimeSpan.FromMilliseconds(1));
        Assert.Equal(3, asked);
    }

    [Fact]
    public async Task Dispose_KillsTheWholeTree_AndRemovesItsOwnTempDirectory()
    {
        string temp;
        int grandchild;
        await using (var p = ChildProcess.Start("sh", ["-c", "touch \"$TMPDIR/left\"; sleep 600 & echo \"child $!\"; wait"],
                         new ChildProcessOptions { OwnTempDirectory = true }))
        {
            using var cts = new CancellationTokenSource(Long);
            var line = await p.WaitForOutputAsync("child ", cts.Token);
            grandchild = int.Parse(line["child ".Length..], CultureInfo.InvariantCulture);
            temp = p.TempDirectory!;
            Assert.True(Directory.Exists(temp));
            Assert.True(Directory.Exists($"/proc/{grandchild}"));
        }

        Assert.False(Directory.Exists(temp));
        Assert.True(Ends(grandchild)); // the shell's child went with it
    }

    [Fact]
    public async Task Stop_WithGrace_LetsTheProgramHandleSigterm()
    {
        await using var p = ChildProcess.Start("sh", ["-c", "trap 'echo terminated; exit 0' TERM; echo up; while :; do sleep 0.05; done"]);
        using var cts = new CancellationTokenSource(Long);
        await p.WaitForOutputAsync("up", cts.Token);
        await p.StopAsync(TimeSpan.FromMinutes(1));
        Assert.Equal(0, await p.WaitForExitAsync(cts.Token));
        Assert.Contains("terminated", p.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Run_ReturnsExitCodeAndOutput_AndFeedsStandardInput()
    {
        var r = await ChildProcess.RunAsync("sh", ["-c", "read x; echo \"got $x\"; echo oops >&2; exit 7"], Long,
            standardInput: "hello\n");
        Assert.Equal(7, r.ExitCode);
        Assert.Equal("got hello\n", r.Output);
        Assert.Equal("oops\n", r.Errors);
    }

    [Fact]
    public async Task Run_Overrunning_ThrowsTimeout_AndKillsIt()
    {
        var e = await Assert.ThrowsAsync<TimeoutException>(() =>
            ChildProcess.RunAsync("sh", ["-c", "echo \"pid $$\"; exec sleep 600"], TimeSpan.FromMilliseconds(300)));
        var pid = int.Parse(e.Message[(e.Message.LastIndexOf("pid ", StringComparison.Ordinal) + 4)..].Trim(),
            CultureInfo.InvariantCulture);
        Assert.True(Ends(pid));
    }

    [Fact]
    public async Task WaitForOutput_TheLastLineBeforeTheExit_IsFoundEveryTime()
    {
        // The line and the end of the output arrive together and their wake-ups race; a fresh-clone run once saw
        // "ended without printing 'got': got ping". Many short programs give the race many chances.
        using var cts = new CancellationTokenSource(Long);
        for (var i = 0; i < 60; i++)
        {
            await using var p = ChildProcess.Start("sh", ["-c", $"echo ready {i}"]);
            Assert.Equal($"ready {i}", await p.WaitForOutputAsync("ready", cts.Token));
        }
    }

    [Fact]
    public async Task WriteLine_ReachesAProgramReadingStandardInput()
    {
        await using var p = ChildProcess.Start("sh", ["-c", "read x; echo \"got $x\""], new ChildProcessOptions { KeepStandardInput = true });
        await p.WriteLineAsync("ping");
        using var cts = new CancellationTokenSource(Long);
        Assert.Equal("got ping", await p.WaitForOutputAsync("got", cts.Token));
    }

    [Fact]
    public void Start_MissingProgram_ThrowsIOExceptionNamingIt_AndLeavesNoTempDirectory()
    {
        var before = Directory.GetDirectories(Path.GetTempPath(), "natkit-peer-*").Length;
        var e = Assert.Throws<IOException>(() => ChildProcess.Start("/nonexistent/natkit-no-such-program", [],
            new ChildProcessOptions { OwnTempDirectory = true, Name = "the peer" }));
        Assert.StartsWith("cannot start the peer", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, Directory.GetDirectories(Path.GetTempPath(), "natkit-peer-*").Length);
    }

    [Fact]
    public void Which_FindsInstalledPrograms_AndNullOtherwise()
    {
        Assert.True(File.Exists(ChildProcess.Which("sh")));
        Assert.Null(ChildProcess.Which("natkit-no-such-program"));
        Assert.Null(ChildProcess.Which("/nonexistent/sh"));
    }

    /// <summary>True once the process has ended: SIGKILL is delivered at once, but the kernel takes a moment to
    /// tear a process down, so this looks again (bounded) rather than once.</summary>
    private static bool Ends(int pid) => SpinWait.SpinUntil(() => !IsRunning(pid), TimeSpan.FromSeconds(30));

    /// <summary>True while the process runs (a zombie, dead but not yet reaped by its parent, counts as ended).</summary>
    private static bool IsRunning(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)] != 'Z';
        }
        catch (IOException)
        {
            return false;
        }
    }
}
