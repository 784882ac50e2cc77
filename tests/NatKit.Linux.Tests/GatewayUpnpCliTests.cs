using NatKit.Linux;

namespace NatKit.Linux.Tests;

/// <summary>`natkit gateway run` serves UPnP IGD when its preset offers it: Debian's upnpc on the LAN host of a
/// `natkit lab netns up` topology maps a port through the gateway process.</summary>
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
            Assert.True(code == 0, output + errors);
        }
    }

    private static Task<(int ExitCode, string Output, string Errors)> Cli(string[] arguments) =>
        SystemCommand.TryRunAsync("dotnet", [Natkit, .. arguments], timeout: Deadline);
}
