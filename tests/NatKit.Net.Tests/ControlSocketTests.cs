using System.Net.Sockets;
using System.Text;

namespace NatKit.Net.Tests;

/// <summary>The control socket of a running process (the NAT gateway's, a peer node's): one line in, one answer
/// out, owner-only, and nothing left behind.</summary>
public sealed class ControlSocketTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("nk-ctl-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task AnswersEachCommand_InAMissingDirectoryItMadeOwnerOnly_AndRemovesItsSocket()
    {
        var path = Path.Combine(_dir, "run", "node.sock");
        await using (var control = ControlSocket.Listen(path, (command, _) => Task.FromResult($"[\"{command}\"]")))
        {
            Assert.Equal("[\"status\"]", await ControlSocket.AskAsync(path, "status", "the test"));
            Assert.Equal("[\"flows\"]", await ControlSocket.AskAsync(path, "  flows ", "the test"));
            if (!OperatingSystem.IsWindows())
            {
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute,
                    File.GetUnixFileMode(Path.GetDirectoryName(path)!));
            }
        }

        Assert.False(File.Exists(path));
    }

    [Fact]
    public async Task AStaleSocketFile_IsReplaced_AndAskingWhereNothingListensNamesTheProcess()
    {
        var path = Path.Combine(_dir, "stale.sock");
        using (var old = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            old.Bind(new UnixDomainSocketEndPoint(path)); // a crashed run's socket file, nobody listening
        }

        var e = await Assert.ThrowsAsync<IOException>(() => ControlSocket.AskAsync(path, "status", "`natkit peer run`"));
        Assert.Contains("is `natkit peer run` running?", e.Message, StringComparison.Ordinal);

        await using (ControlSocket.Listen(path, (_, _) => Task.FromResult("fresh")))
        {
            Assert.Equal("fresh", await ControlSocket.AskAsync(path, "status", "the test"));
        }

        e = await Assert.ThrowsAsync<IOException>(() => ControlSocket.AskAsync(path, "status", "`natkit peer run`"));
        Assert.Equal($"no control socket at {path} (is `natkit peer run` running?)", e.Message);
    }

    [Fact]
    public async Task AClientThatSendsNothing_DoesNotStopOthersBeingAnswered()
    {
        var path = Path.Combine(_dir, "slow.sock");
        await using var control = ControlSocket.Listen(path, (_, _) => Task.FromResult("ok"));
        using var silent = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await silent.ConnectAsync(new UnixDomainSocketEndPoint(path));
        Assert.Equal("ok", await ControlSocket.AskAsync(path, "status", "the test"));
        await silent.SendAsync(Encoding.UTF8.GetBytes("status\n"));
        var buffer = new byte[16];
        Assert.Equal("ok", Encoding.UTF8.GetString(buffer, 0, await silent.ReceiveAsync(buffer)));
    }

    [Fact]
    public void APathTooLongForAUnixSocket_IsRefusedInWords()
    {
        var path = Path.Combine(_dir, new string('x', 120) + ".sock");
        var e = Assert.Throws<IOException>(() => ControlSocket.Listen(path, (_, _) => Task.FromResult("")));
        Assert.Contains("longer than the 107 bytes", e.Message, StringComparison.Ordinal);
    }
}
