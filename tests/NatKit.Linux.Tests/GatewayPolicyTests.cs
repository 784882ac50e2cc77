using System.Net;
using NatKit.Linux;
using NatKit.Nat;
using NatKit.Stun.Client;
using NatKit.Stun.Discovery;
using NatKit.Stun.Server;
using NatKit.TestSupport;

namespace NatKit.Linux.Tests;

/// <summary>
/// The policy is visible on real sockets: NatKit's RFC 5780 discovery, run on the LAN host, against NatKit's STUN
/// server on the WAN host's two addresses, sees the mapping and filtering the gateway's preset says.
/// </summary>
public sealed class GatewayPolicyTests
{
    public static TheoryData<string, NatMapping, NatFiltering> Presets => new()
    {
        { "symmetric", NatMapping.AddressAndPortDependent, NatFiltering.AddressAndPortDependent },
        { "full-cone", NatMapping.EndpointIndependent, NatFiltering.EndpointIndependent },
        { "port-restricted-cone", NatMapping.EndpointIndependent, NatFiltering.AddressAndPortDependent },
    };

    [PeerTheory("ip", Root = true)]
    [MemberData(nameof(Presets))]
    public async Task StunDiscovery_BehindTheGateway_SeesThePresetsMappingAndFiltering(string preset,
        NatMapping mapping, NatFiltering filtering)
    {
        await using var lab = await GatewayFixture.StartAsync(NatPresets.Find(preset)!.Policy);
        var behavior = await DiscoverAsync(lab.Topology);
        Assert.True(behavior.Reachable, string.Join("; ", behavior.Notes));
        Assert.Equal(GatewayTopology.PublicAddress, behavior.MappedEndPoint!.Address.ToString());
        Assert.Equal(mapping, behavior.Mapping);
        Assert.Equal(filtering, behavior.Filtering);
    }

    [PeerFact("ip", "nft", Root = true)]
    public async Task StunDiscovery_BehindKernelMasqueradeRandom_SeesASymmetricNat()
    {
        await using var topology = await GatewayTopology.CreateKernelAsync(KernelNatKind.MasqueradeRandom);
        var behavior = await DiscoverAsync(topology);
        Assert.True(behavior.Reachable, string.Join("; ", behavior.Notes));
        Assert.Equal(NatMapping.AddressAndPortDependent, behavior.Mapping);
    }

    private static Task<NatBehavior> DiscoverAsync(GatewayTopology topology) =>
        DiscoverAsync(topology.Lan.Name, topology.Wan.Name, GatewayTopology.WanHostAddress, GatewayTopology.WanHostSecondAddress);

    /// <summary>RFC 5780 discovery from a socket in <paramref name="lanNamespace"/> against a STUN server in
    /// <paramref name="wanNamespace"/> on its two addresses (ports 3478 and 3479).</summary>
    internal static async Task<NatBehavior> DiscoverAsync(string lanNamespace, string wanNamespace, string primaryAddress,
        string alternateAddress)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(40));
        var primary = new IPEndPoint(IPAddress.Parse(primaryAddress), 3478);
        await using var server = await StunServer.StartAsync(new NamespaceNetwork(wanNamespace),
            new StunServerOptions
            {
                Primary = primary,
                AlternateAddress = IPAddress.Parse(alternateAddress),
                AlternatePort = 3479,
                EnableTcp = false,
            }, cancellationToken: timeout.Token);
        var discovery = new NatBehaviorDiscovery(new NamespaceNetwork(lanNamespace), primary,
            new NatDiscoveryOptions
            {
                TestHairpinning = false,
                // namespaces do not lose packets: a missing answer means "filtered" after 0.2 + 0.2 x 4 = 1 s
                Client = new StunClientOptions { InitialRto = TimeSpan.FromMilliseconds(200), RequestCount = 2, LastWaitMultiplier = 4 },
            });
        return await discovery.RunAsync(timeout.Token);
    }
}
