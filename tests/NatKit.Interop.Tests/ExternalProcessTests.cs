using NatKit.TestSupport;

namespace NatKit.Interop.Tests;

/// <summary>The harness every interop test starts its peers with: what a peer leaves in its temporary directory
/// goes when the peer does, whether it ended by itself or was killed. Alone, so that no other test's peer
/// folder comes and goes while one of these counts them.</summary>
[Collection(nameof(ExternalProcessTests))]
[CollectionDefinition(nameof(ExternalProcessTests), DisableParallelization = true)]
public class ExternalProcessTests
{
    [Fact]
    public async Task Peer_GetsItsOwnTmpdir_RemovedWhenItEnds()
    {
        string dir;
        await using (var peer = ExternalProcess.Start("sh", ["-c", "mkdir \"$TMPDIR/left\" && touch \"$TMPDIR/left/file\" && echo \"$TMPDIR\""]))
        {
            Assert.Equal(0, await peer.WaitForExitAsync(TimeSpan.FromSeconds(30)));
            dir = peer.TempDirectory;
            Assert.Equal(dir, peer.Output.Trim());
            Assert.StartsWith(Path.GetTempPath(), dir, StringComparison.Ordinal);
            if (!OperatingSystem.IsWindows())
            {
                // sticky and world-writable, as /tmp: a root-started peer that drops to its own user writes here too
                Assert.Equal((UnixFileMode)0x3FF, File.GetUnixFileMode(dir) & (UnixFileMode)0xFFF);
            }

            Assert.True(File.Exists(Path.Combine(dir, "left", "file")));
        }

        Assert.False(Directory.Exists(dir));
    }

    [Fact]
    public async Task KilledPeer_ItsTmpdirIsRemovedAnyway()
    {
        string dir;
        await using (var peer = ExternalProcess.Start("sh", ["-c", "touch \"$TMPDIR/singleton\"; echo ready; exec sleep 600"]))
        {
            await peer.WaitForOutputAsync("ready", TimeSpan.FromSeconds(30));
            dir = peer.TempDirectory;
            Assert.True(File.Exists(Path.Combine(dir, "singleton")));
        }

        Assert.False(Directory.Exists(dir));
    }

    [Fact]
    public void ProgramThatCannotStart_LeavesNoTmpdir()
    {
        var before = Directory.GetDirectories(Path.GetTempPath(), "natkit-peer-*").ToHashSet();
        Assert.ThrowsAny<Exception>(() => ExternalProcess.Start("/nonexistent/natkit-no-such-program", []));
        var after = Directory.GetDirectories(Path.GetTempPath(), "natkit-peer-*");
        Assert.All(after, d => Assert.Contains(d, before));
    }
}
