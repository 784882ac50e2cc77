using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace NatKit.Cli.Tests;

/// <summary>`natkit peer init|run|status` as a user runs them: help, the key file, one sentence for each mistake,
/// and two nodes on loopback piping bytes through a forwarded port, seen by `status --json`, stopped by SIGTERM.</summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed partial class PeerCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("natkit-peercli-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string F(string name) => Path.Combine(_dir, name);

    [GeneratedRegex("node id ([a-z2-7]{32})")]
    private static partial Regex NodeIdLine();

    private async Task<string> InitAsync(string key)
    {
        var (code, output, errors) = await Natkit.RunAsync("peer", "init", "--key", key);
        Assert.True(code == 0, output + errors);
        var m = NodeIdLine().Match(output);
        Assert.True(m.Success, output);
        return m.Groups[1].Value;
    }

    [Fact]
    public async Task Help_ListsTheVerbs_AndTheirFlags()
    {
        var (code, output, _) = await Natkit.RunAsync("peer", "--help");
        Assert.Equal(0, code);
        foreach (var verb in new[] { "init", "run", "status" }) Assert.Contains(verb, output, StringComparison.Ordinal);
        (code, output, _) = await Natkit.RunAsync("peer", "init", "--help");
        Assert.Equal(0, code);
        Assert.Contains("--force", output, StringComparison.Ordinal);
        (code, output, _) = await Natkit.RunAsync("peer", "run", "--help");
        Assert.Equal(0, code);
        Assert.Contains("--config", output, StringComparison.Ordinal);
        (code, output, _) = await Natkit.RunAsync("peer", "status", "--help");
        Assert.Equal(0, code);
        Assert.Contains("--json", output, StringComparison.Ordinal);
        Assert.Contains("--control", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Init_WritesAnOwnerOnlyKey_InADirectoryItMakes_AndRefusesToOverwriteWithoutForce()
    {
        var key = F("keys/node.pem");
        var id = await InitAsync(key);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(key));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(F("keys")));
        var pem = await File.ReadAllTextAsync(key);
        Assert.Contains("PRIVATE KEY", pem, StringComparison.Ordinal);

        Natkit.AssertRefused(await Natkit.RunAsync("peer", "init", "--key", key),
            $"--key {key}: a key exists there already; keep it, or replace it (and the node id) with --force.");
        Assert.Equal(pem, await File.ReadAllTextAsync(key)); // the identity is kept

        var (code, output, errors) = await Natkit.RunAsync("peer", "init", "--key", key, "--force");
        Assert.True(code == 0, output + errors);
        Assert.NotEqual(id, NodeIdLine().Match(output).Groups[1].Value);
    }

    private const string Bob = "klagyk5fkfrvyk3l2t26sfwlxdxiqyar";

    public static TheoryData<string, string> BadConfigs => new()
    {
        { "rendezvous: 127.0.0.1:3478\nlisten: 127.0.0.1:0\nbogus: 1", "line 4: bogus: unknown key 'bogus'" },
        { "rendezvous: 127.0.0.1:3478\nforward: [{listen: 127.0.0.1:0, peer: carol, service: web}]", "line 3: forward[0].peer: 'carol' is neither a node id nor the name of a peer" },
        { "rendezvous: localhost", "line 2: rendezvous: localhost: 'localhost' is not an IP address" },
        { "rendezvous: 127.0.0.1\nlisten: 127.0.0.1:0\nturn: {server: 127.0.0.1, user: a, password-env: NATKIT_TEST_UNSET_TURN_PASSWORD}", "turn.password-env: the environment variable NATKIT_TEST_UNSET_TURN_PASSWORD is not set." },
        { $"rendezvous: 127.0.0.1\nlisten: 127.0.0.1:0\nexpose: [{{name: '{new string('s', 70)}', target: 127.0.0.1:80}}]", "line 4: expose[0].name: a service name is 1 to 64 bytes." },
    };

    [Theory]
    [MemberData(nameof(BadConfigs))]
    public async Task Run_ABadConfig_IsOneSentenceNamingTheKey_Exit2(string config, string expected)
    {
        var key = F("node.pem");
        await InitAsync(key);
        var file = F("node.yaml");
        await File.WriteAllTextAsync(file, $"key: {key}\n{config}\n"); // the config's lines count from 2
        Natkit.AssertRefused(await Natkit.RunAsync("peer", "run", "--config", file), $"--config {file}: {expected}");
    }

    [Fact]
    public async Task Run_AMissingOrLooseKey_OrAMissingConfig_IsOneSentence_Exit2()
    {
        var file = F("node.yaml");
        var key = F("absent.pem");
        await File.WriteAllTextAsync(file, $"key: {key}\nrendezvous: 127.0.0.1\nlisten: 127.0.0.1:0\n");
        Natkit.AssertRefused(await Natkit.RunAsync("peer", "run", "--config", file),
            $"--config {file}: key: {key} does not exist; make it with natkit peer init --key {key}.");

        key = F("loose.pem");
        await InitAsync(key);
        File.SetUnixFileMode(key, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        await File.WriteAllTextAsync(file, $"key: {key}\nrendezvous: 127.0.0.1\nlisten: 127.0.0.1:0\n");
        Natkit.AssertRefused(await Natkit.RunAsync("peer", "run", "--config", file),
            $"--config {file}: key: key file {key} is accessible by others (mode 644); run chmod 600 {key}.");

        Natkit.AssertRefused(await Natkit.RunAsync("peer", "run", "--config", F("none.yaml")), $"--config {F("none.yaml")}: cannot be read");
        Natkit.AssertRefused(await Natkit.RunAsync("peer", "run"), "Option '--config' is required.");
    }

    [Fact]
    public async Task Status_WithNoNodeRunning_NamesTheFlagAndTheSocket_Exit2()
    {
        Natkit.AssertRefused(await Natkit.RunAsync("peer", "status", "--control", F("none.sock")),
            $"--control {F("none.sock")}: no control socket at {F("none.sock")} (is `natkit peer run` running?).");
        Natkit.AssertRefused(await Natkit.RunAsync("peer", "status", "--name", "nk-test-no-such-node"),
            "--name nk-test-no-such-node: no control socket at ");
        Natkit.AssertRefused(await Natkit.RunAsync("peer", "status", "--control", F("none.sock"), "--interval", "2"),
            "--interval 2: only with --watch.");
        Natkit.AssertRefused(await Natkit.RunAsync("peer", "status", "--control", F("none.sock"), "--watch", "--interval", "0"),
            "--interval 0: must be 0.1 to 3600 seconds.");
        Natkit.AssertRefused(await Natkit.RunAsync("peer", "status", "--control", F("none.sock"), "--watch"),
            $"--control {F("none.sock")}: no control socket at {F("none.sock")} (is `natkit peer run` running?).");
    }

    /// <summary>A rendezvous and two nodes as processes on loopback: alice forwards a port to the service bob
    /// exposes (a TCP server in this test that sends 1 MiB and waits for the client's FIN); the bytes arrive whole,
    /// `status --json` shows the direct path and the open pipe's counts, and SIGTERM stops each node with exit 0,
    /// leaving no control socket.</summary>
    [Fact]
    public async Task TwoNodesOnLoopback_PipeBytesThroughAForwardedPort_StatusShowsThePipe_AndSigtermStopsCleanly()
    {
        var payload = RandomNumberGenerator.GetBytes(1 << 20);
        using var service = new TcpListener(IPAddress.Loopback, 0);
        service.Start();
        var serving = ServeOnceAsync(service, payload);

        var alice = await InitAsync(F("alice.pem"));
        var bob = await InitAsync(F("bob.pem"));
        await using var rendezvous = await Natkit.StartAsync("Ctrl+C stops", "rendezvous", "serve", "--listen", "127.0.0.1:0");
        var rv = Natkit.PortAfter(rendezvous.Output, "127.0.0.1:");

        await File.WriteAllTextAsync(F("bob.yaml"), $"""
            key: {F("bob.pem")}
            name: bob
            listen: 127.0.0.1:0
            rendezvous: 127.0.0.1:{rv}
            peers:
              - id: {alice}
                name: alice
            expose:
              - name: web
                target: 127.0.0.1:{((IPEndPoint)service.LocalEndpoint).Port}
                peers: [alice]
            control: {F("bob.sock")}
            """);
        await File.WriteAllTextAsync(F("alice.json"), $$"""
            {"key": "{{F("alice.pem")}}", "name": "alice", "listen": "127.0.0.1:0", "rendezvous": "127.0.0.1:{{rv}}",
             "peers": [{"id": "{{bob}}", "name": "bob"}],
             "forward": [{"listen": "127.0.0.1:0", "peer": "bob", "service": "web"}], "control": "{{F("alice.sock")}}"}
            """);
        await using var nodeB = await Natkit.StartAsync(" ready;", "peer", "run", "--config", F("bob.yaml"));
        await using var nodeA = await Natkit.StartAsync(" ready;", "peer", "run", "--config", F("alice.json"));
        Assert.Contains($"node {alice} (alice) ready; udp 127.0.0.1:", nodeA.Output, StringComparison.Ordinal);
        Assert.Contains($"control {F("alice.sock")}", nodeA.Output, StringComparison.Ordinal);
        var forward = Natkit.PortAfter(nodeA.Output, "forward 127.0.0.1:");

        // --watch --json: a whole status array per line, asked again every --interval: the first shows no pipe, a
        // later one the pipe the client below opens; Ctrl+C ends it with exit 0
        await using var watching = await Natkit.StartAsync("\"record\":\"node\"", "peer", "status", "--control", F("alice.sock"), "--json", "--watch", "--interval", "0.2");
        Assert.DoesNotContain("\"record\":\"pipe\"", watching.Output, StringComparison.Ordinal);

        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, forward);
        var stream = client.GetStream();
        var got = new byte[payload.Length];
        await stream.ReadExactlyAsync(got);
        Assert.Equal(payload, got);

        await watching.WaitForOutputAsync("\"record\":\"pipe\"", Natkit.Deadline);
        Assert.Equal(0, await Natkit.StopAsync(watching, Natkit.SigInt));
        var lines = watching.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length >= 2, watching.Output);
        foreach (var line in lines)
        {
            using var snapshot = JsonDocument.Parse(line);
            Assert.Equal(alice, snapshot.RootElement.EnumerateArray().Single(r => r.GetProperty("record").GetString() == "node").GetProperty("id").GetString());
        }

        var (code, output, errors) = await Natkit.RunAsync("peer", "status", "--control", F("alice.sock"), "--json");
        Assert.True(code == 0, output + errors);
        using (var doc = JsonDocument.Parse(output))
        {
            var records = doc.RootElement.EnumerateArray().ToList();
            var node = records.Single(r => r.GetProperty("record").GetString() == "node");
            Assert.Equal(alice, node.GetProperty("id").GetString());
            Assert.StartsWith("127.0.0.1:", node.GetProperty("publicEndPoint").GetString(), StringComparison.Ordinal);
            var peer = records.Single(r => r.GetProperty("record").GetString() == "peer");
            Assert.Equal((bob, "bob", "direct"), (peer.GetProperty("id").GetString(), peer.GetProperty("name").GetString(), peer.GetProperty("path").GetString()));
            var pipe = records.Single(r => r.GetProperty("record").GetString() == "pipe");
            Assert.Equal(("forward", "web", "direct"), (pipe.GetProperty("kind").GetString(), pipe.GetProperty("service").GetString(), pipe.GetProperty("path").GetString()));
            Assert.Equal(payload.Length, pipe.GetProperty("bytesFromPeer").GetInt64());
            Assert.Equal(0, pipe.GetProperty("bytesToPeer").GetInt64());
        }

        (code, output, errors) = await Natkit.RunAsync("peer", "status", "--control", F("bob.sock"));
        Assert.True(code == 0, output + errors);
        Natkit.AssertPlain(output);
        Assert.Contains("exposed", output, StringComparison.Ordinal);
        Assert.Contains("1,048,576", output, StringComparison.Ordinal); // bob's side of the pipe sent it all

        client.Client.Shutdown(SocketShutdown.Send);
        Assert.Equal(0, await stream.ReadAsync(new byte[1])); // the service saw our FIN through the pipe and closed
        await serving;

        Assert.Equal(0, await Natkit.StopAsync(nodeA));
        Assert.Equal(0, await Natkit.StopAsync(nodeB, Natkit.SigInt));
        Assert.Contains("natkit peer: stopped", nodeA.Output, StringComparison.Ordinal);
        Assert.Contains("natkit peer: stopped", nodeB.Output, StringComparison.Ordinal);
        Assert.False(File.Exists(F("alice.sock")));
        Assert.False(File.Exists(F("bob.sock")));
    }

    private static async Task ServeOnceAsync(TcpListener listener, byte[] payload)
    {
        using var connection = await listener.AcceptTcpClientAsync();
        var stream = connection.GetStream();
        await stream.WriteAsync(payload);
        var rest = new byte[16];
        while (await stream.ReadAsync(rest) > 0)
        {
        }
    }
}
