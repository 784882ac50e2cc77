using NatKit.Nat;
using NatKit.Scenarios.Probe;
using NatKit.Traversal.HardNat;
using Xunit.Abstractions;

namespace NatKit.Scenarios.Tests;

public sealed class ProbeTests(ITestOutputHelper output)
{
    public static TheoryData<string> Presets => new(NatPresets.All.Select(p => p.Name));

    [Theory]
    [MemberData(nameof(Presets))]
    public void Rfc5780Discovery_InsideTheLab_FindsWhatEachPresetIs(string name)
    {
        var preset = NatPresets.Find(name)!;
        var r = LabProbe.Probe(preset.Name, preset.Policy);
        output.WriteLine($"{name}: {r.Found.ToJson()}");
        output.WriteLine($"expected: {r.Expected}; virtual time {r.VirtualTime}; new ports {r.Ports}");
        Assert.True(r.Found.Reachable);
        Assert.Equal(r.Expected.Mapping, r.Found.Mapping);
        Assert.Equal(r.Expected.Filtering, r.Found.Filtering);
        Assert.Equal(r.Expected.Hairpinning, r.Found.Hairpinning);
        Assert.Equal(r.Expected.PortPreserved, r.Found.PortPreserved);
        Assert.Equal(r.Expected.Ports, r.Ports?.Allocation);
        Assert.True(r.LifetimeMatches, $"lifetime {r.Found.BindingLifetime} (lower bound: {r.Found.BindingLifetimeIsLowerBound}), policy {string.Join("/", r.Expected.Lifetimes)}");
    }

    [Theory]
    [InlineData("symmetric-sequential", PortAllocation.Sequential)]
    [InlineData("symmetric", PortAllocation.Random)]
    [InlineData("hard", PortAllocation.Random)]
    [InlineData("port-restricted-cone", PortAllocation.Fixed)]
    [InlineData("linux-masquerade", PortAllocation.Fixed)]
    public void NewPorts_AsTheAllocatorHandsThemOut(string name, PortAllocation expected)
    {
        // Written out here, not read from ProbeExpectation, so a wrong expectation fails too.
        var r = LabProbe.Probe(name, NatPresets.Find(name)!.Policy, new LabProbeOptions { MeasureLifetime = false });
        Assert.Equal(expected, r.Expected.Ports);
        Assert.Equal(expected, r.Ports!.Allocation);
        if (expected == PortAllocation.Sequential) Assert.Equal(1, r.Ports.Step);
    }

    [Fact]
    public void NewPorts_AddressDependentSequential_IsSequential_AndTheWholeProbeAgrees()
    {
        // Custom knobs, no preset: a mapping per destination address (the server's two ports share it).
        var policy = NatPresets.Symmetric with
        {
            Mapping = MappingBehavior.AddressDependent,
            PortAssignment = PortAssignment.Sequential,
        };
        var r = LabProbe.Probe("adm-sequential", policy, new LabProbeOptions { MeasureLifetime = false });
        Assert.Equal(Stun.Discovery.NatMapping.AddressDependent, r.Ports!.Mapping);
        Assert.Equal(PortAllocation.Sequential, r.Ports.Allocation);
        Assert.True(r.AllMatch, r.ToString());
    }
}
