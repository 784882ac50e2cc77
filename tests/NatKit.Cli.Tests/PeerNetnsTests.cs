using System.Security.Cryptography;
using System.Text.Json;
using System.Text.RegularExpressions;
using NatKit.Linux;
using NatKit.Scenarios.Matrix;
using Xunit.Abstractions;

namespace NatKit.Cli.Tests;

/// <summary>
/// `natkit peer run` as processes in two home namespaces behind kernel nftables NAT routers (the matrix's cell
/// topology: <see cref="NetnsMatrixCell"/>), with NatKit's rendezvous, a second STUN server and TURN run as
/// `natkit ... serve` processes on the internet side: `curl` in alice's home fetches a file from an HTTP server on
/// bob's LAN through a forwarded port, and `natkit peer status --json` says which path the pipe took.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed partial class PeerNetnsTests(ITestOutputHelper log) : IDisposable
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(120);

    private readonly string _dir = Directory.CreateTempSubdirectory("nk-peer-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string F(string name) => Path.Combine(_dir, name);

    [GeneratedRegex("node id ([a-z2-7]{32})")]
    private static partial Regex NodeIdLine();

    [GeneratedRegex(" by [A-Za-z]+ in ([0-9]+) ms ")]
    private static partial Regex ConnectedIn();

    /// <summary><c>masquerade random</c> on both sides leaves no direct path: the pipe goes through the TURN relay.
    /// With <c>masquerade persistent</c> on alice's side a direct path is found.</summary>
    [PeerTheory("ip", "nft", "curl", "python3", Root = true)]
    [InlineData("kernel-random", "kernel-random", "relay")]
    [InlineData("kernel-persistent", "kernel-random", "direct")]
    public async Task CurlThroughAForwardedPort_BetweenKernelNatHomes_TakesThePathTheNatsAllow(string natA, string natB, string path)
    {
        var alice = await InitAsync("alice");
        var bob = await InitAsync("bob");
        var www = Directory.CreateDirectory(F("www")).FullName;
        var payload = RandomNumberGenerator.GetBytes(4 << 20);
        await File.WriteAllBytesAsync(Path.Combine(www, "payload.bin"), payload);
        await File.WriteAllTextAsync(F("turn-users"), "peer:peer-secret\n");
        await File.WriteAllTextAsync(F("turn-password"), "peer-secret\n");
        using var timeout = new CancellationTokenSource(Deadline);

        var tag = "p" + NetworkNamespace.NewRunTag();
        await using (var cell = await NetnsMatrixCell.CreateAsync(MatrixTypes.Find(natA)!, MatrixTypes.Find(natB)!,
                         new NetnsMatrixOptions { Tag = tag, Services = false }, timeout.Token))
        {
            var rendezvous = cell.Start("rendezvous", "dotnet", [Natkit.Dll, "rendezvous", "serve", "--listen", "203.0.113.10:3478"]);
            var stun = cell.Start("rendezvous", "dotnet", [Natkit.Dll, "stun", "serve", "--listen", "203.0.113.11:3478", "--no-tcp"]);
            var turn = cell.Start("turn", "dotnet", [Natkit.Dll, "turn", "serve", "--listen", "203.0.113.20:3478", "--relay", "203.0.113.20",
                "--users-file", F("turn-users"), "--allow", "198.51.100.0/24", "--allow", "203.0.113.0/24"]);
            var web = cell.Start("b", "python3", ["-u", "-m", "http.server", "8080", "--bind", "192.168.2.10", "--directory", www]);
            foreach (var server in new[] { rendezvous, stun, turn })
            {
                await server.WaitForOutputAsync("Ctrl+C stops", timeout.Token);
            }

            await web.WaitForOutputAsync("Serving HTTP", timeout.Token);

            await File.WriteAllTextAsync(F("bob.yaml"), Config("bob", alice, "alice") + """
                expose:
                  - name: web
                    target: 192.168.2.10:8080
                    peers: [alice]

                """);
            await File.WriteAllTextAsync(F("alice.yaml"), Config("alice", bob, "bob") + """
                forward:
                  - listen: 127.0.0.1:8080
                    peer: bob
                    service: web

                """);
            var nodeB = cell.Start("b", "dotnet", [Natkit.Dll, "peer", "run", "--config", F("bob.yaml")]);
            var nodeA = cell.Start("a", "dotnet", [Natkit.Dll, "peer", "run", "--config", F("alice.yaml")]);
            await nodeB.WaitForOutputAsync(" ready;", timeout.Token);
            await nodeA.WaitForOutputAsync(" ready;", timeout.Token);
            Assert.Contains($"node {alice} (alice) ready; udp 0.0.0.0:{NetnsMatrixCell.AgentPort}, public 198.51.100.1:", nodeA.Output, StringComparison.Ordinal);

            var curl = cell.Start("a", "curl", ["-sS", "--max-time", "90", "-o", F("got.bin"), "-w", "%{time_total} s, %{speed_download} bytes/s",
                "http://127.0.0.1:8080/payload.bin"]);
            Assert.True(await curl.WaitForExitAsync(timeout.Token) == 0, curl.Errors + nodeA.Output + nodeA.Errors + nodeB.Output + nodeB.Errors);
            Assert.Equal(SHA256.HashData(payload), SHA256.HashData(await File.ReadAllBytesAsync(F("got.bin"))));
            log.WriteLine($"{natA} x {natB}: curl {payload.Length} bytes in {curl.Output.Trim()} (the first connection included)");

            var (code, output, errors) = await Natkit.RunAsync("peer", "status", "--control", F("alice.sock"), "--json");
            Assert.True(code == 0, output + errors);
            using (var doc = JsonDocument.Parse(output))
            {
                var peer = doc.RootElement.EnumerateArray().Single(r => r.GetProperty("record").GetString() == "peer");
                Assert.Equal(bob, peer.GetProperty("id").GetString());
                var taken = peer.GetProperty("path").GetString();
                log.WriteLine($"{natA} x {natB}: path {taken} by {peer.GetProperty("method").GetString()}, " +
                              $"connected in {ConnectedIn().Match(nodeA.Output).Groups[1].Value} ms");
                // Two random NATs leave only the relay. Persistent against random is birthday probing, whose budget
                // meets masquerade random's 64,512 ports 99.97% of the time (ProbeBudget): it must go direct.
                Assert.True(taken == path, output + nodeA.Output + nodeA.Errors + nodeB.Output + nodeB.Errors);
                var node = doc.RootElement.EnumerateArray().Single(r => r.GetProperty("record").GetString() == "node");
                Assert.StartsWith("198.51.100.1:", node.GetProperty("publicEndPoint").GetString(), StringComparison.Ordinal);
            }

            await nodeA.StopAsync(TimeSpan.FromSeconds(20));
            await nodeB.StopAsync(TimeSpan.FromSeconds(20));
            Assert.Equal((0, 0), (nodeA.ExitCode, nodeB.ExitCode));
            Assert.Contains("natkit peer: stopped", nodeA.Output, StringComparison.Ordinal);
            Assert.False(File.Exists(F("alice.sock")));
        }

        Assert.DoesNotContain(await NetworkNamespace.ListAsync(), n => n.StartsWith($"nk-{tag}-", StringComparison.Ordinal));
    }

    private string Config(string name, string peerId, string peerName) => $"""
        key: {F(name + ".pem")}
        name: {name}
        listen: 0.0.0.0:{NetnsMatrixCell.AgentPort}
        rendezvous: 203.0.113.10:3478
        stun: [203.0.113.10:3478, 203.0.113.11:3478]
        turn:
          server: 203.0.113.20:3478
          user: peer
          password-file: {F("turn-password")}
        peers:
          - id: {peerId}
            name: {peerName}
        control: {F(name + ".sock")}

        """;

    private async Task<string> InitAsync(string name)
    {
        var (code, output, errors) = await Natkit.RunAsync("peer", "init", "--key", F(name + ".pem"));
        Assert.True(code == 0, output + errors);
        return NodeIdLine().Match(output).Groups[1].Value;
    }
}
