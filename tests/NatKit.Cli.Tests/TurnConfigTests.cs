using System.Globalization;
using System.Net;
using NatKit.Net;
using NatKit.Turn.Client;

namespace NatKit.Cli.Tests;

/// <summary>`natkit turn serve --config`: a config file and a users file instead of secrets in argv, SIGHUP
/// re-reading the users without touching live allocations, SIGTERM draining to exit 0.</summary>
public sealed class TurnConfigTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("natkit-turnconfig-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string WriteConfig(string users)
    {
        File.WriteAllText(Path.Combine(_dir, "users.txt"), users);
        var config = Path.Combine(_dir, "turn.yaml");
        File.WriteAllText(config, $"""
            # natkit turn serve --config turn.yaml
            listen: 127.0.0.1:0
            allow: [127.0.0.0/8]
            users-file: {Path.Combine(_dir, "users.txt")}
            realm: ops.example
            drain-timeout: 0
            """);
        return config;
    }

    private static TurnClientOptions Client(int port, string user, string password) =>
        new(new IPEndPoint(IPAddress.Loopback, port), user, password) { KeepAlive = false };

    [PeerFact("turnutils_uclient")]
    public async Task AConfigAndAUsersFile_ServeTurnutils_SighupAddsAUserWithoutDroppingAnAllocation_SigtermDrains()
    {
        var config = WriteConfig("# operators\nalice:first-secret\n");
        await using var server = await Natkit.StartAsync("Ctrl+C stops", "turn", "serve", "--config", config);
        var port = Natkit.PortAfter(server.Output, "udp       │ 127.0.0.1:");
        Assert.DoesNotContain("first-secret", server.Output, StringComparison.Ordinal);

        var (code, output, errors) = await ExternalProcess.RunAsync("turnutils_uclient",
            ["-u", "alice", "-w", "first-secret", "-r", "ops.example", "-p", port.ToString(CultureInfo.InvariantCulture),
                "-y", "-n", "10", "-m", "1", "-l", "100", "127.0.0.1"], Natkit.Deadline);
        Assert.True(code == 0, output + errors);
        Assert.Contains("tot_send_msgs=40, tot_recv_msgs=40", output + errors, StringComparison.Ordinal);

        using var cts = new CancellationTokenSource(Natkit.Deadline);
        await using var alice = await TurnClient.AllocateAsync(SystemNetwork.Instance, Client(port, "alice", "first-secret"), cts.Token);
        await Assert.ThrowsAnyAsync<Exception>(() =>
            TurnClient.AllocateAsync(SystemNetwork.Instance, Client(port, "bob", "second-secret"), cts.Token));

        await File.AppendAllTextAsync(Path.Combine(_dir, "users.txt"), "bob:second-secret\n", cts.Token);
        server.Signal(Natkit.SigHup);
        await server.WaitForOutputAsync("reloaded: 2 user(s)", Natkit.Deadline);

        await using var bob = await TurnClient.AllocateAsync(SystemNetwork.Instance, Client(port, "bob", "second-secret"), cts.Token);
        await alice.RefreshAsync(cancellationToken: cts.Token); // alice's allocation lived through the reload
        Assert.DoesNotContain($"from {alice.LocalEndPoint} deleted", server.Output, StringComparison.Ordinal);

        Assert.Equal(0, await Natkit.StopAsync(server));
        // alice's and bob's (and any turnutils_uclient left behind) released by the drain
        Assert.Matches("stopped: [2-9] allocation\\(s\\) released", server.Output);
        Assert.Contains("deleted (server stopping)", server.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Sigterm_RefusesNewAllocationsWith508_WhileALiveOneRelaysOn_UntilItsClientDeletesIt()
    {
        var config = WriteConfig("alice:first-secret\n"); // its drain-timeout 0 is overridden by the flag
        await using var server = await Natkit.StartAsync("Ctrl+C stops", "turn", "serve", "--config", config,
            "--drain-timeout", "600");
        var port = Natkit.PortAfter(server.Output, "udp       │ 127.0.0.1:");
        using var cts = new CancellationTokenSource(Natkit.Deadline);
        await using var alice = await TurnClient.AllocateAsync(SystemNetwork.Instance, Client(port, "alice", "first-secret"), cts.Token);

        server.Signal(Natkit.SigTerm);
        await server.WaitForOutputAsync("draining: 1 allocation(s)", Natkit.Deadline);
        var refused = await Assert.ThrowsAsync<TurnException>(() =>
            TurnClient.AllocateAsync(SystemNetwork.Instance, Client(port, "alice", "first-secret"), cts.Token));
        Assert.Equal(508, refused.Code);
        await alice.RefreshAsync(cancellationToken: cts.Token); // the live allocation is served on
        Assert.False(server.HasExited);

        await alice.DeallocateAsync(cts.Token);
        Assert.Equal(0, await server.WaitForExitAsync(Natkit.Deadline));
        Assert.Contains("stopped: 0 allocation(s) released, 1 ended by their clients while draining", server.Output,
            StringComparison.Ordinal);
    }

    [Fact]
    public async Task ABadReload_IsLogged_AndTheServerKeepsItsUsers()
    {
        var config = WriteConfig("alice:first-secret\n");
        await using var server = await Natkit.StartAsync("Ctrl+C stops", "turn", "serve", "--config", config);
        var port = Natkit.PortAfter(server.Output, "udp       │ 127.0.0.1:");
        await File.WriteAllTextAsync(Path.Combine(_dir, "users.txt"), "no colon here\n");
        server.Signal(Natkit.SigHup);
        await server.WaitForOutputAsync("reload refused", Natkit.Deadline);
        Assert.Contains("--users-file", server.Output, StringComparison.Ordinal);

        using var cts = new CancellationTokenSource(Natkit.Deadline);
        await using var alice = await TurnClient.AllocateAsync(SystemNetwork.Instance, Client(port, "alice", "first-secret"), cts.Token);
        Assert.Equal(0, await Natkit.StopAsync(server));
    }

    [Fact]
    public async Task TheCommandLine_WinsOverTheFile_AndAnUnknownKeyIsRefusedWithItsLine()
    {
        var config = WriteConfig("alice:x\n");
        await using (var server = await Natkit.StartAsync("Ctrl+C stops", "turn", "serve", "--config", config, "--listen", "[::1]:0"))
        {
            Assert.Contains("udp       │ [::1]:", server.Output, StringComparison.Ordinal);
            Assert.Equal(0, await Natkit.StopAsync(server));
        }

        await File.AppendAllTextAsync(config, "\nlisten-port: 3478\n");
        Natkit.AssertRefused(await Natkit.RunAsync("turn", "serve", "--config", config),
            $"--config {config}: line 7: unknown key 'listen-port'; keys are this verb's flags without '--': ");

        await File.WriteAllTextAsync(config, "listen: 127.0.0.1:99999\nuser: [a:b]\n");
        Natkit.AssertRefused(await Natkit.RunAsync("turn", "serve", "--config", config),
            $"--config {config}: --listen 127.0.0.1:99999: port 99999 is out of range");
    }
}
