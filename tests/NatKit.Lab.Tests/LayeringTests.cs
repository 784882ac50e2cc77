namespace NatKit.Lab.Tests;

public sealed class LayeringTests
{
    [Fact]
    public void TheLab_DependsOnNetNatAndPacketsOnly_AmongNatKitParts()
    {
        // The lab is the network; protocols run in it from above (NatKit.Scenarios), so the matrix never drags
        // Traversal, and a protocol's change never rebuilds the lab.
        var parts = typeof(VirtualNetwork).Assembly.GetReferencedAssemblies()
            .Select(a => a.Name!)
            .Where(n => n.StartsWith("NatKit.", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal)
            .ToList();
        Assert.Equal(["NatKit.Nat", "NatKit.Net", "NatKit.Packets"], parts);
    }
}
