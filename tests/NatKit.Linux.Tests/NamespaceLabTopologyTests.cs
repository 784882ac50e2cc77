using NatKit.Lab;
using NatKit.Lab.Topology;

namespace NatKit.Linux.Tests;

/// <summary>A lab topology as namespaces (<see cref="NamespaceLabTopology"/>), checked before anything is built:
/// kernel NAT specs, which routers run kernel NAT, links as netem impairments, and which labs `down` removes.</summary>
public sealed class NamespaceLabTopologyTests
{
    private static readonly string[] TwoLabs = ["nk-a1b2c3-lan", "nk-a1b2c3-wan", "nk-demo-alice", "other-ns"];

    private static TopologySpec TwoHomes() => TopologyLoader.Parse(BuiltInTopologies.Text("two-homes"), "two-homes");

    [Fact]
    public void DownWithATag_OnlyThatLab_WithAll_Every()
    {
        Assert.Equal("nk-demo-", NamespaceLabTopology.DownPrefix(TwoLabs, "demo", all: false));
        Assert.Equal("nk-", NamespaceLabTopology.DownPrefix(TwoLabs, null, all: true));
    }

    [Fact]
    public void DownWithNeither_TheOnlyLabUp_OrNothing()
    {
        Assert.Equal("nk-a1b2c3-", NamespaceLabTopology.DownPrefix(["nk-a1b2c3-lan", "nk-a1b2c3-g1", "other-ns"], null, all: false));
        Assert.Null(NamespaceLabTopology.DownPrefix(["other-ns"], null, all: false));
    }

    [Fact]
    public void DownWithNeither_AndSeveralLabs_IsRefusedNamingThem()
    {
        var e = Assert.Throws<ArgumentException>(() => NamespaceLabTopology.DownPrefix(TwoLabs, null, all: false));
        Assert.Contains("a1b2c3, demo", e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => NamespaceLabTopology.DownPrefix(TwoLabs, "demo", all: true));
    }

    [Theory]
    [InlineData("persistent", KernelNatKind.MasqueradePersistent)]
    [InlineData("eim", KernelNatKind.MasqueradePersistent)]
    [InlineData("symmetric", KernelNatKind.MasqueradeRandom)]
    [InlineData("DMZ", KernelNatKind.Dmz)]
    public void KernelNat_ByName(string text, KernelNatKind kind) => Assert.Equal(kind, NamespaceLabTopology.ParseKernelNat(text).Kind);

    [Fact]
    public void KernelNat_DmzDetails_AndMistakesInOneSentence()
    {
        Assert.Equal(new KernelNat(KernelNatKind.Dmz, Packets.Ipv4Address.Parse("10.0.0.2"), 5000, 6000),
            NamespaceLabTopology.ParseKernelNat("dmz:10.0.0.2:5000:6000"));
        Assert.Equal(new KernelNat(KernelNatKind.Dmz, null, 5000, 5000), NamespaceLabTopology.ParseKernelNat("dmz::5000"));
        Assert.Contains("only dmz takes details", Assert.Throws<FormatException>(() => NamespaceLabTopology.ParseKernelNat("random:1")).Message, StringComparison.Ordinal);
        Assert.Contains("'70000' is not a port", Assert.Throws<FormatException>(() => NamespaceLabTopology.ParseKernelNat("dmz:10.0.0.2:70000")).Message, StringComparison.Ordinal);
        Assert.Contains("unknown kernel NAT 'cone'", Assert.Throws<FormatException>(() => NamespaceLabTopology.ParseKernelNat("cone")).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Routers_NatKitByDefault_KernelForTheOneNamed_AndAnUnknownRouterIsRefused()
    {
        var spec = TwoHomes();
        var all = NamespaceLabTopology.Routers(spec, allKernel: false, []);
        Assert.Equal(spec.Routers.Select(r => r.Name), all.Select(r => r.Name));
        Assert.All(all, r => Assert.Null(r.Kernel));

        var first = spec.Routers[0].Name;
        var one = NamespaceLabTopology.Routers(spec, allKernel: false, [$"{first}=random"]);
        Assert.Equal(KernelNatKind.MasqueradeRandom, one.Single(r => r.Name == first).Kernel!.Kind);
        Assert.All(one.Where(r => r.Name != first), r => Assert.Null(r.Kernel));

        var e = Assert.Throws<FormatException>(() => NamespaceLabTopology.Routers(spec, allKernel: false, ["nobody=random"]));
        Assert.Contains("the topology has no router 'nobody'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Impairment_OfALabLink_IsNetems_NoneWhenClean_AndReorderIsRefused()
    {
        Assert.Null(NamespaceLabTopology.Impairment(null, "x"));
        Assert.Null(NamespaceLabTopology.Impairment(new LinkProfile(), "x"));
        var link = NamespaceLabTopology.Impairment(new LinkProfile { Latency = TimeSpan.FromMilliseconds(10), Loss = 0.01 }, "x");
        Assert.Equal(new LinkImpairment(TimeSpan.FromMilliseconds(10), Loss: 0.01), link);
        var e = Assert.Throws<FormatException>(() => NamespaceLabTopology.Impairment(new LinkProfile { Reorder = 0.1 }, "segments.lan.link"));
        Assert.StartsWith("segments.lan.link: reorder is not available in namespaces", e.Message, StringComparison.Ordinal);
    }
}
