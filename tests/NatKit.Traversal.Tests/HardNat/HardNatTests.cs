using System.Net;
using FsCheck;
using FsCheck.Fluent;
using NatKit.Lab;
using NatKit.Nat;
using NatKit.Net;
using NatKit.Stun;
using NatKit.Stun.Discovery;
using NatKit.Stun.Server;
using NatKit.Traversal.HardNat;

namespace NatKit.Traversal.Tests.HardNat;

public class NatProfilerTests
{
    private static readonly IPEndPoint Local = new(IPAddress.Parse("192.168.1.10"), 40000);

    private static MappingObservation Seen(string destination, int mappedPort, string mappedAddress = "198.51.100.1") =>
        new(IPEndPoint.Parse(destination), new IPEndPoint(IPAddress.Parse(mappedAddress), mappedPort));

    [Fact]
    public void SamePortForEveryDestination_IsEndpointIndependent()
    {
        var p = NatProfiler.Infer(Local, [Seen("203.0.113.1:3478", 51000), Seen("203.0.113.2:3478", 51000)]);
        Assert.Equal(NatMapping.EndpointIndependent, p.Mapping);
        Assert.Equal(PortAllocation.Fixed, p.Allocation);
        Assert.True(p.IsStable);
        Assert.Equal("eim", p.ToString());
    }

    [Fact]
    public void OwnAddressAndPort_IsNoNat_EvenFromOneObservation()
    {
        var p = NatProfiler.Infer(new IPEndPoint(IPAddress.Any, 40000), [Seen("203.0.113.1:3478", 40000, "192.168.1.10")],
            [IPAddress.Parse("192.168.1.10")]);
        Assert.Equal(NatMapping.NoNat, p.Mapping);
        Assert.True(p.IsStable);
    }

    [Fact]
    public void OneObservation_BehindANat_SaysOnlyTheEndpoint()
    {
        var p = NatProfiler.Infer(Local, [Seen("203.0.113.1:3478", 51000)]);
        Assert.Equal(NatMapping.Unknown, p.Mapping);
        Assert.Equal(51000, p.LastPort);
        Assert.False(p.IsStable || p.IsDependent);
    }

    [Theory]
    [InlineData(new[] { 50000, 50001, 50002 }, 1)]
    [InlineData(new[] { 50000, 50002, 50004, 50006 }, 2)] // a parity-keeping allocator
    [InlineData(new[] { 50000, 50001, 50004, 50006 }, 1)] // other hosts' mappings interleaved: the smallest step
    [InlineData(new[] { 50010, 50009, 50008 }, -1)]
    public void SmallSteadySteps_AreSequential(int[] ports, int step)
    {
        var seen = ports.Select((port, i) => Seen($"203.0.113.{i + 1}:3478", port)).ToList();
        var p = NatProfiler.Infer(Local, seen);
        Assert.Equal(NatMapping.AddressAndPortDependent, p.Mapping);
        Assert.Equal(PortAllocation.Sequential, p.Allocation);
        Assert.Equal(step, p.Step);
        Assert.Equal(ports[^1], p.LastPort);
        Assert.True(p.IsPredictable);
    }

    [Theory]
    [InlineData(new[] { 50000, 61234, 40211 })]
    [InlineData(new[] { 50000, 50001, 49000 })]
    [InlineData(new[] { 50000, 50100 })]
    public void LargeOrErraticSteps_AreRandom(int[] ports)
    {
        var p = NatProfiler.Infer(Local, ports.Select((port, i) => Seen($"203.0.113.{i + 1}:3478", port)).ToList());
        Assert.Equal(PortAllocation.Random, p.Allocation);
        Assert.True(p.IsRandomSymmetric);
        Assert.Equal("apdm-rand", p.ToString());
    }

    [Fact]
    public void OneMappingPerAddress_IsAddressDependent()
    {
        var p = NatProfiler.Infer(Local,
        [
            Seen("203.0.113.1:3478", 50000), Seen("203.0.113.1:3479", 50000), Seen("203.0.113.2:3478", 50001),
        ]);
        Assert.Equal(NatMapping.AddressDependent, p.Mapping);
        Assert.Equal(PortAllocation.Sequential, p.Allocation);
        Assert.Equal(1, p.Step);
    }

    [Fact]
    public void Profile_RoundTripsThroughItsOfferForm()
    {
        foreach (var p in new[]
                 {
                     NatProfile.Unknown,
                     new NatProfile(NatMapping.EndpointIndependent, PortAllocation.Fixed, null, 0, 0),
                     new NatProfile(NatMapping.NoNat, PortAllocation.Fixed, null, 0, 0),
                     new NatProfile(NatMapping.AddressAndPortDependent, PortAllocation.Random, null, 0, 0),
                     new NatProfile(NatMapping.AddressDependent, PortAllocation.Sequential, IPAddress.Parse("198.51.100.7"), 40001, -2),
                 })
        {
            Assert.True(NatProfile.TryParse(p.ToString(), out var back), p.ToString());
            Assert.Equal(p, back);
        }
    }

    [Fact]
    public void Property_OfferFormFromAPeer_NeverThrows_AndRefusesNonsense()
    {
        Prop.ForAll<string>(s =>
        {
            _ = NatProfile.TryParse(s, out _);
            return true;
        }).QuickCheckThrowOnFailure();
        foreach (var bad in new[] { "apdm-seq:+0@198.51.100.7:1", "apdm-seq:+99@198.51.100.7:1", "apdm-seq:+1@x:1",
                     "apdm-seq:+1@198.51.100.7:0", "xyz-rand", "apdm-", "eim ", new string('a', 500) })
        {
            Assert.False(NatProfile.TryParse(bad, out _), bad);
        }
    }
}

public class PortPredictorTests
{
    [Fact]
    public void Predict_AimsAheadByTheStep_AndWrapsInsideTheRange()
    {
        var p = new NatProfile(NatMapping.AddressAndPortDependent, PortAllocation.Sequential, IPAddress.Loopback, 65534, 1);
        Assert.Equal(new[] { 65535, 1024, 1025 }, PortPredictor.Predict(p, 3));
        var down = p with { LastPort = 1025, Step = -2 };
        Assert.Equal(new[] { 65535, 65533 }, PortPredictor.Predict(down, 2));
        Assert.Empty(PortPredictor.Predict(p with { Allocation = PortAllocation.Random }, 3));
    }

    [Fact]
    public void Lab_SequentialSymmetricNat_ProfiledFromThreeServers_NextMappingIsThePrediction()
    {
        var policy = NatPresets.Symmetric with { PortAssignment = PortAssignment.Sequential };
        var (profile, predicted, actual) = ProfileThenMap(policy, seed: 3);
        Assert.Equal(PortAllocation.Sequential, profile.Allocation);
        Assert.Equal(1, profile.Step);
        Assert.Equal(predicted, actual);
    }

    [Fact]
    public void Lab_RandomSymmetricNat_IsRandom_AndEasyNatIsStable()
    {
        Assert.True(ProfileThenMap(NatPresets.TailscaleHard, seed: 4).Profile.IsRandomSymmetric);
        Assert.True(ProfileThenMap(NatPresets.TailscaleEasy, seed: 5).Profile.IsStable);
        Assert.True(ProfileThenMap(NatPresets.LinuxMasquerade, seed: 6).Profile.IsStable);
    }

    /// <summary>Profiles one socket behind <paramref name="policy"/> from three STUN endpoints (real NAT engine,
    /// real STUN server), predicts its next mapping's port, then makes that mapping and reads the port a fourth
    /// server endpoint saw.</summary>
    private static (NatProfile Profile, int Predicted, int Actual) ProfileThenMap(NatPolicy policy, int seed)
    {
        var lab = new VirtualNetwork(seed);
        var internet = lab.AddSegment("internet");
        var home = lab.AddSegment("home", "192.168.1.0/24");
        lab.AddRouter("nat", policy, home, "192.168.1.1", internet, "198.51.100.1");
        var serverHost = lab.AddHost("server", internet, "203.0.113.100", "203.0.113.101");
        var client = lab.AddHost("client", home, "192.168.1.10");
        return lab.Run(async () =>
        {
            await using var server = await StunServer.StartAsync(serverHost, new StunServerOptions
            {
                Primary = new IPEndPoint(IPAddress.Parse("203.0.113.100"), 3478),
                AlternateAddress = IPAddress.Parse("203.0.113.101"),
                EnableTcp = false,
            });
            await using var socket = await client.BindUdpAsync(new IPEndPoint(IPAddress.Any, 0));
            var endpoints = server.UdpEndPoints;
            var seen = new List<MappingObservation>();
            for (var i = 0; i < 3; i++)
            {
                seen.Add(new MappingObservation(endpoints[i], await MappedAsync(socket, endpoints[i])));
            }

            var profile = NatProfiler.Infer(socket.LocalEndPoint, seen);
            var predicted = profile.IsPredictable ? PortPredictor.Predict(profile, 1)[0] : -1;
            var actual = (await MappedAsync(socket, endpoints[3])).Port;
            return (profile, predicted, actual);
        });
    }

    private static async Task<IPEndPoint> MappedAsync(IDatagramSocket socket, IPEndPoint server)
    {
        var request = new byte[28];
        var id = StunTransactionId.NewRandom();
        var w = new StunMessageWriter(request, StunMethods.Binding, StunClass.Request, id);
        w.AddFingerprint();
        await socket.SendToAsync(request.AsMemory(0, w.Length), server);
        var buffer = new byte[1500];
        while (true)
        {
            var got = await socket.ReceiveFromAsync(buffer);
            if (StunMessageReader.TryParse(buffer.AsSpan(0, got.Length), out var r) && r.TransactionId == id &&
                r.TryGetXorAddress(StunAttributeType.XorMappedAddress, out var mapped))
            {
                return mapped.ToEndPoint();
            }
        }
    }
}

public class BirthdayProbingTests
{
    [Fact]
    public void SuccessProbability_MatchesTailscalesNumbers()
    {
        // 256 mappings, 1,024 probes over a 64,512-port range: about 98% (the "How NAT traversal works" figure).
        Assert.InRange(BirthdayProbing.SuccessProbability(256, 64_512, 1024), 0.98, 0.99);
        // The same budget over the 32,768 ports of a 32768-65535 allocator: 99.97%.
        Assert.InRange(BirthdayProbing.SuccessProbability(256, 32_768, 1024), 0.9996, 0.9998);
        Assert.Equal(0, BirthdayProbing.SuccessProbability(0, 1000, 10));
        Assert.Equal(1, BirthdayProbing.SuccessProbability(10, 100, 91));
        Assert.Equal(0.1, BirthdayProbing.SuccessProbability(10, 100, 1), 9);
    }

    /// <summary>Linux's <c>masquerade random</c> (and the symmetric preset) draws from 1024-65535: the default budget
    /// must meet it at least 999 times in 1000, within the window the relay waits for.</summary>
    [Fact]
    public void DefaultBudget_MeetsARandomNatOverTheWholePortRange_999TimesIn1000()
    {
        var budget = new ProbeBudget();
        Assert.True(BirthdayProbing.SuccessProbability(budget.HardSideSockets, 65535 - 1024 + 1, budget.Total) >= 0.999);
        var plan = ConnectPlan.For(
            new NatProfile(NatMapping.EndpointIndependent, PortAllocation.Fixed, null, 0, 0),
            new NatProfile(NatMapping.AddressAndPortDependent, PortAllocation.Random, null, 0, 0),
            budget);
        Assert.Equal(HardNatRole.BirthdayEasy, plan.Role);
        Assert.Equal(TimeSpan.FromSeconds((double)budget.Total / budget.PerSecond), plan.ProbeDuration);
        Assert.Equal(plan.ProbeDuration + TimeSpan.FromSeconds(1), plan.BirthdayWindow);
    }

    [Fact]
    public void SuccessProbability_AgreesWithSimulation()
    {
        var random = new Random(11);
        const int open = 64, range = 4096, probes = 96, trials = 4000;
        var hits = 0;
        for (var t = 0; t < trials; t++)
        {
            var mapped = BirthdayProbing.ProbePorts(random, 1, range, open).ToHashSet();
            if (BirthdayProbing.ProbePorts(random, 1, range, probes).Any(mapped.Contains))
            {
                hits++;
            }
        }

        Assert.InRange((double)hits / trials, BirthdayProbing.SuccessProbability(open, range, probes) - 0.03,
            BirthdayProbing.SuccessProbability(open, range, probes) + 0.03);
    }

    [Fact]
    public void ProbePorts_AreDistinct_InRange_AndSkipExcluded()
    {
        var exclude = new HashSet<int> { 40000, 40001 };
        var ports = BirthdayProbing.ProbePorts(new Random(1), 40000, 40009, 100, exclude);
        Assert.Equal(8, ports.Length);
        Assert.Equal(8, ports.Distinct().Count());
        Assert.All(ports, p => Assert.InRange(p, 40002, 40009));
    }

    [Fact]
    public void GuessRange_NarrowsToTheEphemeralRange_OnlyWhenEverySeenPortIsInIt()
    {
        Assert.Equal((32768, 65535), BirthdayProbing.GuessRange([40000, 61000]));
        Assert.Equal((1024, 65535), BirthdayProbing.GuessRange([40000, 2000]));
        Assert.Equal((1024, 65535), BirthdayProbing.GuessRange([]));
    }

    [Fact]
    public void Budget_Validation_NamesTheField()
    {
        Assert.Contains("PerSecond", Assert.Throws<ArgumentException>(() => new ProbeBudget { PerSecond = 0 }.Validated()).Message,
            StringComparison.Ordinal);
        Assert.Contains("HardSideSockets", Assert.Throws<ArgumentException>(() => new ProbeBudget { HardSideSockets = 5000 }.Validated()).Message,
            StringComparison.Ordinal);
        Assert.Equal(2048, new ProbeBudget().Validated().Total);
    }
}
