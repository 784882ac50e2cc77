using NatKit.Bench;

namespace NatKit.Bench.Tests;

/// <summary>`natkit bench peer`'s harness in a tiny mode (a megabyte, one round, two start-ups), so it cannot rot:
/// every contender carries the whole blob, the relay contender really goes through the relay (the harness refuses a
/// mislabelled path), and nothing it started is left: no sshd or ssh process, no key directory, no /run/sshd it
/// made.</summary>
public sealed class PeerBenchmarkTests
{
    [PeerFact("sshd", "ssh", "ssh-keygen")]
    public async Task TinyRun_MeasuresEveryContender_AndLeavesNothingBehind()
    {
        var runBefore = Directory.Exists("/run/sshd");
        var progress = new List<string>();
        var result = await PeerBenchmark.RunAsync(new PeerBenchmarkOptions
        {
            Bytes = 1_000_000,
            Rounds = 1,
            StartupSamples = 2,
            Progress = progress.Add,
        });

        Assert.Null(result.SshSkipped);
        Assert.StartsWith("OpenSSH", result.SshVersion, StringComparison.Ordinal);
        Assert.Equal(["loopback", "natkit direct", "natkit relay", "ssh -L"], result.Throughput.Select(t => t.Name));
        Assert.All(result.Throughput, t => Assert.True(Assert.Single(t.MegabytesPerSecond) > 0, t.Name));
        Assert.Equal(["natkit", "ssh -L"], result.Startup.Select(s => s.Name));
        Assert.All(result.Startup, s => Assert.Equal(2, s.Milliseconds.Count));
        Assert.All(result.Startup, s => Assert.All(s.Milliseconds, ms => Assert.True(ms > 0)));
        Assert.Contains("round 1/1: natkit relay", progress);

        Assert.Empty(Directory.GetDirectories(Path.GetTempPath(), "natkit-bench-ssh-*"));
        Assert.Empty(ProcessesNaming("natkit-bench-ssh-")); // sshd and every ssh ran with a path in the key directory
        Assert.Equal(runBefore, Directory.Exists("/run/sshd"));
    }

    private static List<string> ProcessesNaming(string text)
    {
        var found = new List<string>();
        foreach (var dir in Directory.GetDirectories("/proc"))
        {
            try
            {
                var cmdline = File.ReadAllText(Path.Combine(dir, "cmdline")).Replace('\0', ' ');
                if (cmdline.Contains(text, StringComparison.Ordinal))
                {
                    found.Add(cmdline);
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // not a process, or gone
            }
        }

        return found;
    }

    [Fact]
    public void Options_NameTheBadField()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new PeerBenchmarkOptions { Rounds = 0 }.Validate());
        Assert.Equal("Rounds", e.ParamName);
    }
}
