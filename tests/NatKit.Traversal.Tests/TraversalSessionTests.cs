using System.Net;
using FsCheck;
using FsCheck.Fluent;
using NatKit.Stun.Discovery;
using NatKit.Traversal.HardNat;
using NatKit.Traversal.Ice;

namespace NatKit.Traversal.Tests;

public sealed class TraversalSessionTests
{
    private static readonly IPEndPoint Host = new(IPAddress.Parse("192.168.1.10"), 40000);
    private static readonly IPEndPoint Mapped = new(IPAddress.Parse("198.51.100.1"), 40003);

    private static TraversalSession Sample(IPEndPoint? predicted = null, int sockets = 0) => new(
        new IceCredentials("Fx3k", "9bQ2Yc5tWq0mVhLz8sKd1e"),
        new NatProfile(NatMapping.AddressAndPortDependent, PortAllocation.Sequential, Mapped.Address, Mapped.Port, 1),
        [IceCandidate.Host(Host), IceCandidate.ServerReflexive(Mapped, Host, IPAddress.Parse("203.0.113.10"))],
        predicted, sockets);

    [Fact]
    public void TextFormRoundTrips()
    {
        var s = Sample(new IPEndPoint(Mapped.Address, 40004), sockets: 256);
        Assert.True(TraversalSession.TryParse(s.ToString(), out var back, out var error), error);
        Assert.Equal(s.Credentials, back.Credentials);
        Assert.Equal(s.Nat, back.Nat);
        Assert.Equal(s.Candidates, back.Candidates);
        Assert.Equal(s.Predicted, back.Predicted);
        Assert.Equal(256, back.BirthdaySockets);
        Assert.True(System.Text.Encoding.UTF8.GetByteCount(s.ToString()) <= 800, "an offer fits a rendezvous message");
    }

    [Theory]
    [InlineData("", "empty")]
    [InlineData("ice-ufrag:ab\nice-pwd:9bQ2Yc5tWq0mVhLz8sKd1e\n", "credentials")]
    [InlineData("ice-ufrag:Fx3k\nice-pwd:9bQ2Yc5tWq0mVhLz8sKd1e\nbogus:1\n", "unknown")]
    [InlineData("ice-ufrag:Fx3k\nice-pwd:9bQ2Yc5tWq0mVhLz8sKd1e\npredicted:1.2.3.4 70000\n", "predicted")]
    [InlineData("ice-ufrag:Fx3k\nice-pwd:9bQ2Yc5tWq0mVhLz8sKd1e\nsockets:99999\n", "socket count")]
    [InlineData("ice-ufrag:Fx3k\nice-pwd:9bQ2Yc5tWq0mVhLz8sKd1e\nnat:wat\n", "nat profile")]
    [InlineData("ice-ufrag:Fx3k\nice-pwd:9bQ2Yc5tWq0mVhLz8sKd1e\ncandidate:x 1 udp 1 1.2.3.4 5 typ nope\n", "candidate")]
    [InlineData("no colon here", "name")]
    public void MalformedSessionsAreRefusedWithAReason(string text, string reason)
    {
        Assert.False(TraversalSession.TryParse(text, out _, out var error));
        Assert.Contains(reason, error, StringComparison.Ordinal);
    }

    [Fact]
    public void MoreThanTheCandidateLimitIsRefused()
    {
        var line = IceCandidateSdp.Format(IceCandidate.Host(Host));
        var text = "ice-ufrag:Fx3k\nice-pwd:9bQ2Yc5tWq0mVhLz8sKd1e\n" +
                   string.Concat(Enumerable.Repeat(line + "\n", TraversalSession.MaxCandidates + 1));
        Assert.False(TraversalSession.TryParse(text, out _, out var error));
        Assert.Contains("more than", error, StringComparison.Ordinal);
    }

    [Fact]
    public void GarbageAndMutatedSessionsNeverThrow()
    {
        var valid = Sample(new IPEndPoint(Mapped.Address, 40004), 16).ToString();
        var gen = from edits in Gen.ListOf(Gen.Zip(Gen.Choose(0, 1000), Gen.Elements(" :\n.x0-\u00e9\0%".ToCharArray())))
                  from cut in Gen.Choose(0, 200)
                  select (edits, cut);
        Prop.ForAll(gen.ToArbitrary(), t =>
        {
            var chars = valid.ToCharArray();
            foreach (var (pos, ch) in t.edits)
            {
                chars[pos % chars.Length] = ch;
            }

            var text = new string(chars);
            TraversalSession.TryParse(text, out _, out _);
            TraversalSession.TryParse(text[..Math.Max(0, text.Length - t.cut)], out _, out _);
            return true;
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(2000));
        Prop.ForAll(ArbMap.Default.ArbFor<string>(), s =>
        {
            TraversalSession.TryParse(s, out _, out _);
            return true;
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(1000));
    }
}

public sealed class ConnectPlanTests
{
    private static readonly ProbeBudget Budget = new();
    private static readonly NatProfile Eim = new(NatMapping.EndpointIndependent, PortAllocation.Fixed, IPAddress.Loopback, 4000, 0);
    private static readonly NatProfile None = new(NatMapping.NoNat, PortAllocation.Fixed, IPAddress.Loopback, 4000, 0);
    private static readonly NatProfile Seq = new(NatMapping.AddressAndPortDependent, PortAllocation.Sequential, IPAddress.Loopback, 4000, 1);
    private static readonly NatProfile Rand = new(NatMapping.AddressAndPortDependent, PortAllocation.Random, IPAddress.Loopback, 40000, 0);

    [Theory]
    [InlineData("eim", "eim", HardNatRole.None)]
    [InlineData("none", "rand", HardNatRole.BirthdayEasy)]
    [InlineData("eim", "rand", HardNatRole.BirthdayEasy)]
    [InlineData("rand", "eim", HardNatRole.BirthdayHard)]
    [InlineData("rand", "none", HardNatRole.BirthdayHard)]
    [InlineData("seq", "seq", HardNatRole.Predict)]
    [InlineData("seq", "eim", HardNatRole.Predict)]
    [InlineData("eim", "seq", HardNatRole.None)]
    [InlineData("seq", "rand", HardNatRole.None)]
    [InlineData("rand", "seq", HardNatRole.None)]
    [InlineData("rand", "rand", HardNatRole.None)]
    public void TheMethodFollowsBothProfiles(string local, string remote, HardNatRole role)
    {
        var plan = ConnectPlan.For(Profile(local), Profile(remote), Budget);
        Assert.Equal(role, plan.Role);
        switch (role)
        {
            case HardNatRole.BirthdayHard:
                Assert.Equal(Budget.HardSideSockets, plan.Sockets);
                Assert.True(plan.AgentOptions(IceAgentOptions.Default).MaxPairs >= Budget.HardSideSockets);
                break;
            case HardNatRole.BirthdayEasy:
                Assert.Equal(Budget.Total, plan.Probes);
                Assert.Equal(Budget.PerSecond, plan.ProbesPerSecond);
                // an easy NAT that filters nothing lets every hard-side punch in: a pair each, and room for the
                // one the controlling side nominates (found at 2% loss, 50 ms links: one2one x symmetric-random)
                Assert.Equal(Budget.HardSideSockets, plan.PeerSockets);
                Assert.True(plan.AgentOptions(IceAgentOptions.Default).MaxPairs > Budget.HardSideSockets + 32);
                break;
        }

        // Either side's hard-NAT method holds the relay back for as long as the method takes.
        Assert.Equal(ConnectPlan.For(Profile(remote), Profile(local), Budget).Role, plan.PeerRole);
        var relayAfter = plan.AgentOptions(IceAgentOptions.Default).NominateRelayedAfter;
        if (role != HardNatRole.None || plan.PeerRole != HardNatRole.None)
        {
            Assert.True(relayAfter >= ConnectPlan.PredictionWindow, $"{relayAfter}");
        }
        else
        {
            Assert.Equal(IceAgentOptions.Default.NominateRelayedAfter, relayAfter);
        }
    }

    private static NatProfile Profile(string name) => name switch
    {
        "eim" => Eim,
        "none" => None,
        "seq" => Seq,
        _ => Rand,
    };
}
