using System.Text.Json;
using System.Text.Json.Serialization;
using NatKit.Lab.Topology;
using NatKit.Nat;

namespace NatKit.PortMapping.Tests;

/// <summary>The port mapping knobs under the names lab topology files (kebab-case) and gateway policy files (JSON)
/// use for every other NAT knob.</summary>
public sealed class PolicyKnobTests
{
    private const string Topology = """
        segments:
          internet: { prefix: 0.0.0.0/0 }
          home: { prefix: 192.168.1.0/24 }
        routers:
          nat:
            preset: symmetric
            nat: { serve-nat-pmp: false, serve-pcp: true, serve-upnp: false, allow-third-party-mappings: true, max-port-mappings-per-host: 4, port-mapping-max-lifetime: 1h, port-mapping-min-lifetime: 60s }
            inside: { segment: home, address: 192.168.1.1 }
            outside: { segment: internet, address: 198.51.100.1 }
        """;

    [Fact]
    public void LabTopology_ReadsThePortMappingKnobs()
    {
        var policy = Assert.Single(TopologyLoader.Parse(Topology, "t.yaml").Routers).Policy;
        Assert.Equal((false, true, false, true), (policy.ServeNatPmp, policy.ServePcp, policy.ServeUpnp, policy.AllowThirdPartyMappings));
        Assert.Equal(4, policy.MaxPortMappingsPerHost);
        Assert.Equal((TimeSpan.FromHours(1), TimeSpan.FromSeconds(60)), (policy.PortMappingMaxLifetime, policy.PortMappingMinLifetime));
    }

    [Fact]
    public void LabTopology_ABadLifetime_NamesTheKnob()
    {
        var e = Assert.Throws<TopologyException>(() => TopologyLoader.Parse(Topology.Replace("port-mapping-max-lifetime: 1h", "port-mapping-max-lifetime: 90d", StringComparison.Ordinal), "t.yaml"));
        Assert.Contains("routers.nat.nat.port-mapping-max-lifetime", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void GatewayPolicyJson_ReadsThePortMappingKnobs()
    {
        var policy = JsonSerializer.Deserialize<NatPolicy>("""{ "ServePcp": true, "MaxPortMappingsPerHost": 2, "PortMappingMaxLifetime": "02:00:00" }""",
            new JsonSerializerOptions { PropertyNameCaseInsensitive = true, Converters = { new JsonStringEnumConverter() } })!;
        Assert.True(policy.ServePcp);
        Assert.False(policy.ServeNatPmp);
        Assert.Equal(2, policy.MaxPortMappingsPerHost);
        Assert.Equal(TimeSpan.FromHours(2), policy.PortMappingMaxLifetime);
        Assert.Empty(policy.Validate());
    }
}
