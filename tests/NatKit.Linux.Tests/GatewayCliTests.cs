using NatKit.Linux;
using NatKit.TestSupport;

namespace NatKit.Linux.Tests;

/// <summary>The `natkit` command as a user runs it: lab netns up, exec, gateway flows/stats, down.</summary>
public sealed class GatewayCliTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    private static string Natkit => Path.Combine(AppContext.BaseDirectory, "natkit.dll");

    [PeerFact("ip", "ping", Root = true)]
    public async Task LabNetnsUp_RunsAGatewayProcess_ThatShowsItsFlows_AndDownRemovesEverything()
    {
        var tag = "c" + NetworkNamespace.NewRunTag();
        try
        {
            var (code, output, errors) = await Cli(["lab", "netns", "up", "--tag", tag, "--preset", "symmetric"]);
            Assert.True(code == 0, output + errors);

            (code, output, errors) = await Cli(["lab", "netns", "exec", "lan", "--tag", tag, "--", "ping", "-c", "1", "-W", "3",
                GatewayTopology.WanHostAddress]);
            Assert.True(code == 0, output + errors);

            (code, output, errors) = await Cli(["gateway", "flows", "--name", $"nk-{tag}-g1", "--json"]);
            Assert.True(code == 0, output + errors);
            using (var flows = System.Text.Json.JsonDocument.Parse(output))
            {
                var icmp = Assert.Single(flows.RootElement.EnumerateArray(), f => f.GetProperty("protocol").GetString() == "icmp");
                Assert.StartsWith("icmp ", icmp.GetProperty("name").GetString(), StringComparison.Ordinal);
                Assert.StartsWith(GatewayTopology.PublicAddress, icmp.GetProperty("outside").GetString(), StringComparison.Ordinal);
            }

            (code, output, errors) = await Cli(["gateway", "stats", "--name", $"nk-{tag}-g1"]);
            Assert.True(code == 0, output + errors);
            Assert.Contains("sessions", output, StringComparison.Ordinal);

            (code, output, errors) = await Cli(["gateway", "stats", "--name", $"nk-{tag}-g1", "--json"]);
            Assert.True(code == 0, output + errors);
            using (var stats = System.Text.Json.JsonDocument.Parse(output))
            {
                var record = Assert.Single(stats.RootElement.EnumerateArray().ToList());
                Assert.Equal($"nk-{tag}-g1", record.GetProperty("name").GetString());
                Assert.True(record.GetProperty("dataPlane").GetProperty("insideRead").GetInt64() > 0);
            }
        }
        finally
        {
            var (code, output, errors) = await Cli(["lab", "netns", "down", "--tag", tag]);
            Assert.True(code == 0, output + errors);
        }

        Assert.DoesNotContain(await NetworkNamespace.ListAsync(), n => n.StartsWith($"nk-{tag}-", StringComparison.Ordinal));
        var log = await File.ReadAllTextAsync(GatewayControl.LogPathFor($"nk-{tag}-g1"));
        Assert.Contains("natkit gateway: stopped", log, StringComparison.Ordinal); // SIGTERM stopped it gracefully
        File.Delete(GatewayControl.LogPathFor($"nk-{tag}-g1")); // `down` removed the policy; its log is kept for reading
    }

    [Fact]
    public async Task AnUnknownPreset_IsOneSentence_NotAStackTrace()
    {
        var (code, output, errors) = await Cli(["lab", "netns", "up", "--preset", "no-such-nat"]);
        Assert.Equal(2, code);
        Assert.Contains("--preset no-such-nat: no such preset; use one of", output + errors, StringComparison.Ordinal);
        Assert.DoesNotContain(" at ", output + errors, StringComparison.Ordinal);
    }

    [PeerFact("ip", "nft", "ping", Root = true)]
    public async Task LabNetnsUp_TopologyFileWithKernelNat_CarriesPing_AndDownLeavesNoNamespace()
    {
        var tag = "k" + NetworkNamespace.NewRunTag();
        var file = await WriteHomeTopologyAsync(tag, "");
        try
        {
            var (code, output, errors) = await Cli(["lab", "netns", "up", file, "--nat", "kernel", "--tag", tag]);
            Assert.True(code == 0, output + errors);

            (code, output, errors) = await Cli(["lab", "netns", "exec", "alice", "--tag", tag, "--", "ping", "-c", "1", "-W", "3", "203.0.113.100"]);
            Assert.True(code == 0, output + errors);

            // the symmetric preset became the reference rule for a symmetric NAT, and no NatKit gateway runs
            (code, output, errors) = await Cli(["lab", "netns", "exec", "nat", "--tag", tag, "--", "nft", "list", "ruleset"]);
            Assert.True(code == 0, output + errors);
            Assert.Contains("masquerade random", output, StringComparison.Ordinal);
            Assert.False(File.Exists(GatewayControl.PathFor($"nk-{tag}-nat")));

            (code, output, errors) = await Cli(["lab", "netns", "list"]);
            Assert.Contains($"nk-{tag}-nat", output, StringComparison.Ordinal);
        }
        finally
        {
            var (code, output, errors) = await Cli(["lab", "netns", "down", "--tag", tag]);
            File.Delete(file);
            Assert.True(code == 0, output + errors);
        }

        Assert.DoesNotContain(await NetworkNamespace.ListAsync(), n => n.StartsWith($"nk-{tag}-", StringComparison.Ordinal));
    }

    /// <summary>An impaired topology comes up with netem, or, on a kernel without it, is refused in one sentence that
    /// names the way out; with --no-impairments it comes up either way.</summary>
    [PeerFact("ip", "nft", "tc", Root = true)]
    public async Task LabNetnsUp_ImpairedTopology_UsesNetem_OrNamesTheWayOut_AndNoImpairmentsBringsItUp()
    {
        var tag = "n" + NetworkNamespace.NewRunTag();
        var file = await WriteHomeTopologyAsync(tag, ", link: { latency: 5ms, loss: 0.1% }");
        try
        {
            var (code, output, errors) = await Cli(["lab", "netns", "up", file, "--nat", "kernel", "--tag", tag]);
            if (code == 0)
            {
                (code, output, errors) = await Cli(["lab", "netns", "exec", "alice", "--tag", tag, "--", "tc", "qdisc", "show", "dev", "eth0"]);
                Assert.Contains("netem", output, StringComparison.Ordinal);
            }
            else
            {
                Assert.Equal(2, code);
                Assert.Contains("has no sch_netem: load it (modprobe sch_netem) or leave the impairments out (natkit lab netns up --no-impairments).",
                    Flat(output + errors), StringComparison.Ordinal);
                Assert.DoesNotContain(await NetworkNamespace.ListAsync(), n => n.StartsWith($"nk-{tag}-", StringComparison.Ordinal));
            }

            _ = await Cli(["lab", "netns", "down", "--tag", tag]);
            (code, output, errors) = await Cli(["lab", "netns", "up", file, "--nat", "kernel", "--tag", tag, "--no-impairments"]);
            Assert.True(code == 0, output + errors);
            (code, output, errors) = await Cli(["lab", "netns", "exec", "alice", "--tag", tag, "--", "tc", "qdisc", "show", "dev", "eth0"]);
            Assert.DoesNotContain("netem", output, StringComparison.Ordinal);
        }
        finally
        {
            _ = await Cli(["lab", "netns", "down", "--tag", tag]);
            File.Delete(file);
        }

        Assert.DoesNotContain(await NetworkNamespace.ListAsync(), n => n.StartsWith($"nk-{tag}-", StringComparison.Ordinal));
    }

    [Fact]
    public async Task KernelNat_ForAPresetWithoutAKernelTwin_IsOneSentence_BeforeAnythingIsBuilt()
    {
        var (code, output, errors) = await Cli(["lab", "netns", "up", "two-homes", "--nat", "kernel"]);
        Assert.Equal(2, code);
        Assert.Contains("router nat-a (full-cone) has no kernel NAT twin", Flat(output + errors), StringComparison.Ordinal);
        Assert.DoesNotContain(" at ", output + errors, StringComparison.Ordinal);

        (code, output, errors) = await Cli(["lab", "netns", "up", "--nat", "kernel", "--preset", "restricted-cone"]);
        Assert.Equal(2, code);
        Assert.Contains("preset restricted-cone has no kernel NAT twin", Flat(output + errors), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ReorderingLinks_AreRefusedInNamespaces_InOneSentence()
    {
        var file = Path.Combine(Path.GetTempPath(), $"natkit-reorder-{NetworkNamespace.NewRunTag()}.yaml");
        await File.WriteAllTextAsync(file, """
            segments:
              lan: { prefix: 10.1.0.0/24, link: { latency: 5ms, reorder: 10% } }
            hosts:
              a: { segment: lan, address: 10.1.0.1 }
            """);
        try
        {
            var (code, output, errors) = await Cli(["lab", "netns", "up", file]);
            Assert.Equal(2, code);
            Assert.Contains("segments.lan.link: reorder is not available in namespaces", Flat(output + errors), StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(file);
        }
    }

    /// <summary>A topology file: alice at home behind a symmetric router "nat", a server on the internet; the home
    /// segment gets <paramref name="homeLink"/> (", link: {...}" or nothing).</summary>
    private static async Task<string> WriteHomeTopologyAsync(string tag, string homeLink)
    {
        var file = Path.Combine(Path.GetTempPath(), $"natkit-{tag}.yaml");
        await File.WriteAllTextAsync(file, $$"""
            segments:
              internet: { prefix: 0.0.0.0/0 }
              home: { prefix: 192.168.1.0/24{{homeLink}} }
            routers:
              nat: { preset: symmetric, inside: { segment: home, address: 192.168.1.1 }, outside: { segment: internet, address: 198.51.100.1 } }
            hosts:
              server: { segment: internet, address: 203.0.113.100 }
              alice: { segment: home, address: 192.168.1.10 }
            """);
        return file;
    }

    /// <summary>The console wraps long messages: compare them as one line.</summary>
    private static string Flat(string text) => string.Join(' ', text.Split(['\n', '\r', ' '], StringSplitOptions.RemoveEmptyEntries));

    private static Task<(int ExitCode, string Output, string Errors)> Cli(string[] arguments) =>
        SystemCommand.TryRunAsync("dotnet", [Natkit, .. arguments], timeout: Deadline);
}
