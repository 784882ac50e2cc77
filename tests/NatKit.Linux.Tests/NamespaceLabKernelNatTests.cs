using System.Globalization;
using System.Net;
using System.Text;
using NatKit.Nat;
using NatKit.Packets;
using NatKit.Stun.Discovery;
using NatKit.TestSupport;

namespace NatKit.Linux.Tests;

/// <summary>
/// A lab topology as namespaces with kernel nftables NAT routers (the reference rules) instead of NatKit gateways,
/// and with impaired links (netem); the NatKit policy to kernel rule choice; the command's refusals.
/// </summary>
public sealed class NamespaceLabKernelNatTests
{
    public static TheoryData<string, KernelNatKind?> PresetKinds => new()
    {
        { "port-restricted-cone", KernelNatKind.MasqueradePersistent },
        { "easy", KernelNatKind.MasqueradePersistent },
        { "linux-masquerade", KernelNatKind.MasqueradePersistent },
        { "symmetric", KernelNatKind.MasqueradeRandom },
        { "hard", KernelNatKind.MasqueradeRandom },
        { "full-cone", null },
        { "restricted-cone", null },
        { "easyaf", null },
        { "one2one", null },
        { "rfc-recommended", null },
    };

    [Theory]
    [MemberData(nameof(PresetKinds))]
    public void KernelKind_FollowsThePresetsMappingAndFiltering_OrIsRefusedWithAReason(string preset, KernelNatKind? kind)
    {
        var chosen = KernelNatRules.KindFor(NatPresets.Find(preset)!.Policy, out var reason);
        Assert.Equal(kind, chosen);
        Assert.Equal(kind is null, reason.Length > 0);
    }

    [Fact]
    public void KernelKind_RefusesHairpinning_WhichMasqueradeDoesNotDo()
    {
        var policy = NatPresets.PortRestrictedCone with { Hairpinning = HairpinBehavior.ExternalSource };
        Assert.Null(KernelNatRules.KindFor(policy, out var reason));
        Assert.Contains("hairpin", reason, StringComparison.Ordinal);
    }

    [Fact]
    public void NetemArguments_CentreTheLabsOneSidedJitter_AndGivePercentages()
    {
        var link = new LinkImpairment(TimeSpan.FromMilliseconds(10), TimeSpan.FromMilliseconds(4), 0.01, 0.005);
        Assert.Equal(["limit", "10000", "delay", "12000us", "2000us", "loss", "random", "1%", "duplicate", "0.5%"],
            link.NetemArguments());
        Assert.Equal(["limit", "10000", "delay", "5000us"], new LinkImpairment(TimeSpan.FromMilliseconds(5)).NetemArguments());
        Assert.True(new LinkImpairment(TimeSpan.Zero).IsNone);
        Assert.False(new LinkImpairment(TimeSpan.Zero, Loss: 0.5).IsNone);
    }

    /// <summary>tc parses netem's options itself before the kernel is asked, so even on a kernel without netem a
    /// wrong option shows: the arguments must get past the parser (to success, or to the kernel's "unknown kind").</summary>
    [PeerFact("ip", "tc", Root = true)]
    public async Task NetemArguments_PassTcsOwnParser()
    {
        await using var ns = await NetworkNamespace.CreateAsync($"nk-{NetworkNamespace.NewRunTag()}-tc");
        await ns.IpAsync(["link", "add", "name", "v0", "type", "veth", "peer", "name", "v1"]);
        var link = new LinkImpairment(TimeSpan.FromMilliseconds(10), TimeSpan.FromMilliseconds(3), 0.015, 0.001);
        var (code, output, errors) = await SystemCommand.TryRunAsync("tc",
            ["-n", ns.Name, "qdisc", "add", "dev", "v0", "root", "netem", .. link.NetemArguments()]);
        Assert.True(code == 0 || errors.Contains("kind is unknown", StringComparison.Ordinal), output + errors);

        (code, _, errors) = await SystemCommand.TryRunAsync("tc",
            ["-n", ns.Name, "qdisc", "replace", "dev", "v0", "root", "netem", "loss", "sometimes", "1%"]);
        Assert.NotEqual(0, code);
        Assert.DoesNotContain("kind is unknown", errors, StringComparison.Ordinal); // the parser, not the kernel, refused it
    }

    /// <summary>Two homes behind kernel routers whose kinds come from their presets: RFC 5780 discovery sees
    /// endpoint-independent mapping behind <c>masquerade persistent</c> (port-restricted-cone) and a new mapping per
    /// destination behind <c>masquerade random</c> (symmetric), both from the router's public address.</summary>
    [PeerFact("ip", "nft", Root = true)]
    public async Task KernelRouters_ChosenFromPresets_ShowTheirMappingToStunDiscovery()
    {
        NetnsSegment[] segments =
        [
            new("internet", Ipv4Prefix.Parse("0.0.0.0/0")),
            new("home-a", Ipv4Prefix.Parse("192.168.1.0/24")),
            new("home-b", Ipv4Prefix.Parse("10.0.0.0/24")),
        ];
        NetnsRouter[] routers =
        [
            KernelRouter("nat-a", NatPresets.PortRestrictedCone, "home-a", "192.168.1.1", "198.51.100.1"),
            KernelRouter("nat-b", NatPresets.Symmetric, "home-b", "10.0.0.1", "198.51.100.2"),
        ];
        NetnsHost[] hosts =
        [
            new("server", "internet", [Ipv4Address.Parse("203.0.113.100"), Ipv4Address.Parse("203.0.113.101")], null),
            new("alice", "home-a", [Ipv4Address.Parse("192.168.1.10")], null),
            new("bob", "home-b", [Ipv4Address.Parse("10.0.0.10")], null),
        ];
        await using var lab = await NamespaceLab.CreateAsync(segments, routers, hosts);
        Assert.Empty(lab.Layout.Routers); // no NatKit gateway to start
        Assert.Equal([KernelNatKind.MasqueradePersistent, KernelNatKind.MasqueradeRandom],
            lab.Layout.KernelRouters.Select(r => r.Nat.Kind));

        var server = lab.Layout.Hosts["server"];
        var alice = await GatewayPolicyTests.DiscoverAsync(lab.Layout.Hosts["alice"], server, "203.0.113.100", "203.0.113.101");
        Assert.True(alice.Reachable, string.Join("; ", alice.Notes));
        Assert.Equal("198.51.100.1", alice.MappedEndPoint!.Address.ToString());
        Assert.Equal(NatMapping.EndpointIndependent, alice.Mapping);
        Assert.Equal(NatFiltering.AddressAndPortDependent, alice.Filtering);

        var bob = await GatewayPolicyTests.DiscoverAsync(lab.Layout.Hosts["bob"], server, "203.0.113.100", "203.0.113.101");
        Assert.True(bob.Reachable, string.Join("; ", bob.Notes));
        Assert.Equal("198.51.100.2", bob.MappedEndPoint!.Address.ToString());
        Assert.Equal(NatMapping.AddressAndPortDependent, bob.Mapping);
    }

    /// <summary>
    /// Two <c>masquerade persistent</c> routers across a routed internet segment: a datagram that reaches a NAT before
    /// its host's first datagram to the sender leaves a conntrack entry that makes the NAT map the host's own
    /// datagram to another port, which the sender's NAT then filters, so neither side ever hears the other. The same
    /// hosts on fresh ports, each first sending a datagram with TTL 2 (a real socket's one-datagram hop limit) that
    /// opens its own NAT and dies on the internet's router, then hear each other at once.
    /// </summary>
    [PeerFact("ip", "nft", Root = true)]
    public async Task MasqueradePersistent_BothSides_ClashWithoutPriming_AndMeetAfterHopLimitedPrimes()
    {
        NetnsSegment[] segments =
        [
            new("internet", Ipv4Prefix.Parse("0.0.0.0/0"), Routed: true),
            new("home-a", Ipv4Prefix.Parse("192.168.1.0/24")),
            new("home-b", Ipv4Prefix.Parse("10.0.0.0/24")),
        ];
        NetnsRouter[] routers =
        [
            KernelRouter("nat-a", NatPresets.PortRestrictedCone, "home-a", "192.168.1.1", "198.51.100.1"),
            KernelRouter("nat-b", NatPresets.PortRestrictedCone, "home-b", "10.0.0.1", "198.51.100.2"),
        ];
        NetnsHost[] hosts =
        [
            new("alice", "home-a", [Ipv4Address.Parse("192.168.1.10")], null),
            new("bob", "home-b", [Ipv4Address.Parse("10.0.0.10")], null),
        ];
        await using var lab = await NamespaceLab.CreateAsync(segments, routers, hosts);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var aliceNet = new NamespaceNetwork(lab.Layout.Hosts["alice"]);
        var bobNet = new NamespaceNetwork(lab.Layout.Hosts["bob"]);
        var natA = IPAddress.Parse("198.51.100.1");
        var natB = IPAddress.Parse("198.51.100.2");

        // Unprimed: alice's datagram arrives first and bob's NAT moves bob's mapping.
        await using (var alice = await aliceNet.BindUdpAsync(new IPEndPoint(IPAddress.Any, 4000), timeout.Token))
        await using (var bob = await bobNet.BindUdpAsync(new IPEndPoint(IPAddress.Any, 4000), timeout.Token))
        {
            await alice.SendToAsync("a"u8.ToArray(), new IPEndPoint(natB, 4000), timeout.Token);
            var heard = 0;
            for (var i = 0; i < 3; i++)
            {
                await bob.SendToAsync("b"u8.ToArray(), new IPEndPoint(natA, 4000), timeout.Token);
                await alice.SendToAsync("a"u8.ToArray(), new IPEndPoint(natB, 4000), timeout.Token);
                heard += await HeardAsync(alice) + await HeardAsync(bob);
            }

            Assert.Equal(0, heard);
        }

        // Primed: each side opens its own NAT first with a datagram that dies one router beyond it.
        await using (var alice = await aliceNet.BindUdpAsync(new IPEndPoint(IPAddress.Any, 5000), timeout.Token))
        await using (var bob = await bobNet.BindUdpAsync(new IPEndPoint(IPAddress.Any, 5000), timeout.Token))
        {
            var a = Assert.IsAssignableFrom<NatKit.Net.IHopLimitDatagramSocket>(alice);
            var b = Assert.IsAssignableFrom<NatKit.Net.IHopLimitDatagramSocket>(bob);
            Assert.Equal(5, await a.SendToAsync("prime"u8.ToArray(), new IPEndPoint(natB, 5000), 2, timeout.Token));
            Assert.Equal(5, await b.SendToAsync("prime"u8.ToArray(), new IPEndPoint(natA, 5000), 2, timeout.Token));
            Assert.Equal(0, await HeardAsync(alice) + await HeardAsync(bob)); // the primes went nowhere
            await alice.SendToAsync("a"u8.ToArray(), new IPEndPoint(natB, 5000), timeout.Token);
            await bob.SendToAsync("b"u8.ToArray(), new IPEndPoint(natA, 5000), timeout.Token);
            Assert.Equal(1, await HeardAsync(alice));
            Assert.Equal(1, await HeardAsync(bob));
        }
    }

    /// <summary>Datagrams that arrive within half a second, counted.</summary>
    private static async Task<int> HeardAsync(NatKit.Net.IDatagramSocket socket)
    {
        var buffer = new byte[64];
        var count = 0;
        while (true)
        {
            using var wait = new CancellationTokenSource(TimeSpan.FromMilliseconds(500));
            try
            {
                await socket.ReceiveFromAsync(buffer, wait.Token);
                count++;
            }
            catch (OperationCanceledException)
            {
                return count;
            }
        }
    }

    /// <summary>Kernel and NatKit routers in one topology: a NatKit home router behind a kernel carrier NAT
    /// (the carrier segment forwards the NatKit gateway's traffic to the kernel router) reaches the server, and a
    /// kernel DMZ router forwards unsolicited UDP to its only host, whose answer leaves from the DMZ port.</summary>
    [PeerFact("ip", "nft", "ping", Root = true)]
    public async Task MixedTopology_NatKitBehindKernelCarrier_AndAKernelDmzToItsOnlyHost()
    {
        NetnsSegment[] segments =
        [
            new("internet", Ipv4Prefix.Parse("0.0.0.0/0")),
            new("carrier", Ipv4Prefix.Parse("100.64.0.0/10")),
            new("flat", Ipv4Prefix.Parse("192.168.50.0/24")),
            new("office", Ipv4Prefix.Parse("172.16.0.0/24")),
        ];
        NetnsRouter[] routers =
        [
            new("cgnat", NatPresets.TailscaleEasy, "carrier", Ipv4Address.Parse("100.64.0.1"), "internet", [Ipv4Address.Parse("198.51.100.10")],
                new KernelNat(KernelNatKind.MasqueradePersistent)),
            new("flat-nat", NatPresets.PortRestrictedCone, "flat", Ipv4Address.Parse("192.168.50.1"), "carrier", [Ipv4Address.Parse("100.64.0.2")]),
            new("dmz", NatPresets.FullCone, "office", Ipv4Address.Parse("172.16.0.1"), "internet", [Ipv4Address.Parse("198.51.100.20")],
                new KernelNat(KernelNatKind.Dmz, DmzHostPort: 4000, DmzPort: 5555)),
        ];
        NetnsHost[] hosts =
        [
            new("server", "internet", [Ipv4Address.Parse("203.0.113.100")], null),
            new("carol", "flat", [Ipv4Address.Parse("192.168.50.10")], null),
            new("dave", "office", [Ipv4Address.Parse("172.16.0.10")], null),
        ];
        await using var lab = await NamespaceLab.CreateAsync(segments, routers, hosts);
        Assert.Equal(Ipv4Address.Parse("172.16.0.10"), lab.Layout.KernelRouters.Single(r => r.Name == "dmz").Nat.DmzHost);
        await using var gateway = await Gateway.StartAsync(lab.Layout.Routers[0].Inside, lab.Layout.Routers[0].Outside,
            lab.Layout.Routers[0].Config);

        var (code, output, errors) = await SystemCommand.TryRunAsync("ip",
            ["netns", "exec", lab.Layout.Hosts["carol"], "ping", "-c", "1", "-W", "3", "203.0.113.100"], timeout: TimeSpan.FromSeconds(20));
        Assert.True(code == 0, output + errors);

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await using var dave = await new NamespaceNetwork(lab.Layout.Hosts["dave"]).BindUdpAsync(new IPEndPoint(IPAddress.Any, 4000), timeout.Token);
        await using var server = await new NamespaceNetwork(lab.Layout.Hosts["server"]).BindUdpAsync(new IPEndPoint(IPAddress.Any, 7000), timeout.Token);
        var buffer = new byte[100];
        await server.SendToAsync(Encoding.ASCII.GetBytes("in"), new IPEndPoint(IPAddress.Parse("198.51.100.20"), 5555), timeout.Token);
        var got = await dave.ReceiveFromAsync(buffer, timeout.Token);
        Assert.Equal("in", Encoding.ASCII.GetString(buffer, 0, got.Length));
        await dave.SendToAsync(Encoding.ASCII.GetBytes("out"), got.RemoteEndPoint, timeout.Token);
        got = await server.ReceiveFromAsync(buffer, timeout.Token);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("198.51.100.20"), 5555), got.RemoteEndPoint);
    }

    /// <summary>
    /// A home link of 10 ms (the lab's meaning: each hop crosses the sender's and the receiver's link, so alice to
    /// her router is 20 ms one way) through a NatKit gateway (netem on the TUN, and on an ifb for what the gateway
    /// writes) or a kernel router (netem on the veths): ping's RTT is at least 40 ms. On a kernel without netem the
    /// lab is refused in one sentence and nothing is left behind.
    /// </summary>
    [PeerTheory("ip", "tc", "nft", "ping", Root = true)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ImpairedLink_DelaysThePing_OrIsRefusedWhenTheKernelHasNoNetem(bool kernel)
    {
        NetnsSegment[] segments =
        [
            new("internet", Ipv4Prefix.Parse("0.0.0.0/0")),
            new("home", Ipv4Prefix.Parse("192.168.1.0/24"), new LinkImpairment(TimeSpan.FromMilliseconds(10))),
        ];
        NetnsRouter[] routers =
        [
            new("nat", NatPresets.Symmetric, "home", Ipv4Address.Parse("192.168.1.1"), "internet", [Ipv4Address.Parse("198.51.100.1")],
                kernel ? new KernelNat(KernelNatKind.MasqueradeRandom) : null),
        ];
        NetnsHost[] hosts =
        [
            new("server", "internet", [Ipv4Address.Parse("203.0.113.100")], null),
            new("alice", "home", [Ipv4Address.Parse("192.168.1.10")], null),
        ];
        var tag = "i" + NetworkNamespace.NewRunTag();
        NamespaceLab lab;
        try
        {
            lab = await NamespaceLab.CreateAsync(segments, routers, hosts, tag);
        }
        catch (NotSupportedException e)
        {
            Assert.Equal(NamespaceLab.NetemMissing, e.Message);
            Assert.DoesNotContain(await NetworkNamespace.ListAsync(), n => n.StartsWith($"nk-{tag}-", StringComparison.Ordinal));
            return;
        }

        await using (lab)
        {
            var gateways = new List<Gateway>();
            try
            {
                foreach (var r in lab.Layout.Routers)
                {
                    gateways.Add(await Gateway.StartAsync(r.Inside, r.Outside, r.Config));
                }

                var (code, output, errors) = await SystemCommand.TryRunAsync("ip",
                    ["netns", "exec", lab.Layout.Hosts["alice"], "ping", "-c", "3", "-i", "0.2", "-W", "3", "203.0.113.100"],
                    timeout: TimeSpan.FromSeconds(20));
                Assert.True(code == 0, output + errors);
                Assert.True(MinimumRtt(output) >= 40.0, output);
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

    private static NetnsRouter KernelRouter(string name, NatPolicy policy, string inside, string insideAddress, string outsideAddress) =>
        new(name, policy, inside, Ipv4Address.Parse(insideAddress), "internet", [Ipv4Address.Parse(outsideAddress)],
            new KernelNat(KernelNatRules.KindFor(policy, out _)!.Value));

    /// <summary>The minimum of ping's "rtt min/avg/max/mdev = a/b/c/d ms" line, in milliseconds.</summary>
    private static double MinimumRtt(string pingOutput)
    {
        var line = pingOutput.Split('\n').Single(l => l.Contains("min/avg/max", StringComparison.Ordinal));
        return double.Parse(line.Split('=')[1].Trim().Split('/')[0], CultureInfo.InvariantCulture);
    }
}
