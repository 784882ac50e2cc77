using NatKit.Linux;
using NatKit.Nat;
using NatKit.Packets;
using NatKit.TestSupport;

namespace NatKit.Linux.Tests;

/// <summary>A lab topology (segments, routers, hosts) built as namespaces, with NatKit gateways as the routers.</summary>
public sealed class GatewayNamespaceLabTests
{
    [PeerFact("ip", "ping", "traceroute", Root = true)]
    public async Task DoubleNat_HomeBehindCarrier_ReachesTheServer_AndNeighboursReachEachOther()
    {
        NetnsSegment[] segments =
        [
            new("internet", Ipv4Prefix.Parse("0.0.0.0/0")),
            new("carrier", Ipv4Prefix.Parse("100.64.0.0/10")),
            new("home", Ipv4Prefix.Parse("192.168.1.0/24")),
        ];
        NetnsRouter[] routers =
        [
            new("cgnat", NatPresets.TailscaleEasy, "carrier", Ipv4Address.Parse("100.64.0.1"), "internet", [Ipv4Address.Parse("198.51.100.10")]),
            new("home-nat", NatPresets.PortRestrictedCone, "home", Ipv4Address.Parse("192.168.1.1"), "carrier", [Ipv4Address.Parse("100.64.0.2")]),
        ];
        NetnsHost[] hosts =
        [
            new("server", "internet", [Ipv4Address.Parse("203.0.113.100")], null),
            new("alice", "home", [Ipv4Address.Parse("192.168.1.10")], null),
            new("alan", "home", [Ipv4Address.Parse("192.168.1.11")], null),
        ];
        await using var lab = await NamespaceLab.CreateAsync(segments, routers, hosts);
        var gateways = new List<Gateway>();
        try
        {
            foreach (var r in lab.Layout.Routers)
            {
                gateways.Add(await Gateway.StartAsync(r.Inside, r.Outside, r.Config));
            }

            var alice = lab.Layout.Hosts["alice"];
            var (code, output, errors) = await SystemCommand.TryRunAsync("ip",
                ["netns", "exec", alice, "ping", "-c", "2", "-i", "0.2", "-W", "3", "203.0.113.100"], timeout: TimeSpan.FromSeconds(20));
            Assert.True(code == 0, output + errors);
            (code, output, errors) = await SystemCommand.TryRunAsync("ip",
                ["netns", "exec", alice, "ping", "-c", "1", "-W", "3", "192.168.1.11"], timeout: TimeSpan.FromSeconds(20));
            Assert.True(code == 0, output + errors);

            (code, output, errors) = await SystemCommand.TryRunAsync("ip",
                ["netns", "exec", alice, "traceroute", "-n", "-q", "1", "-w", "2", "-m", "8", "203.0.113.100"], timeout: TimeSpan.FromSeconds(40));
            Assert.True(code == 0, output + errors);
            Assert.Contains("100.64.0.1", output, StringComparison.Ordinal); // the carrier's NAT answered, translated back
            Assert.Contains(" 203.0.113.100 ", output, StringComparison.Ordinal);

            // the server saw the carrier's public address: the carrier NAT has the home NAT's public address inside
            var flows = await gateways[0].DataPlane.QueryAsync(e => e.SnapshotFlows());
            Assert.Contains(flows, f => f.Internal.Address.ToString() == "100.64.0.2" && f.External.Address.ToString() == "198.51.100.10");
        }
        finally
        {
            foreach (var g in gateways)
            {
                await g.DisposeAsync();
            }
        }
    }
}
