using System.Text.Json;
using NatKit.Linux;
using NatKit.Tunnel.Server;

namespace NatKit.Tunnel.Tests;

/// <summary>
/// Issue 15's "done when" in namespaces: unmodified programs (curl, ping, traceroute, a UDP socket) in a client
/// namespace whose only way out is the tunnel, through a relay and the server's NAT, to a WAN namespace.
/// </summary>
public sealed class TunnelChainTests(TunnelChainFixture chain) : IClassFixture<TunnelChainFixture>
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    private static async Task<string> Sha256Of(NetworkNamespace ns, string url, string localPort)
    {
        var (code, output, errors) = await ns.TryExecAsync("sh", ["-c", $"curl -sS -m 20 --local-port {localPort} {url} | sha256sum"],
            timeout: Deadline);
        Assert.True(code == 0, output + errors);
        return output.Split(' ')[0].Trim();
    }

    /// <summary>`--json` prints camelCase records, each with its "name" first (ignored here).</summary>
    private static readonly JsonSerializerOptions CliRecords = new(JsonSerializerDefaults.Web);

    private async Task<List<TunnelSessionInfo>> SessionsAsync()
    {
        var (code, output, errors) = await TunnelChainFixture.CliAsync("tunnel", "sessions", "--name", chain.Name, "--json");
        Assert.True(code == 0, output + errors);
        return JsonSerializer.Deserialize<List<TunnelSessionInfo>>(output, CliRecords)!; // the one --json shape: named records
    }

    [PeerFact("ip", "curl", "python3", Root = true)]
    public async Task Curl_FromAClientWhoseOnlyWayOutIsTheTunnel_GetsThePage_ThroughTheRelayAndTheServer()
    {
        Assert.Equal(chain.Files["one.bin"], await Sha256Of(chain.Client1, $"http://{TunnelChainFixture.WanAddress}/one.bin", "41000"));

        // the flow is in the server's table, from the client's session, as the external address
        var (code, output, errors) = await TunnelChainFixture.CliAsync("tunnel", "flows", "--name", chain.Name, "--json");
        Assert.True(code == 0, output + errors);
        var flows = JsonSerializer.Deserialize<List<TunnelFlowInfo>>(output, CliRecords)!;
        Assert.All(flows, f => Assert.Contains(f.Protocol, output, StringComparison.Ordinal));
        Assert.Contains(flows, f => f.Protocol == "tcp" && f.Remote == $"{TunnelChainFixture.WanAddress}:80" &&
                                    f.Outside.StartsWith(TunnelChainFixture.External + ":", StringComparison.Ordinal) && f.Session != "-");
    }

    [PeerFact("ip", "ping", "traceroute", Root = true)]
    public async Task Ping_Works_AndATracerouteShowsTheServersHop()
    {
        var (code, output, errors) = await chain.Client1.TryExecAsync("ping", ["-c", "2", "-W", "5", TunnelChainFixture.WanAddress], timeout: Deadline);
        Assert.True(code == 0, output + errors);

        (code, output, errors) = await chain.Client1.TryExecAsync("traceroute", ["-n", "-q", "1", "-w", "3", "-m", "4", TunnelChainFixture.WanAddress],
            timeout: Deadline);
        Assert.True(code == 0, output + errors);
        var hops = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(1).Select(l => l.Trim()).ToList();
        Assert.StartsWith($"1  {TunnelChainFixture.Gateway} ", hops[0], StringComparison.Ordinal); // the server, TTL decremented
        Assert.Contains(hops, h => h.Contains(TunnelChainFixture.WanAddress, StringComparison.Ordinal));
    }

    [PeerFact("ip", "python3", Root = true)]
    public async Task Udp_ToTheWan_IsEchoedBack()
    {
        const string script = "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(2)\n" +
                              "for i in range(5):\n try:\n  s.sendto(b'natkit-udp',('203.0.113.2',7))\n  print(s.recvfrom(100)[0].decode());sys.exit(0)\n except socket.timeout:\n  pass\nsys.exit(1)\n";
        var (code, output, errors) = await chain.Client1.TryExecAsync("python3", ["-c", script], timeout: Deadline);
        Assert.True(code == 0, output + errors);
        Assert.Contains("natkit-udp", output, StringComparison.Ordinal);
    }

    [PeerFact("ip", "curl", "python3", Root = true)]
    public async Task TwoClients_WithTheSameAddressAndSourcePort_FetchAtOnce_AndEachGetsItsOwnBytes()
    {
        var one = Sha256Of(chain.Client1, $"http://{TunnelChainFixture.WanAddress}/one.bin", "42000");
        var two = Sha256Of(chain.Client2, $"http://{TunnelChainFixture.WanAddress}/two.bin", "42000");
        Assert.Equal(chain.Files["one.bin"], await one);
        Assert.Equal(chain.Files["two.bin"], await two);
        var sessions = await SessionsAsync();
        Assert.All(sessions, s => Assert.Equal(TunnelChainFixture.ClientAddress, s.ClientAddress));
        Assert.Equal(sessions.Count, sessions.Select(s => s.InsideAddress).Distinct().Count());
    }

    [PeerFact("ip", Root = true)]
    public async Task AWrongToken_IsRefusedBeforeAnyPacketFlows_InOneSentence()
    {
        var (code, output, errors) = await chain.Client1.TryExecAsync("dotnet", [TunnelChainFixture.Natkit, "tunnel", "connect",
            "ws://192.168.60.1:8081/tunnel", "--token", "wrong", "--tun", "nkt9"], timeout: Deadline);
        Assert.Equal(2, code);
        Assert.Contains("wrong token", output + errors, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", output + errors, StringComparison.Ordinal); // no stack trace line
        var (_, links, _) = await chain.Client1.TryExecAsync("ip", ["link"]);
        Assert.DoesNotContain("nkt9", links, StringComparison.Ordinal); // no device was made: nothing could flow
    }

    [PeerFact("ip", "ping", Root = true)]
    public async Task ASpoofedInnerSource_IsDroppedAndCounted()
    {
        var before = (await SessionsAsync()).Sum(s => s.Spoofed);
        await chain.Client1.IpAsync(["addr", "add", "10.1.1.9/32", "dev", "nkt0"]);
        try
        {
            var (code, _, _) = await chain.Client1.TryExecAsync("ping", ["-c", "1", "-W", "2", "-I", "10.1.1.9", TunnelChainFixture.WanAddress],
                timeout: Deadline);
            Assert.NotEqual(0, code);
        }
        finally
        {
            await chain.Client1.IpAsync(["addr", "del", "10.1.1.9/32", "dev", "nkt0"]);
        }

        Assert.True((await SessionsAsync()).Sum(s => s.Spoofed) > before);
    }

    [PeerFact("ip", "ping", Root = true)]
    public async Task KillingTheRelay_TheClientsReconnect_ToTheSameSessions_AndTrafficFlowsWithinASecond()
    {
        var before = (await SessionsAsync()).ToDictionary(s => s.Id);
        var connections = chain.ClientProcess1.Output.Split("natkit tunnel: connected (#").Length - 1;

        await chain.RelayProcess.DisposeAsync(); // SIGKILL: no goodbye reaches anyone
        chain.RelayProcess = chain.StartRelay();
        await chain.ClientProcess1.WaitForOutputAsync($"connected (#{connections + 1})", TimeSpan.FromSeconds(60));
        var (code, output, errors) = await chain.Client1.TryExecAsync("ping", ["-c", "1", "-W", "1", TunnelChainFixture.WanAddress],
            timeout: Deadline);
        Assert.True(code == 0, output + errors); // one echo, answered within its one-second wait

        var after = await SessionsAsync();
        Assert.Equal(before.Count, after.Count);
        foreach (var s in after) // both clients came through that relay: both resumed their sessions
        {
            Assert.True(before.TryGetValue(s.Id, out var earlier), $"session {s.Id} is new");
            Assert.True(s.Reconnects > earlier.Reconnects);
            Assert.Equal(earlier.InsideAddress, s.InsideAddress); // same address, same flows
        }
    }

    [PeerFact("ip", "curl", "chromium", "python3", Root = true)]
    public async Task TheBrowserHop_InAHeadlessChromium_CarriesTheClientsPage()
    {
        var client = chain.Start(chain.Client3, "dotnet", [TunnelChainFixture.Natkit, "tunnel", "connect", "ws://192.168.50.1:8080/tunnel",
            "--token", TunnelChainFixture.Token, "--tun", "nkt0", "--route", "default", "--browser-listen", "192.168.62.2:8082"]);
        await client.WaitForOutputAsync("waiting for the browser relay page", TimeSpan.FromSeconds(60));

        // the browser on the LAN (in the relay's namespace, which reaches both) opens the page the server serves
        // a short directory of its own: Chromium's singleton socket path must fit in 108 bytes, which a nested TMPDIR does not
        var profile = chain.ShortDirectory("chromium");
        _ = chain.Start(chain.Relay, "env", [$"TMPDIR={profile}", TestHost.Which("chromium") ?? "chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-dev-shm-usage", $"--user-data-dir={profile}", "--remote-debugging-port=0",
            "http://192.168.50.1:8080/relay.html?client=ws://192.168.62.2:8082/tunnel"]);
        await client.WaitForOutputAsync("connected (#1)", TimeSpan.FromSeconds(90));

        Assert.Equal(chain.Files["two.bin"], await Sha256Of(chain.Client3, $"http://{TunnelChainFixture.WanAddress}/two.bin", "43000"));
    }
}
