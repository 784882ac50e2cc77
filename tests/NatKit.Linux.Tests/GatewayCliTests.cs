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
            Assert.Contains("\"Protocol\":\"icmp\"", output, StringComparison.Ordinal);
            Assert.Contains(GatewayTopology.PublicAddress, output, StringComparison.Ordinal);

            (code, output, errors) = await Cli(["gateway", "stats", "--name", $"nk-{tag}-g1"]);
            Assert.True(code == 0, output + errors);
            Assert.Contains("sessions", output, StringComparison.Ordinal);
        }
        finally
        {
            var (code, output, errors) = await Cli(["lab", "netns", "down", "--tag", tag]);
            Assert.True(code == 0, output + errors);
        }

        Assert.DoesNotContain(await NetworkNamespace.ListAsync(), n => n.StartsWith($"nk-{tag}-", StringComparison.Ordinal));
        var log = await File.ReadAllTextAsync(Path.Combine(GatewayControl.Directory, $"nk-{tag}-g1.log"));
        Assert.Contains("natkit gateway: stopped", log, StringComparison.Ordinal); // SIGTERM stopped it gracefully
        File.Delete(Path.Combine(GatewayControl.Directory, $"nk-{tag}-g1.log"));
        File.Delete(Path.Combine(GatewayControl.Directory, $"nk-{tag}-g1.policy.json"));
    }

    [Fact]
    public async Task AnUnknownPreset_IsOneSentence_NotAStackTrace()
    {
        var (code, output, errors) = await Cli(["lab", "netns", "up", "--preset", "no-such-nat"]);
        Assert.Equal(2, code);
        Assert.Contains("unknown preset 'no-such-nat'", output + errors, StringComparison.Ordinal);
        Assert.DoesNotContain(" at ", output + errors, StringComparison.Ordinal);
    }

    private static Task<(int ExitCode, string Output, string Errors)> Cli(string[] arguments) =>
        SystemCommand.TryRunAsync("dotnet", [Natkit, .. arguments], timeout: Deadline);
}
