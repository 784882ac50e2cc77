using NatKit.Lab.Topology;
using NatKit.Nat;

namespace NatKit.Lab.Tests;

/// <summary>One kebab-case schema for a NAT policy: what a lab router takes under <c>nat:</c> is what
/// `natkit gateway run --policy` reads and `natkit lab netns up` writes.</summary>
public sealed class NatPolicyFileTests
{
    public static TheoryData<string> Presets()
    {
        var data = new TheoryData<string>();
        foreach (var p in NatPresets.All)
        {
            data.Add(p.Name);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Presets))]
    public void EveryPreset_WrittenAsJson_ReadsBackEqual(string name)
    {
        var policy = NatPresets.Find(name)!.Policy;
        var json = NatPolicyFile.ToJson(policy);
        Assert.Contains("\"mapping\": \"", json, StringComparison.Ordinal);
        Assert.Equal(policy, NatPolicyFile.Parse(json, "p.json", NatPresets.RfcRecommended));
        Assert.Equal(policy, NatPolicyFile.Parse(json, "p.json", NatPresets.Find("symmetric")!.Policy)); // every knob written
    }

    [Fact]
    public void AFile_SetsOnlyTheKnobsItNames_OnTheBasePolicy_AsARoutersNatDoes()
    {
        const string knobs = "mapping: address-and-port-dependent\nudp-timeout: 150s\nhairpinning: none\n";
        var easy = NatPresets.Find("easy")!.Policy;
        var fromFile = NatPolicyFile.Parse(knobs, "p.yaml", easy);
        Assert.Equal(easy with { Mapping = MappingBehavior.AddressAndPortDependent, UdpTimeout = TimeSpan.FromSeconds(150), Hairpinning = HairpinBehavior.None }, fromFile);

        var topology = TopologyLoader.Parse(
            "segments:\n  internet: {prefix: 0.0.0.0/0}\n  lan: {prefix: 192.168.1.0/24}\n" +
            "routers:\n  home:\n    preset: easy\n    inside: {segment: lan, address: 192.168.1.1}\n    outside: {segment: internet, address: 203.0.113.1}\n" +
            "    nat:\n" + string.Join("", knobs.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => "      " + l + "\n")),
            "t.yaml");
        Assert.Equal(fromFile, topology.Routers.Single().Policy);
    }

    [Theory]
    [InlineData("{\"mapping\":\"bogus\"}", "mapping", "'bogus' is not one of endpoint-independent, address-dependent, address-and-port-dependent")]
    [InlineData("{\"mappin\":\"endpoint-independent\"}", "mappin", "unknown NAT knob 'mappin'; known knobs: mapping, filtering")]
    [InlineData("{\"udp-timeout\":\"30s\"}", "udp-timeout", "below RFC 4787 REQ-5's 120 s floor; set allow-short-udp-timeout to force it")]
    [InlineData("{\"port-parity\":\"maybe\"}", "port-parity", "'maybe' is not true or false")]
    [InlineData("{\"Mapping\":\"EndpointIndependent\"}", "Mapping", "unknown NAT knob 'Mapping'")]
    [InlineData("[1]", "(root)", "a policy is a mapping of NAT knobs")]
    [InlineData("{\"mapping\": }", "(syntax)", "not valid JSON")]
    public void ABadFile_IsRefused_NamingTheKnob(string text, string path, string problem)
    {
        var e = Assert.Throws<TopologyException>(() => NatPolicyFile.Parse(text, "p.json"));
        var first = e.Errors[0];
        Assert.Equal(path, first.Path);
        Assert.Contains(problem, first.Problem, StringComparison.Ordinal);
        Assert.True(first.Line >= 1);
    }

    [Fact]
    public void SharingPorts_NamesTheOtherKnobsInTheFilesWords()
    {
        var e = Assert.Throws<TopologyException>(() => NatPolicyFile.Parse("share-ports-across-destinations: true\n", "p.yaml"));
        Assert.Contains("needs mapping and filtering address-and-port-dependent", e.Errors[0].Problem, StringComparison.Ordinal);
    }
}
