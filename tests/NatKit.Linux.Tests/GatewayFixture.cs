using NatKit.Linux;
using NatKit.Nat;

namespace NatKit.Linux.Tests;

/// <summary>A NatKit topology with a running gateway per hop; disposing stops the gateways, then removes every
/// namespace.</summary>
internal sealed class GatewayFixture : IAsyncDisposable
{
    private GatewayFixture(GatewayTopology topology, IReadOnlyList<Gateway> gateways)
    {
        Topology = topology;
        Gateways = gateways;
    }

    public GatewayTopology Topology { get; }

    public IReadOnlyList<Gateway> Gateways { get; }

    public static async Task<GatewayFixture> StartAsync(NatPolicy policy, int hops = 1,
        TunOffloads offloads = TunOffloads.All, DataPlaneOptions? options = null)
    {
        var topology = await GatewayTopology.CreateNatKitAsync(hops);
        var gateways = new List<Gateway>();
        try
        {
            foreach (var hop in topology.Hops)
            {
                gateways.Add(await Gateway.StartAsync(hop, policy, offloads, options));
            }

            return new GatewayFixture(topology, gateways);
        }
        catch
        {
            foreach (var g in gateways)
            {
                await g.DisposeAsync();
            }

            await topology.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            foreach (var g in Gateways)
            {
                await g.DisposeAsync();
            }
        }
        finally
        {
            await Topology.DisposeAsync();
        }
    }
}
