using NatKit.Linux;
using NatKit.TestSupport;

namespace NatKit.Tunnel.Tests;

/// <summary>`natkit tunnel serve` stops as the proxy and TURN do: SIGTERM refuses new sessions while the connected
/// ones carry on until their clients end them or --drain-timeout passes, then the summary and exit 0. Real processes
/// and signals, in a namespace the test creates (server and clients on its loopback) and removes.</summary>
public sealed class TunnelDrainTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    private static ExternalProcess In(NetworkNamespace ns, params string[] natkit) =>
        ExternalProcess.Start("ip", ["netns", "exec", ns.Name, TestHost.Which("dotnet") ?? "dotnet", TunnelChainFixture.Natkit, .. natkit]);

    [PeerFact("ip", Root = true)]
    public async Task Sigterm_KeepsAConnectedSession_RefusesANewOne_AndExits0WhenItsClientLeaves()
    {
        var tag = NetworkNamespace.NewRunTag();
        await using var ns = await NetworkNamespace.CreateAsync($"nk-{tag}-td");
        var name = $"nk-{tag}-td";
        await using var server = In(ns, "tunnel", "serve", "--listen", "127.0.0.1:8080", "--token", "t", "--external", "198.51.100.1",
            "--tun", $"nk{tag}s", "--route", "10.200.0.0/24", "--name", name, "--drain-timeout", "600");
        await server.WaitForOutputAsync("natkit tunnel: serving", Deadline);
        await using var first = In(ns, "tunnel", "connect", "ws://127.0.0.1:8080/tunnel", "--token", "t", "--tun", $"nk{tag}a");
        await first.WaitForOutputAsync("connected (#1)", Deadline);

        server.Signal(15);
        await server.WaitForOutputAsync("draining: 1 session(s)", Deadline);

        // a new client is told the server is stopping (and never gets a session); the connected session is still listed
        await using (var late = In(ns, "tunnel", "connect", "ws://127.0.0.1:8080/tunnel", "--token", "t", "--tun", $"nk{tag}b"))
        {
            await late.WaitForOutputAsync("the server is stopping", Deadline); // it retries with backoff, as from any refusal a retry can fix
            late.Signal(15);
            Assert.Equal(0, await late.WaitForExitAsync(Deadline));
            Assert.DoesNotContain("connected (#1)", late.Output, StringComparison.Ordinal);
        }

        var (code, output, errors) = await TunnelChainFixture.CliAsync("tunnel", "sessions", "--name", name, "--json");
        Assert.True(code == 0, output + errors);
        using (var sessions = System.Text.Json.JsonDocument.Parse(output))
        {
            Assert.Single(sessions.RootElement.EnumerateArray().ToList());
        }

        Assert.False(server.HasExited);

        // the client leaves: the drain is over long before its deadline
        first.Signal(15);
        Assert.Equal(0, await first.WaitForExitAsync(Deadline));
        Assert.Equal(0, await server.WaitForExitAsync(Deadline));
        Assert.Contains("0 session(s) cut, 1 ended by their clients while draining", server.Output, StringComparison.Ordinal);
    }
}
