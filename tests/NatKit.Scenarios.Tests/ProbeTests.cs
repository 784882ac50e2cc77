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
        output.WriteLine($"expected: {r.Expected}; virtual time {r.VirtualTime}");
        Assert.True(r.Found.Reachable);
        Assert.Equal(r.Expected.Mapping, r.Found.Mapping);
        Assert.Equal(r.Expected.Filtering, r.Found.Filtering);
        Assert.Equal(r.Expected.Hairpinning, r.Found.Hairpinning);
        Assert.Equal(r.Expected.PortPreserved, r.Found.PortPreserved);
        Assert.True(r.LifetimeMatches, $"lifetime {r.Found.BindingLifetime} (lower bound: {r.Found.BindingLifetimeIsLowerBound}), policy {string.Join("/", r.Expected.Lifetimes)}");
    }
}
