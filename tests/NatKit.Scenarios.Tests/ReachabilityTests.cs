using System.Net;
using NatKit.Lab.Topology;
using NatKit.Scenarios.Probe;
using NatKit.Scenarios.Reachability;
using NatKit.Stun.Discovery;

namespace NatKit.Scenarios.Tests;

public sealed class ReachabilityTests
{
    [Fact]
    public void UdpReachability_OnTwoHomes_ShowsWhatEachNatLetsThrough()
    {
        var lab = BuiltInTopologies.Load("two-homes").Build();
        var cells = UdpReachability.Run(lab);
        ReachabilityCell Cell(string from, string to, string address) =>
            cells.Single(c => c.From == from && c.To == to && c.ToAddress.Equals(IPAddress.Parse(address)));

        // Same LAN: direct, no NAT.
        Assert.Equal(new IPEndPoint(IPAddress.Parse("192.168.1.10"), 5000), Cell("alice", "alan", "192.168.1.11").SeenAs);

        // Through a full cone: the router's address, port kept; the echo returns.
        var viaA = Cell("alice", "server", "203.0.113.100");
        Assert.Equal(new IPEndPoint(IPAddress.Parse("198.51.100.1"), 5000), viaA.SeenAs);
        Assert.Equal(viaA.Sent, viaA.Echoed);

        // Double NAT: the carrier's pool address.
        Assert.Contains(Cell("carol", "server", "203.0.113.100").SeenAs!.Address.ToString(), new[] { "198.51.100.10", "198.51.100.11" });

        // Symmetric NAT, server bound to any: the echo comes from the primary address and is filtered.
        var toSecond = Cell("bob", "server", "203.0.113.101");
        Assert.True(toSecond.Received > 0);
        Assert.Equal(0, toSecond.Echoed);

        // Nobody reaches a private address behind another NAT.
        Assert.Equal(0, Cell("server", "alice", "192.168.1.10").Received);
    }

    [Fact]
    public void Discover_ThroughADoubleNat_SeesTheCombinedBehaviour()
    {
        // carol: port-restricted cone behind the carrier's "easy" NAT. Both map endpoint-independently, so the
        // chain does too; the stricter filter (APDF) wins; the carrier's random ports hide carol's port.
        var lab = BuiltInTopologies.Load("two-homes").Build();
        var b = LabProbe.Discover(lab, lab.Host("carol"), lab.Host("server"), new LabProbeOptions { MeasureLifetime = false });
        Assert.Equal(NatMapping.EndpointIndependent, b.Mapping);
        Assert.Equal(NatFiltering.AddressAndPortDependent, b.Filtering);
        Assert.False(b.PortPreserved);
        Assert.Contains(b.MappedEndPoint!.Address.ToString(), new[] { "198.51.100.10", "198.51.100.11" });
    }
}
