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
