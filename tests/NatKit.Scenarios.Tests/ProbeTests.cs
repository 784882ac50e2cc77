using NatKit.Nat;
using NatKit.Scenarios.Probe;
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
        output.WriteLine($"expected: {r.Expected}; virtual time {r.VirtualTime}; new ports {r.Ports} ({string.Join(", ", r.Ports?.Ports ?? [])})");
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
    [InlineData("port-restricted-cone", PortAllocation.SamePort)]
    [InlineData("linux-masquerade", PortAllocation.SamePort)]
    public void NewPorts_AsTheAllocatorHandsThemOut(string name, PortAllocation expected)
    {
        // Written out here, not read from ProbeExpectation, so a wrong expectation fails too.
        var r = LabProbe.Probe(name, NatPresets.Find(name)!.Policy, new LabProbeOptions { MeasureLifetime = false });
        Assert.Equal(expected, r.Expected.Ports);
        Assert.Equal(expected, r.Ports!.Allocation);
        if (expected == PortAllocation.Sequential) Assert.Equal(1, r.Ports.Step);
    }

    [Theory]
    [InlineData(new[] { 5000, 5000, 6000, 6000 }, PortAllocation.SamePort, 0)]
    [InlineData(new[] { 1024, 1025, 1026, 1027 }, PortAllocation.Sequential, 1)]
    [InlineData(new[] { 1030, 1028, 1026, 1024 }, PortAllocation.Sequential, -2)]
    [InlineData(new[] { 1024, 1025, 1027, 1028 }, PortAllocation.Random, 0)]
    [InlineData(new[] { 40000, 40100, 40200, 40300 }, PortAllocation.Random, 0)]   // a step of 100 is no allocator
    [InlineData(new[] { 5000, 5000, 5001, 5002 }, PortAllocation.Random, 0)]
    public void PortAllocation_Classify(int[] ports, PortAllocation expected, int step)
    {
        var f = PortAllocationFinding.Classify(ports);
        Assert.Equal(expected, f.Allocation);
        Assert.Equal(step, f.Step);
    }
}
