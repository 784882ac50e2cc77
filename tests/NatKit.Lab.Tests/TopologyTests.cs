using System.Net;
using NatKit.Lab.Topology;
using NatKit.Nat;
using static NatKit.Lab.Tests.LabFixture;

namespace NatKit.Lab.Tests;

public sealed class TopologyTests
{
    private const string Good = """
        seed: 9
        segments:
          internet: { prefix: 0.0.0.0/0 }
          home: { prefix: 192.168.1.0/24, link: { latency: 2ms, loss: 0.5% } }
        routers:
          nat:
            preset: symmetric
            nat: { hairpinning: external-source, udp-timeout: 150s }
            inside: { segment: home, address: 192.168.1.1 }
            outside: { segment: internet, address: 198.51.100.1 }
        hosts:
          server: { segment: internet, addresses: [203.0.113.100, 203.0.113.101] }
          alice: { segment: home, address: 192.168.1.10, link: { mtu: 1400 } }
        """;

    [Fact]
    public void Yaml_IsReadIntoTheTopology_WithPresetAndKnobs()
    {
        var spec = TopologyLoader.Parse(Good, "good.yaml");
        Assert.Equal(9, spec.Seed);
        var nat = Assert.Single(spec.Routers);
        Assert.Equal(MappingBehavior.AddressAndPortDependent, nat.Policy.Mapping);
        Assert.Equal(HairpinBehavior.ExternalSource, nat.Policy.Hairpinning);
        Assert.Equal(TimeSpan.FromSeconds(150), nat.Policy.UdpTimeout);
        Assert.Equal(0.005, spec.Segments.Single(s => s.Name == "home").Link.Loss, 6);
        Assert.Equal(2, spec.Hosts.Single(h => h.Name == "server").Addresses.Count);
        Assert.Equal(1400, spec.Hosts.Single(h => h.Name == "alice").Link!.Mtu);

        var lab = spec.Build();
        Assert.Equal(HairpinBehavior.ExternalSource, lab.Router("nat").Engine.Config.Policy.Hairpinning);
        var from = lab.Run(async () =>
        {
            var s = await Bind(lab.Host("server"), Server1, 3478);
            var a = await Bind(lab.Host("alice"));
            await a.SendToAsync("x"u8.ToArray(), new IPEndPoint(Server1, 3478));
            return (await ReceiveOrTimeout(s, lab.TimeProvider, TimeSpan.FromSeconds(1)))!.Value.From;
        });
        Assert.Equal(IPAddress.Parse("198.51.100.1"), from.Address);
    }

    [Fact]
    public void Json_IsTheSameFormat()
    {
        const string json = """
            {
              "segments": {
                "internet": { "prefix": "0.0.0.0/0" },
                "home": { "prefix": "10.0.0.0/24" }
              },
              "routers": {
                "nat": {
                  "preset": "full-cone",
                  "inside": { "segment": "home", "address": "10.0.0.1" },
                  "outside": { "segment": "internet", "address": "198.51.100.1" }
                }
              },
              "hosts": {
            	"bob": { "segment": "home", "address": "10.0.0.10" }
              }
            }
            """;
        var spec = TopologyLoader.Parse(json, "t.json", TopologyFormat.Json);
        Assert.Equal("full-cone", spec.Routers[0].PresetName);
        Assert.Single(spec.Hosts);
    }

    [Fact]
    public void BuiltIn_TwoHomes_LoadsAndBuilds()
    {
        var lab = BuiltInTopologies.Load("two-homes").Build();
        Assert.Equal(4, lab.Routers.Count);
        Assert.Equal(5, lab.Hosts.Count);
    }

    public static TheoryData<string, string, string> Malformed => new()
    {
        // (file text, expected location, expected problem)
        { "segments:\n  home: { prefix: 192.168.1.0/33 }\n", "bad.yaml:2:19: segments.home.prefix", "not an IPv4 prefix" },
        { "segments:\n  home: { prefix: 10.0.0.0/8 }\nhosts:\n  a: { segment: home, address: 10.0.0.300 }\n", "bad.yaml:4:32: hosts.a.address", "'10.0.0.300' is not an IPv4 address" },
        { "segments:\n  home: { prefix: 10.0.0.0/8 }\nhosts:\n  a: { segment: hom, address: 10.0.0.3 }\n", "bad.yaml:4:17: hosts.a.segment", "no segment named 'hom'" },
        { "segments:\n  home: { prefix: 10.0.0.0/8 }\nhosts:\n  a: { segment: home, address: 11.0.0.3 }\n", "bad.yaml:4:32: hosts.a.address", "11.0.0.3 is not in segment home" },
        { "segments:\n  home: { prefix: 10.0.0.0/8 }\nhosts:\n  a: { segment: home, address: 10.0.0.3 }\n  b: { segment: home, address: 10.0.0.3 }\n", "bad.yaml:5:32: hosts.b.address", "already used on segment home by a" },
        { "segments:\n  i: { prefix: 0.0.0.0/0 }\n  h: { prefix: 10.0.0.0/8 }\nrouters:\n  r:\n    preset: fullcone\n    inside: { segment: h, address: 10.0.0.1 }\n    outside: { segment: i, address: 1.2.3.4 }\n", "bad.yaml:6:13: routers.r.preset", "unknown preset 'fullcone'" },
        { "segments:\n  i: { prefix: 0.0.0.0/0 }\n  h: { prefix: 10.0.0.0/8 }\nrouters:\n  r:\n    nat: { mapping: sometimes }\n    inside: { segment: h, address: 10.0.0.1 }\n    outside: { segment: i, address: 1.2.3.4 }\n", "bad.yaml:6:21: routers.r.nat.mapping", "'sometimes' is not one of endpoint-independent" },
        { "segments:\n  i: { prefix: 0.0.0.0/0 }\n  h: { prefix: 10.0.0.0/8 }\nrouters:\n  r:\n    nat: { udp-timeout: 10s }\n    inside: { segment: h, address: 10.0.0.1 }\n    outside: { segment: i, address: 1.2.3.4 }\n", "routers.r.nat.udp-timeout", "" },
        { "segments:\n  i: { prefix: 0.0.0.0/0 }\n  h: { prefix: 10.0.0.0/8 }\nrouters:\n  r:\n    nat: { udp-timeout: 10 }\n    inside: { segment: h, address: 10.0.0.1 }\n    outside: { segment: i, address: 1.2.3.4 }\n", "bad.yaml:6:25: routers.r.nat.udp-timeout", "not a duration" },
        { "segments:\n  h: { prefix: 10.0.0.0/8, link: { loss: 2 } }\n", "bad.yaml:2:42: segments.h.link.loss", "not a probability" },
        { "segments:\n  h: { prefix: 10.0.0.0/8, lnk: {} }\n", "bad.yaml:2:28: segments.h.lnk", "unknown field 'lnk'" },
        { "segments:\n  h: { prefix: 10.0.0.0/8 }\nrouters:\n  r:\n    inside: { segment: h, address: 10.0.0.1 }\n", "bad.yaml:5:5: routers.r.outside", "missing" },
        { "hosts: {}\n", "bad.yaml:1:1: segments", "missing" },
        { "segments: [\n", "bad.yaml:", "not valid YAML" },
        { "segments:\n  i: { prefix: 0.0.0.0/0 }\n  a: { prefix: 10.0.0.0/24 }\n  b: { prefix: 10.1.0.0/24 }\nrouters:\n  ra:\n    inside: { segment: a, address: 10.0.0.1 }\n    outside: { segment: b, address: 10.1.0.2 }\n  rb:\n    inside: { segment: b, address: 10.1.0.1 }\n    outside: { segment: a, address: 10.0.0.2 }\n", "routers.ra.outside.segment", "loop" },
    };

    [Theory]
    [MemberData(nameof(Malformed))]
    public void MalformedFiles_AreRefused_NamingFileLineFieldAndProblem(string text, string where, string problem)
    {
        var e = Assert.Throws<TopologyException>(() => TopologyLoader.Parse(text, "bad.yaml"));
        Assert.True(e.Errors.Any(err => err.ToString().Contains(where, StringComparison.Ordinal) &&
                                        err.ToString().Contains(problem, StringComparison.Ordinal)), e.Message);
        Assert.All(e.Errors, err => Assert.Equal("bad.yaml", err.File));
    }

    [Fact]
    public void MalformedJson_NamesTheLine()
    {
        var e = Assert.Throws<TopologyException>(() =>
            TopologyLoader.Parse("{\n  \"segments\": {\n    \"h\": { \"prefix\": 10 }\n  },\n}\n", "t.json", TopologyFormat.Json));
        var err = Assert.Single(e.Errors);
        Assert.Equal(5, err.Line);
        Assert.Contains("t.json:5:", err.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void SeveralProblems_AreAllReported()
    {
        var e = Assert.Throws<TopologyException>(() => TopologyLoader.Parse(
            "segments:\n  h: { prefix: 10.0.0.0/8 }\nhosts:\n  a: { segment: x, address: 1 }\n  b: { segment: h }\n", "bad.yaml"));
        Assert.True(e.Errors.Count >= 3, e.Message);
    }

    [Fact]
    public void MissingFile_IsATopologyError()
    {
        var e = Assert.Throws<TopologyException>(() => TopologyLoader.LoadFile("/nonexistent/natkit-topology.yaml"));
        Assert.Contains("/nonexistent/natkit-topology.yaml", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void RandomAndMutatedText_NeverThrowsAnythingButTopologyException()
    {
        var rng = new Random(11);
        for (var i = 0; i < 2000; i++)
        {
            var chars = Good.ToCharArray();
            for (var k = rng.Next(1, 6); k > 0; k--)
            {
                chars[rng.Next(chars.Length)] = "{}[]:,- \n#'\"0a.%/"[rng.Next(17)];
            }

            try
            {
                // Whatever validation accepts must build.
                TopologyLoader.Parse(new string(chars), "fuzz.yaml").Build();
            }
            catch (TopologyException)
            {
            }
        }
    }
}
