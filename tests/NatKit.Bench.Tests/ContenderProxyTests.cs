using System.Net;
using System.Net.Sockets;
using NatKit.Bench.Proxy;
using NatKit.Bench.Turn;
using NatKit.Bench.Utp;

namespace NatKit.Bench.Tests;

/// <summary>The contender launcher of `bench proxy` (ready when its loopback port answers, loopback-only, stopped with
/// its directory) and the small readers the harnesses parse peers' output with.</summary>
public sealed class ContenderProxyTests
{
    private static readonly TimeSpan Long = TimeSpan.FromMinutes(1);

    // stands in for natkit: `proxy serve --listen 127.0.0.1:PORT ...` arrive as argv[1..]; it listens there
    private const string Listener = """
        import os, socket, sys
        host, port = sys.argv[4].rsplit(':', 1)
        s = socket.socket(); s.bind((host, int(port))); s.listen(4)
        open(os.path.join(os.environ['TMPDIR'], 'started'), 'w').close()
        while True: s.accept()[0].close()
        """;

    [PeerFact("python3")]
    public async Task Contender_IsReadyWhenItsPortAnswers_AndDisposalEndsItAndRemovesItsDirectory()
    {
        using var cts = new CancellationTokenSource(Long);
        var contender = await ContenderProxy.StartNatkitAsync(["python3", "-c", Listener], "test", 9, null, cts.Token);
        string dir;
        await using (contender)
        {
            Assert.Equal("natkit", contender.Name);
            using var client = new TcpClient();
            await client.ConnectAsync(IPAddress.Loopback, contender.Port, cts.Token); // it listens: ready means ready
            dir = Assert.Single(Directory.GetDirectories(Path.GetTempPath(), "natkit-natkit-*"),
                d => File.Exists(Path.Combine(d, "started")));
        }

        Assert.False(Directory.Exists(dir));
        using var after = new TcpClient();
        await Assert.ThrowsAnyAsync<SocketException>(() => after.ConnectAsync(IPAddress.Loopback, contender.Port, cts.Token).AsTask());
    }

    [Fact]
    public async Task ContenderThatEndsAtStart_IsReportedWithItsError_AndLeavesNoDirectory()
    {
        var before = Directory.GetDirectories(Path.GetTempPath(), "natkit-natkit-*").Length;
        using var cts = new CancellationTokenSource(Long);
        var e = await Assert.ThrowsAsync<IOException>(() =>
            ContenderProxy.StartNatkitAsync(["sh", "-c", "echo 'unknown flag' >&2; exit 2"], "test", 9, null, cts.Token));
        Assert.StartsWith("natkit did not start", e.Message, StringComparison.Ordinal);
        Assert.Contains("unknown flag", e.Message, StringComparison.Ordinal);
        Assert.Equal(before, Directory.GetDirectories(Path.GetTempPath(), "natkit-natkit-*").Length);
    }

    [Theory]
    [InlineData("0100007F", true)] // 127.0.0.1
    [InlineData("0200007F", true)] // 127.0.0.2
    [InlineData("00000000", false)] // 0.0.0.0: every address
    [InlineData("0100A8C0", false)] // 192.168.0.1
    [InlineData("00000000000000000000000001000000", true)] // ::1
    [InlineData("0000000000000000FFFF00000100007F", true)] // ::ffff:127.0.0.1
    [InlineData("00000000000000000000000000000000", false)] // ::
    public void ProcNetAddress_IsLoopbackOnlyForLoopback(string hex, bool loopback) =>
        Assert.Equal(loopback, LoopbackCheck.IsLoopback(hex));

    [Fact]
    public void LibutpListenerLine_GivesMbitPerSecond_OrIsRefused()
    {
        Assert.Equal(80.0, UtpBenchmark.ParseReceived("received 10000000 9f86d081884c7d65 1.000000", 10_000_000), 9);
        Assert.Throws<InvalidDataException>(() => UtpBenchmark.ParseReceived("received 9999 9f86 1.0", 10_000_000));
        Assert.Throws<InvalidDataException>(() => UtpBenchmark.ParseReceived("error: ECONNRESET", 10));
        Assert.Throws<InvalidDataException>(() => UtpBenchmark.ParseReceived("received 10 x 0", 10));
    }

    [Fact]
    public void ProcStatus_GivesResidentBytes()
    {
        Assert.Equal(2048L * 1024, TurnMemoryBenchmark.ParseResident(["Name:\tturnserver", "VmPeak:\t 9999 kB", "VmRSS:\t    2048 kB"]));
        Assert.Null(TurnMemoryBenchmark.ParseResident(["Name:\tkthreadd", "State:\tS (sleeping)"]));
    }
}
