using System.Net;
using System.Text;
using NatKit.Linux;
using NatKit.TestSupport;

namespace NatKit.Linux.Tests;

public sealed class GatewayTopologyTests
{
    [PeerFact("ip", "nft", "ping", Root = true)]
    public async Task KernelMasquerade_CarriesPing_AndItsGatewayHasTheNatTable()
    {
        await using var topology = await GatewayTopology.CreateKernelAsync(KernelNatKind.MasqueradePersistent);
        var (code, output, errors) = await topology.Lan.TryExecAsync("ping",
            ["-c", "1", "-W", "2", GatewayTopology.WanHostAddress]);
        Assert.True(code == 0, output + errors);
        var ruleset = await topology.Gateways[0].ExecAsync("nft", ["list", "ruleset"]);
        Assert.Contains("masquerade persistent", ruleset, StringComparison.Ordinal);
    }

    [PeerFact("ip", "nft", Root = true)]
    public async Task KernelDmz_SendsFromTheDmzPort_AndLetsUnsolicitedDatagramsIn()
    {
        await using var topology = await GatewayTopology.CreateKernelAsync(KernelNatKind.Dmz, dmzInsidePort: 4000, dmzPort: 5555);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await using var lan = await new NamespaceNetwork(topology.Lan.Name).BindUdpAsync(new IPEndPoint(IPAddress.Any, 4000), timeout.Token);
        await using var wan = await new NamespaceNetwork(topology.Wan.Name).BindUdpAsync(
            new IPEndPoint(IPAddress.Parse(GatewayTopology.WanHostAddress), 7000), timeout.Token);
        var buffer = new byte[100];

        // unsolicited, from the WAN to the DMZ port: reaches the LAN host's port
        await wan.SendToAsync(Encoding.ASCII.GetBytes("in"), new IPEndPoint(IPAddress.Parse(GatewayTopology.PublicAddress), 5555), timeout.Token);
        var got = await lan.ReceiveFromAsync(buffer, timeout.Token);
        Assert.Equal("in", Encoding.ASCII.GetString(buffer, 0, got.Length));

        // out from the LAN host: leaves from the DMZ port
        await lan.SendToAsync(Encoding.ASCII.GetBytes("out"), new IPEndPoint(IPAddress.Parse(GatewayTopology.WanHostAddress), 7000), timeout.Token);
        got = await wan.ReceiveFromAsync(buffer, timeout.Token);
        Assert.Equal(new IPEndPoint(IPAddress.Parse(GatewayTopology.PublicAddress), 5555), got.RemoteEndPoint);
    }

    [PeerFact("ip", "ping", Root = true)]
    public async Task DirectTopology_CarriesPing_WithNoGatewayBetween_AndIsRemovedWhole()
    {
        string[] names;
        await using (var topology = await GatewayTopology.CreateDirectAsync())
        {
            names = [.. (await NetworkNamespace.ListAsync()).Where(n => n.StartsWith($"nk-{topology.Tag}-", StringComparison.Ordinal))];
            Assert.Equal(2, names.Length); // lan, wan
            Assert.Empty(topology.Gateways);
            var (code, output, errors) = await topology.Lan.TryExecAsync("ping",
                ["-c", "1", "-W", "2", GatewayTopology.WanHostAddress]);
            Assert.True(code == 0, output + errors);
        }

        var left = await NetworkNamespace.ListAsync();
        Assert.DoesNotContain(left, names.Contains);
    }

    [PeerFact("ip", "ping", Root = true)]
    public async Task NatKitTopology_WithoutAGateway_CarriesNothing_AndIsRemovedWhole()
    {
        string[] names;
        await using (var topology = await GatewayTopology.CreateNatKitAsync(hops: 2))
        {
            names = [.. (await NetworkNamespace.ListAsync()).Where(n => n.StartsWith($"nk-{topology.Tag}-", StringComparison.Ordinal))];
            Assert.Equal(5, names.Length); // lan, g1, m1, g2, wan
            var (code, _, _) = await topology.Lan.TryExecAsync("ping",
                ["-c", "1", "-W", "1", GatewayTopology.WanHostAddress]);
            Assert.NotEqual(0, code); // no gateway process attached: the TUNs lead nowhere
        }

        var left = await NetworkNamespace.ListAsync();
        Assert.DoesNotContain(left, names.Contains);
    }
}
