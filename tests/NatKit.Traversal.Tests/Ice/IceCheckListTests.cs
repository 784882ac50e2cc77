using System.Net;
using NatKit.Traversal.Ice;
using static NatKit.Traversal.Tests.Ice.IceTestKit;

namespace NatKit.Traversal.Tests.Ice;

/// <summary>Pair formation, ordering, pruning and limits (RFC 8445 section 6.1.2), without running checks.</summary>
public class IceCheckListTests
{
    [Fact]
    public void Rfc8445_6_1_2_4_ReflexiveCandidatesArePrunedToTheirBase_RelayedOnesArePaired()
    {
        var a = Agent(IceRole.Controlling, 1);
        var host = IceCandidate.Host(HostA);
        var srflx = IceCandidate.ServerReflexive(Ep("203.0.113.1:5000"), HostA, IPAddress.Parse("203.0.113.100"));
        var relay = IceCandidate.Relayed(Ep("198.51.100.9:4000"), Ep("203.0.113.1:5000"), IPAddress.Parse("198.51.100.9"));
        Assert.True(a.AddLocalCandidate(host, 0));
        Assert.True(a.AddLocalCandidate(srflx, 0));
        Assert.True(a.AddLocalCandidate(relay, 1));
        Assert.True(a.AddRemoteCandidate(IceCandidate.Host(HostB)));
        Assert.True(a.AddRemoteCandidate(IceCandidate.ServerReflexive(Ep("203.0.113.2:6000"), HostB, null)));

        // 2 bases x 2 remote candidates; the server-reflexive local candidate forms none of its own.
        Assert.Equal(4, a.CheckList.Count);
        Assert.DoesNotContain(a.CheckList, p => p.Local.Type == IceCandidateType.ServerReflexive);
        Assert.Equal(2, a.CheckList.Count(p => p.Local == relay && p.Socket == 1));
        Assert.Equal(2, a.CheckList.Count(p => p.Local == host && p.Socket == 0));
    }

    [Fact]
    public void Rfc8445_6_1_2_3_PairsAreOrderedByThePairPriorityFormula_ForEitherRole()
    {
        foreach (var role in new[] { IceRole.Controlling, IceRole.Controlled })
        {
            var a = Agent(role, 1);
            a.AddLocalCandidate(IceCandidate.Host(HostA), 0);
            a.AddLocalCandidate(IceCandidate.Relayed(Ep("198.51.100.9:4000"), HostA, IPAddress.Parse("198.51.100.9")), 1);
            a.AddRemoteCandidate(IceCandidate.Host(HostB));
            a.AddRemoteCandidate(IceCandidate.ServerReflexive(Ep("203.0.113.2:6000"), HostB, null));
            a.AddRemoteCandidate(IceCandidate.Relayed(Ep("198.51.100.8:4000"), HostB, IPAddress.Parse("198.51.100.8")));

            foreach (var p in a.CheckList)
            {
                var (g, d) = role == IceRole.Controlling
                    ? (p.Local.Priority, p.Remote.Priority)
                    : (p.Remote.Priority, p.Local.Priority);
                var expected = ((ulong)Math.Min(g, d) << 32) + (2UL * Math.Max(g, d)) + (g > d ? 1UL : 0UL);
                Assert.Equal(expected, p.Priority);
            }

            Assert.Equal(a.CheckList.OrderByDescending(p => p.Priority).ToList(), a.CheckList.ToList());
            Assert.Equal(IceCandidateType.Host, a.CheckList[0].Local.Type);
            Assert.Equal(IceCandidateType.Host, a.CheckList[0].Remote.Type);
            Assert.True(a.CheckList[^1].Local.IsRelayed && a.CheckList[^1].Remote.IsRelayed);
        }
    }

    [Fact]
    public void Rfc8445_6_1_2_6_OnePairPerFoundationStartsWaiting_TheRestFrozen()
    {
        var a = Agent(IceRole.Controlling, 1);
        a.AddLocalCandidate(IceCandidate.Host(HostA), 0);
        var first = IceCandidate.Host(HostB);
        a.AddRemoteCandidate(first);
        a.AddRemoteCandidate(new IceCandidate(first.Foundation, 1, IceProtocol.Udp, first.Priority - 5, Ep("10.0.0.2:2001"), IceCandidateType.Host));
        a.AddRemoteCandidate(new IceCandidate("other", 1, IceProtocol.Udp, first.Priority - 9, Ep("10.0.0.3:2000"), IceCandidateType.Host));

        Assert.Equal(
            [IceCandidatePairState.Waiting, IceCandidatePairState.Frozen, IceCandidatePairState.Waiting],
            a.CheckList.Select(p => p.State));
    }

    [Fact]
    public void Rfc8445_6_1_2_5_TheCheckListIsCapped_TheLowestPriorityPairsGo()
    {
        var a = Agent(IceRole.Controlling, 1, new IceAgentOptions { MaxPairs = 100 });
        a.AddLocalCandidate(IceCandidate.Host(HostA), 0);
        for (var i = 0; i < 150; i++)
        {
            a.AddRemoteCandidate(new IceCandidate("f" + i, 1, IceProtocol.Udp, (uint)(10_000 + i), Ep($"10.1.{i / 200}.{(i % 200) + 1}:7000"),
                IceCandidateType.Host));
        }

        Assert.Equal(100, a.CheckList.Count);
        Assert.Equal(150, a.RemoteCandidates.Count);
        Assert.All(a.CheckList, p => Assert.True(p.Remote.Priority >= 10_050));
    }

    [Fact]
    public void Candidates_TheAgentCannotUse_AreRefused()
    {
        var a = Agent(IceRole.Controlling, 1);
        Assert.False(a.AddLocalCandidate(IceCandidate.ServerReflexive(Ep("203.0.113.1:5000"), HostA, null), 0)); // no base yet
        Assert.True(a.AddLocalCandidate(IceCandidate.Host(HostA), 0));
        Assert.False(a.AddLocalCandidate(IceCandidate.Host(Ep("10.0.0.9:1000")), 0)); // second IPv4 base on socket 0
        Assert.True(a.AddLocalCandidate(IceCandidate.Host(Ep("[fd00::1]:1000")), 0)); // an IPv6 base beside it
        Assert.False(a.AddLocalCandidate(IceCandidate.Host(HostA), 3)); // address already known
        Assert.False(a.AddRemoteCandidate(new IceCandidate("x", 2, IceProtocol.Udp, 1, HostB, IceCandidateType.Host)));
        Assert.False(a.AddRemoteCandidate(new IceCandidate("x", 1, IceProtocol.Tcp, 1, HostB, IceCandidateType.Host)));
        Assert.True(a.AddRemoteCandidate(IceCandidate.Host(HostB)));
        Assert.False(a.AddRemoteCandidate(IceCandidate.Host(HostB)));
        // Pairs only within an address family.
        Assert.Single(a.CheckList);
        Assert.True(a.AddRemoteCandidate(IceCandidate.Host(Ep("[fd00::2]:2000"))));
        Assert.Equal(2, a.CheckList.Count);
        Assert.All(a.CheckList, p => Assert.Equal(p.Local.EndPoint.AddressFamily, p.Remote.EndPoint.AddressFamily));
    }

    [Fact]
    public void ManyLocalBases_ManyRemotePorts_PairEveryBaseWithEveryPort_DistinctFoundationsRunSideBySide()
    {
        // The shapes the hard-NAT methods add: a birthday set of sockets (each its own base and foundation), and
        // many ports of one address (32 sharing one foundation, 32 with a foundation each).
        var a = Agent(IceRole.Controlling, 1, new IceAgentOptions { MaxPairs = 1024 });
        var hostFoundation = IceFoundation.Compute(IceCandidateType.Host, IPAddress.Parse("10.0.0.1"), null, IceProtocol.Udp);
        for (var s = 0; s < 16; s++)
        {
            var local = new IceCandidate(IceFoundation.Distinct(hostFoundation, s), 1, IceProtocol.Udp,
                IcePriority.Candidate(IcePriority.HostPreference, (ushort)(65535 - s), 1), Ep($"10.0.0.1:{40000 + s}"),
                IceCandidateType.Host);
            Assert.True(a.AddLocalCandidate(local, s));
        }

        var shared = IceFoundation.Compute(IceCandidateType.ServerReflexive, IPAddress.Parse("203.0.113.2"), null,
            IceProtocol.Udp, IceCandidateOrigin.PortPrediction);
        var priority = IcePriority.Candidate(IcePriority.TypePreference(IceCandidateType.ServerReflexive,
            IceCandidateOrigin.PortPrediction), 65535, 1);
        for (var port = 0; port < 32; port++)
        {
            Assert.True(a.AddRemoteCandidate(new IceCandidate(shared, 1, IceProtocol.Udp, priority,
                Ep($"203.0.113.2:{50000 + port}"), IceCandidateType.ServerReflexive) { Origin = IceCandidateOrigin.PortPrediction }));
            Assert.True(a.AddRemoteCandidate(new IceCandidate(IceFoundation.Distinct(shared, port), 1, IceProtocol.Udp,
                priority, Ep($"203.0.113.3:{50000 + port}"), IceCandidateType.ServerReflexive) { Origin = IceCandidateOrigin.BirthdayProbe }));
        }

        Assert.Equal(16 * 64, a.CheckList.Count);
        // One Waiting pair per pair foundation: 16 for the shared-foundation ports, 16 x 32 for the distinct ones.
        Assert.Equal(16 + (16 * 32), a.CheckList.Count(p => p.State == IceCandidatePairState.Waiting));
        Assert.Equal(90u, a.RemoteCandidates[0].Priority >> 24);
    }
}
