using System.Net;
using System.Text;
using NatKit.Linux;

namespace NatKit.Linux.Tests;

/// <summary>`natkit gateway run` serves UPnP IGD when its preset offers it: Debian's upnpc on the LAN host of a
/// `natkit lab netns up` topology (a preset's, and a topology file's) maps a port through the gateway process.</summary>
public sealed class GatewayUpnpCliTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(90);

    private static string Natkit => Path.Combine(AppContext.BaseDirectory, "natkit.dll");

    [PeerFact("ip", "upnpc", Root = true)]
    public async Task Upnpc_OnTheLan_MapsAPort_ThroughTheGatewayProcess()
    {
        var tag = "u" + NetworkNamespace.NewRunTag();
        try
        {
            var (code, output, errors) = await Cli(["lab", "netns", "up", "--tag", tag, "--preset", "symmetric"]);
            Assert.True(code == 0, output + errors);

            // -i: miniupnpc calls an IGD whose external address is reserved (TEST-NET-2 here) "not connected"
            (code, output, errors) = await Cli(["lab", "netns", "exec", "lan", "--tag", tag, "--", "upnpc", "-i", "-m",
                GatewayTopology.LanHostAddress, "-a", GatewayTopology.LanHostAddress, "7000", "7000", "UDP", "600"]);
            Assert.True(code == 0, output + errors);
            Assert.Contains("ExternalIPAddress = " + GatewayTopology.PublicAddress, output, StringComparison.Ordinal);
            Assert.Contains("is redirected to internal " + GatewayTopology.LanHostAddress + ":7000", output,
                StringComparison.Ordinal);

            (code, output, errors) = await Cli(["lab", "netns", "exec", "lan", "--tag", tag, "--", "upnpc", "-i", "-m",
                GatewayTopology.LanHostAddress, "-l"]);
            Assert.True(code == 0, output + errors);
            Assert.Contains("UDP  7000->" + GatewayTopology.LanHostAddress + ":7000", output, StringComparison.Ordinal);
        }
        finally
        {
            var (code, output, errors) = await Cli(["lab", "netns", "down", "--tag", tag]);
            RemoveGatewayLogs(tag);
            Assert.True(code == 0, output + errors);
        }
    }

    /// <summary>UPnP on the routers of a topology-file namespace lab (`natkit lab netns up two-homes`): there the
    /// segment's namespace owns the router's inside address, so its rules send the LAN's TCP and SSDP for that address
    /// to the gateway's TUN, and a tc filter hands it the multicast searches.</summary>
    [PeerFact("ip", "tc", "upnpc", Root = true)]
    public async Task Upnpc_OnAliceInTwoHomes_FindsNatA_AndMapsAPortTheServerReaches()
    {
        var tag = "t" + NetworkNamespace.NewRunTag();
        try
        {
            var (code, output, errors) = await Cli(["lab", "netns", "up", "two-homes", "--no-impairments", "--tag", tag]);
            Assert.True(code == 0, output + errors);

            using var timeout = new CancellationTokenSource(Deadline);
            var alice = new NamespaceNetwork($"nk-{tag}-alice");
            await using var service = await alice.BindUdpAsync(new IPEndPoint(IPAddress.Parse("192.168.1.10"), 7000), timeout.Token);

            // discovery by multicast M-SEARCH (no -u): the search has to reach nat-a's gateway through the segment.
            // -i: miniupnpc calls an IGD whose external address is reserved (TEST-NET-2 here) "not connected"
            (code, output, errors) = await Cli(["lab", "netns", "exec", "alice", "--tag", tag, "--", "upnpc", "-i", "-m",
                "192.168.1.10", "-a", "192.168.1.10", "7000", "7000", "UDP", "600"]);
            Assert.True(code == 0, output + errors);
            Assert.Contains("desc: http://192.168.1.1:", output, StringComparison.Ordinal);
            Assert.Contains("ExternalIPAddress = 198.51.100.1", output, StringComparison.Ordinal);
            Assert.Contains("external 198.51.100.1:7000 UDP is redirected to internal 192.168.1.10:7000", output, StringComparison.Ordinal);

            // nat-a is a full cone, so the server could get in once alice sent out; she has not: the mapping lets it in
            var server = new NamespaceNetwork($"nk-{tag}-server");
            await using var outside = await server.BindUdpAsync(new IPEndPoint(IPAddress.Parse("203.0.113.100"), 0), timeout.Token);
            await outside.SendToAsync("through the topology"u8.ToArray(), new IPEndPoint(IPAddress.Parse("198.51.100.1"), 7000), timeout.Token);
            var buffer = new byte[100];
            var got = await service.ReceiveFromAsync(buffer, timeout.Token);
            Assert.Equal("through the topology", Encoding.ASCII.GetString(buffer, 0, got.Length));

            (code, output, errors) = await Cli(["lab", "netns", "exec", "alice", "--tag", tag, "--", "upnpc", "-i", "-m",
                "192.168.1.10", "-d", "7000", "UDP"]);
            Assert.True(code == 0, output + errors);
            (code, output, errors) = await Cli(["lab", "netns", "exec", "alice", "--tag", tag, "--", "upnpc", "-i", "-m",
                "192.168.1.10", "-l"]);
            Assert.True(code == 0, output + errors);
            Assert.DoesNotContain("7000->192.168.1.10:7000", output, StringComparison.Ordinal);
        }
        finally
        {
            var (code, output, errors) = await Cli(["lab", "netns", "down", "--tag", tag]);
            RemoveGatewayLogs(tag);
            Assert.True(code == 0, output + errors);
        }

        Assert.DoesNotContain(await NetworkNamespace.ListAsync(), n => n.StartsWith($"nk-{tag}-", StringComparison.Ordinal));
    }

    /// <summary>The gateways' logs, which `lab netns down` keeps for an operator to read: a test's go with it.</summary>
    private static void RemoveGatewayLogs(string tag)
    {
        if (Directory.Exists(GatewayControl.Directory))
        {
            foreach (var file in Directory.EnumerateFiles(GatewayControl.Directory, $"nk-{tag}-*.log"))
            {
                File.Delete(file);
            }
        }
    }

    private static Task<(int ExitCode, string Output, string Errors)> Cli(string[] arguments) =>
        SystemCommand.TryRunAsync("dotnet", [Natkit, .. arguments], timeout: Deadline);
}
