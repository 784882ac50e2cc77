using static NatKit.Nat.Tests.NatHarness;

namespace NatKit.Nat.Tests;

/// <summary>
/// Every preset, probed from outside like a STUN classifier would, matches its documented definition. The
/// expectations are written out here, not read from the policy, so a wrong preset value fails.
/// </summary>
public sealed class PresetTests
{
    public enum Ports { Preserved, Random, RandomHigh, Sequential }

    public static TheoryData<string, MappingBehavior, FilteringBehavior, Ports, HairpinBehavior> Definitions => new()
    {
        { "full-cone", MappingBehavior.EndpointIndependent, FilteringBehavior.EndpointIndependent, Ports.Preserved, HairpinBehavior.None },
        { "restricted-cone", MappingBehavior.EndpointIndependent, FilteringBehavior.AddressDependent, Ports.Preserved, HairpinBehavior.None },
        { "port-restricted-cone", MappingBehavior.EndpointIndependent, FilteringBehavior.AddressAndPortDependent, Ports.Preserved, HairpinBehavior.None },
        { "symmetric", MappingBehavior.AddressAndPortDependent, FilteringBehavior.AddressAndPortDependent, Ports.Random, HairpinBehavior.None },
        { "symmetric-sequential", MappingBehavior.AddressAndPortDependent, FilteringBehavior.AddressAndPortDependent, Ports.Sequential, HairpinBehavior.None },
        { "easy", MappingBehavior.EndpointIndependent, FilteringBehavior.AddressAndPortDependent, Ports.RandomHigh, HairpinBehavior.None },
        { "easyaf", MappingBehavior.EndpointIndependent, FilteringBehavior.AddressDependent, Ports.RandomHigh, HairpinBehavior.None },
        { "hard", MappingBehavior.AddressAndPortDependent, FilteringBehavior.AddressAndPortDependent, Ports.RandomHigh, HairpinBehavior.None },
        { "one2one", MappingBehavior.EndpointIndependent, FilteringBehavior.EndpointIndependent, Ports.Preserved, HairpinBehavior.None },
        // Linux: a mapping per tuple, but the kept port makes it look endpoint-independent from outside.
        { "linux-masquerade", MappingBehavior.EndpointIndependent, FilteringBehavior.AddressAndPortDependent, Ports.Preserved, HairpinBehavior.None },
        { "rfc-recommended", MappingBehavior.EndpointIndependent, FilteringBehavior.AddressDependent, Ports.Preserved, HairpinBehavior.ExternalSource },
    };

    [Fact]
    public void EveryPresetIsCoveredAndValid()
    {
        Assert.Equal(NatPresets.All.Count, Definitions.Count);
        foreach (var p in NatPresets.All) Assert.Empty(p.Policy.Validate());
    }

    [Theory]
    [MemberData(nameof(Definitions))]
    public void Preset_MatchesItsDefinition(string name, MappingBehavior mapping, FilteringBehavior filtering, Ports ports, HairpinBehavior hairpin)
    {
        var policy = NatPresets.Find(name)!.Policy;
        Assert.Equal(mapping, ObserveMapping(policy));
        Assert.Equal(filtering, ObserveFiltering(policy));
        Assert.Equal(hairpin, ObserveHairpin(policy));
        using var h = new NatHarness(policy);
        var port = h.Out("192.168.1.10:4000", "198.51.100.1:1000").Source.Port;
        // Two more destinations (from another host, so every preset makes new mappings): where the ports land.
        var next = h.Out("192.168.1.11:4000", "198.51.100.2:1000").Source.Port;
        var third = h.Out("192.168.1.12:5000", "198.51.100.3:1000").Source.Port;
        switch (ports)
        {
            case Ports.Preserved: Assert.Equal(4000, port); break;
            case Ports.Random:
                Assert.NotEqual(4000, port);
                Assert.False(next - port == 1 && third - next == 1, $"ports {port}, {next}, {third} look sequential");
                break;
            case Ports.Sequential: Assert.Equal([port + 1, port + 2], [next, third]); break;
            default: Assert.InRange(port, 32768, 65535); break;
        }
    }

    [Fact]
    public void SymmetricSequential_EachNewDestinationTakesTheNextPort_SoTwoStunAnswersPredictTheThird()
    {
        using var h = new NatHarness(NatPresets.SymmetricSequential);
        var toServer1 = h.Out("192.168.1.10:4000", "198.51.100.1:3478").Source.Port;
        var toServer2 = h.Out("192.168.1.10:4000", "198.51.100.2:3478").Source.Port;
        var step = toServer2 - toServer1;
        Assert.Equal(1, step);
        var toPeer = h.Out("192.168.1.10:4000", "203.0.113.9:5000").Source.Port;
        Assert.Equal(toServer2 + step, toPeer);
        Assert.Equal(toServer1, h.Out("192.168.1.10:4000", "198.51.100.1:3478").Source.Port); // a mapping is kept
        Assert.False(h.In("198.51.100.1:3478", $"203.0.113.1:{toPeer}").Forwarded);          // APDF
        Assert.True(h.In("203.0.113.9:5000", $"203.0.113.1:{toPeer}").Forwarded);
    }

    [Fact]
    public void Symmetric_IsAlsoNamedSymmetricRandom()
    {
        Assert.Same(NatPresets.Find("symmetric"), NatPresets.Find("symmetric-random"));
        Assert.Same(NatPresets.Find("symmetric"), NatPresets.Find("Symmetric-Random"));
        Assert.Equal(PortAssignment.Random, NatPresets.Find("symmetric-random")!.Policy.PortAssignment);
        Assert.Null(NatPresets.Find("symmetric-"));
    }

    [Fact]
    public void LinuxMasquerade_TwoHostsShareAnExternalPort_TowardDifferentDestinations()
    {
        using var h = new NatHarness(NatPresets.LinuxMasquerade);
        Assert.Equal(4000, h.Out("192.168.1.10:4000", "198.51.100.1:1000").Source.Port);
        Assert.Equal(4000, h.Out("192.168.1.11:4000", "198.51.100.2:1000").Source.Port);
        Assert.NotEqual(4000, h.Out("192.168.1.12:4000", "198.51.100.1:1000").Source.Port); // same reply tuple: moved
        Assert.Equal(Ep("192.168.1.11:4000"), h.In("198.51.100.2:1000", "203.0.113.1:4000").Destination);
        Assert.Equal(Ep("192.168.1.10:4000"), h.In("198.51.100.1:1000", "203.0.113.1:4000").Destination);
    }

    [Fact]
    public void LinuxMasquerade_UnrepliedUdpExpiresIn30s_RepliedIn120s()
    {
        using var h = new NatHarness(NatPresets.LinuxMasquerade);
        h.Out("192.168.1.10:4000", "198.51.100.1:1000");
        h.Out("192.168.1.10:4001", "198.51.100.1:1000");
        h.In("198.51.100.1:1000", "203.0.113.1:4001");
        h.Advance(TimeSpan.FromSeconds(31));
        Assert.Equal(1, h.Nat.SessionCount);
        h.Advance(TimeSpan.FromSeconds(90));
        Assert.Equal(0, h.Nat.SessionCount);
    }

    [Fact]
    public void One2One_WithDmz_ReachesTheHostOnAnyPort()
    {
        using var h = new NatHarness(NatPresets.TailscaleOne2One, tweak: c => c with { DmzHost = Packets.Ipv4Address.Parse("192.168.1.10") });
        Assert.Equal(Ep("192.168.1.10:22"), h.In("198.51.100.9:5555", "203.0.113.1:22").Destination);
    }

    private static MappingBehavior ObserveMapping(NatPolicy policy)
    {
        using var h = new NatHarness(policy);
        var a = h.Out("192.168.1.10:4000", "198.51.100.1:1000").Source;
        var b = h.Out("192.168.1.10:4000", "198.51.100.1:2000").Source;
        var c = h.Out("192.168.1.10:4000", "198.51.100.2:1000").Source;
        if (a == b && a == c) return MappingBehavior.EndpointIndependent;
        return a == b ? MappingBehavior.AddressDependent : MappingBehavior.AddressAndPortDependent;
    }

    private static FilteringBehavior ObserveFiltering(NatPolicy policy)
    {
        using var h = new NatHarness(policy);
        var ext = h.Out("192.168.1.10:4000", "198.51.100.1:1000").Source.ToString();
        Assert.True(h.In("198.51.100.1:1000", ext).Forwarded);
        if (h.In("198.51.100.2:1000", ext).Forwarded) return FilteringBehavior.EndpointIndependent;
        return h.In("198.51.100.1:2000", ext).Forwarded ? FilteringBehavior.AddressDependent : FilteringBehavior.AddressAndPortDependent;
    }

    private static HairpinBehavior ObserveHairpin(NatPolicy policy)
    {
        using var h = new NatHarness(policy with { Filtering = FilteringBehavior.EndpointIndependent, SharePortsAcrossDestinations = false });
        var target = h.Out("192.168.1.11:6000", "198.51.100.1:1000").Source;
        var seen = h.Out("192.168.1.10:4000", target.ToString());
        if (!seen.Forwarded) return HairpinBehavior.None;
        return seen.Source.Address == Ext1 ? HairpinBehavior.ExternalSource : HairpinBehavior.InternalSource;
    }
}
