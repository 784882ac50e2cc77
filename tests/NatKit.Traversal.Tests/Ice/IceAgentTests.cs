using System.Net;
using NatKit.Stun;
using NatKit.Traversal.Ice;
using static NatKit.Traversal.Tests.Ice.IceTestKit;

namespace NatKit.Traversal.Tests.Ice;

/// <summary>The pure agent end to end between two agents on <see cref="IceWire"/>: checks, nomination, roles,
/// peer-reflexive discovery, consent, keepalives and the relay-to-direct upgrade.</summary>
public class IceAgentTests
{
    [Fact]
    public void HostToHost_RegularNomination_BothSelectTheSamePath_AfterOneUseCandidateCheck()
    {
        var (wire, a, b) = HostPair();
        wire.Run(TimeSpan.FromSeconds(10), () => BothConnected(a, b));

        Assert.True(BothConnected(a, b));
        Assert.Equal(HostA, a.SelectedPair!.Local.EndPoint);
        Assert.Equal(HostB, a.SelectedPair.Remote.EndPoint);
        Assert.Equal(HostB, b.SelectedPair!.Local.EndPoint);
        Assert.Equal(HostA, b.SelectedPair.Remote.EndPoint);
        Assert.True(a.SelectedPair.Nominated && b.SelectedPair.Nominated);

        // Regular nomination (RFC 8445 section 8.1.1): exactly one request of the controlling agent carries
        // USE-CANDIDATE, and it follows a successful check without it; the controlled agent never sends one.
        var fromA = wire.Sent.Where(s => s.From == a && IsRequest(s.Bytes)).ToList();
        var nominations = fromA.Where(s => Has(s.Bytes, StunAttributeType.UseCandidate)).ToList();
        Assert.Single(nominations);
        Assert.False(Has(fromA[0].Bytes, StunAttributeType.UseCandidate));
        Assert.DoesNotContain(wire.Sent, s => s.From == b && Has(s.Bytes, StunAttributeType.UseCandidate));

        Assert.Equal(
            [typeof(IceStateChanged), typeof(IceSelectedPairChanged), typeof(IceStateChanged)],
            wire.Events[a].Select(e => e.GetType()));
        Assert.Equal(IceAgentState.Checking, ((IceStateChanged)wire.Events[a][0]).State);
        Assert.Equal(IceSelectionReason.Nominated, ((IceSelectedPairChanged)wire.Events[a][1]).Reason);
        Assert.NotNull(a.SelectedPair.Rtt);
        Assert.Equal(TimeSpan.FromMilliseconds(20), a.SelectedPair.Rtt);
    }

    [Fact]
    public void AggressiveNomination_EveryControllingCheckCarriesUseCandidate_AndTheFirstSuccessIsSelected()
    {
        var (wire, a, b) = HostPair(new IceAgentOptions { Nomination = IceNomination.Aggressive });
        wire.Run(TimeSpan.FromSeconds(10), () => BothConnected(a, b));

        Assert.True(BothConnected(a, b));
        var fromA = wire.Sent.Where(s => s.From == a && IsRequest(s.Bytes)).ToList();
        Assert.All(fromA, s => Assert.True(Has(s.Bytes, StunAttributeType.UseCandidate)));
        Assert.Equal(1, a.Stats.ChecksStarted);
    }

    [Fact]
    public void Checks_CarryRfc8445Attributes_AndResponsesTheMappedAddress()
    {
        var (wire, a, b) = HostPair();
        wire.Run(TimeSpan.FromSeconds(10), () => BothConnected(a, b));

        var request = wire.Sent.First(s => s.From == a && IsRequest(s.Bytes)).Bytes;
        Assert.True(StunMessageReader.TryParse(request, out var r));
        Assert.True(r.TryGet(StunAttributeType.Username, out var username));
        Assert.Equal($"{b.LocalCredentials.Ufrag}:{a.LocalCredentials.Ufrag}", System.Text.Encoding.UTF8.GetString(username));
        Assert.True(r.VerifyMessageIntegrity(StunCredentials.ShortTermKey(b.LocalCredentials.Password)));
        Assert.True(r.IsFingerprintValid());
        Assert.True(r.TryGetUInt32(StunAttributeType.Priority, out var priority));
        Assert.Equal(IcePriority.Candidate(IcePriority.PeerReflexivePreference, 65535, 1), priority);
        Assert.Equal(a.TieBreaker, TieBreakerOf(request, StunAttributeType.IceControlling));
        Assert.False(r.Contains(StunAttributeType.IceControlled));

        var response = wire.Sent.First(s => s.From == b && Class(s.Bytes) == StunClass.SuccessResponse).Bytes;
        Assert.True(StunMessageReader.TryParse(response, out var resp));
        Assert.True(resp.TryGetXorAddress(StunAttributeType.XorMappedAddress, out var mapped));
        Assert.Equal(HostA, mapped.ToEndPoint());
        Assert.True(resp.VerifyMessageIntegrity(StunCredentials.ShortTermKey(b.LocalCredentials.Password)));
        Assert.True(resp.IsFingerprintValid());
    }

    [Fact]
    public void Rfc8445_7_3_1_1_BothControlling_TheLargerTieBreakerKeepsTheRole_TheOtherIsAnswered487()
    {
        var (wire, a, b) = HostPair(roleA: IceRole.Controlling, roleB: IceRole.Controlling, tieA: 10, tieB: 5);
        // a's first check is lost, so b's reaches a while both still claim control: a answers 487 and b, on that
        // answer (section 7.2.5.1), turns controlled.
        var dropFirst = true;
        wire.Drop = (from, _) =>
        {
            if (from.Equals(HostA) && dropFirst)
            {
                dropFirst = false;
                return true;
            }

            return false;
        };
        wire.Run(TimeSpan.FromSeconds(10), () => BothConnected(a, b));

        Assert.True(BothConnected(a, b));
        Assert.Equal(IceRole.Controlling, a.Role);
        Assert.Equal(IceRole.Controlled, b.Role);
        var conflict = wire.Delivered.First(d => ErrorCode(d.Bytes) == StunErrorCode.RoleConflict);
        Assert.Equal(HostB, conflict.Destination);
        Assert.True(StunMessageReader.TryParse(conflict.Bytes, out var e) &&
                    e.VerifyMessageIntegrity(StunCredentials.ShortTermKey(a.LocalCredentials.Password)));
        Assert.Contains(wire.Events[b], ev => ev is IceRoleChanged { Role: IceRole.Controlled });
        Assert.DoesNotContain(wire.Events[a], ev => ev is IceRoleChanged);
        // b had not yet seen a request from a when it switched: the 487 answer did it.
        var switchedAt = wire.Delivered.First(d => ErrorCode(d.Bytes) == StunErrorCode.RoleConflict).At;
        Assert.DoesNotContain(wire.Delivered, d => d.Destination.Equals(HostB) && IsRequest(d.Bytes) && d.At < switchedAt);
    }

    [Fact]
    public void Rfc8445_7_3_1_1_BothControlling_TheSmallerTieBreakerSwitchesOnTheRequest()
    {
        var (wire, a, b) = HostPair(roleA: IceRole.Controlling, roleB: IceRole.Controlling, tieA: 5, tieB: 10);
        // a's first check is lost: a receives b's CONTROLLING(10) with 5, switches to controlled and answers.
        var dropFirst = true;
        wire.Drop = (from, _) =>
        {
            if (from.Equals(HostA) && dropFirst)
            {
                dropFirst = false;
                return true;
            }

            return false;
        };
        wire.Run(TimeSpan.FromSeconds(10), () => BothConnected(a, b));

        Assert.True(BothConnected(a, b));
        Assert.Equal(IceRole.Controlled, a.Role);
        Assert.Equal(IceRole.Controlling, b.Role);
        Assert.Contains(wire.Events[a], ev => ev is IceRoleChanged { Role: IceRole.Controlled });
        Assert.Equal(1, a.Stats.RoleConflicts);
    }

    [Fact]
    public void Rfc8445_7_3_1_1_BothControlled_TheLargerTieBreakerTakesControl()
    {
        var (wire, a, b) = HostPair(roleA: IceRole.Controlled, roleB: IceRole.Controlled, tieA: 10, tieB: 5);
        wire.Run(TimeSpan.FromSeconds(10), () => BothConnected(a, b));

        Assert.True(BothConnected(a, b));
        Assert.Equal(IceRole.Controlling, a.Role);
        Assert.Equal(IceRole.Controlled, b.Role);
        Assert.Contains(wire.Events[a], ev => ev is IceRoleChanged { Role: IceRole.Controlling });
        // b's CONTROLLED(5) reached a first or a's reached b first: either way b answered 487 or a switched on the
        // request, and a ends controlling; if b answered 487, a's request had claimed CONTROLLED.
        foreach (var d in wire.Delivered.Where(d => ErrorCode(d.Bytes) == StunErrorCode.RoleConflict))
        {
            Assert.Equal(HostA, d.Destination);
        }
    }

    [Fact]
    public void Rfc8445_7_2_5_1_A487ToAControlledRequest_SwitchesToControlling()
    {
        // Both controlled; b's first check is lost, so a's CONTROLLED(10) reaches b (controlled, 5) first: b's
        // tie-breaker is smaller, so b answers 487, and a takes control on that answer.
        var (wire, a, b) = HostPair(roleA: IceRole.Controlled, roleB: IceRole.Controlled, tieA: 10, tieB: 5);
        var dropFirst = true;
        wire.Drop = (from, _) =>
        {
            if (from.Equals(HostB) && dropFirst)
            {
                dropFirst = false;
                return true;
            }

            return false;
        };
        wire.Run(TimeSpan.FromSeconds(10), () => BothConnected(a, b));

        Assert.True(BothConnected(a, b));
        Assert.Equal(IceRole.Controlling, a.Role);
        var conflict = wire.Delivered.First(d => ErrorCode(d.Bytes) == StunErrorCode.RoleConflict);
        Assert.Equal(HostA, conflict.Destination);
        Assert.DoesNotContain(wire.Delivered, d => d.Destination.Equals(HostA) && IsRequest(d.Bytes) && d.At < conflict.At);
        Assert.Contains(wire.Events[a], ev => ev is IceRoleChanged { Role: IceRole.Controlling });
    }

    [Fact]
    public void PeerReflexive_BothSidesLearnTheNatMapping_AndConnectThroughIt()
    {
        var wire = new IceWire();
        var a = Agent(IceRole.Controlling, 1);
        var b = Agent(IceRole.Controlled, 2);
        var mappedA = Ep("203.0.113.1:62000");
        wire.Bind(a, 0, HostA, mappedA); // a behind a full-cone mapping nobody signaled
        wire.Bind(b, 0, HostB);
        a.AddLocalCandidate(IceCandidate.Host(HostA), 0);
        b.AddLocalCandidate(IceCandidate.Host(HostB), 0);
        Exchange(a, b);
        wire.Run(TimeSpan.FromSeconds(10), () => BothConnected(a, b));

        Assert.True(BothConnected(a, b));
        Assert.Equal(IceCandidateType.PeerReflexive, a.SelectedPair!.Local.Type);
        Assert.Equal(mappedA, a.SelectedPair.Local.EndPoint);
        Assert.Equal(HostA, a.SelectedPair.Local.RelatedEndPoint);
        Assert.Equal(IceCandidateType.PeerReflexive, b.SelectedPair!.Remote.Type);
        Assert.Equal(mappedA, b.SelectedPair.Remote.EndPoint);
        Assert.Contains(wire.Events[a], e => e is IceCandidateDiscovered { IsLocal: true });
        Assert.Contains(wire.Events[b], e => e is IceCandidateDiscovered { IsLocal: false });
        // The peer-reflexive priority is what a's check said in PRIORITY (section 7.3.1.3).
        Assert.Equal(IcePriority.Candidate(IcePriority.PeerReflexivePreference, 65535, 1), b.SelectedPair.Remote.Priority);
        // a's valid pair has the peer-reflexive local candidate, and sends from the host base's socket.
        Assert.Equal(0, a.SelectedPair.Socket);
        Assert.False(a.SelectedPair.InCheckList);
    }

    [Fact]
    public void Rfc7675_ConsentHoldsWhileThePeerAnswers_AndIsLostThirtySecondsAfterTheLastAnswer()
    {
        var (wire, a, b) = HostPair();
        wire.Run(TimeSpan.FromSeconds(10), () => BothConnected(a, b));
        var connectedAt = wire.Now;
        wire.Run(connectedAt + TimeSpan.FromMinutes(2));

        Assert.Equal(IceAgentState.Connected, a.State);
        // One consent check every 4-6 s (5 s randomized by 0.8-1.2).
        Assert.InRange(a.Stats.ConsentChecksSent, 120 / 6, 120 / 4);
        var consentTimes = wire.Sent.Where(s => s.From == a && IsRequest(s.Bytes) && s.At > connectedAt)
            .Select(s => s.At).ToList();
        for (var i = 1; i < consentTimes.Count; i++)
        {
            Assert.InRange(consentTimes[i] - consentTimes[i - 1], TimeSpan.FromSeconds(4), TimeSpan.FromSeconds(6));
        }

        // Each consent request goes out once, a new transaction each time (RFC 7675 section 5.1).
        Assert.Equal(a.Stats.ConsentChecksSent, consentTimes.Count);

        // The peer goes silent: consent ends 30 s after the last answer, not before.
        var lastAnswer = a.SelectedPair!.LastResponseAt!.Value;
        var silentFrom = wire.Now;
        wire.Drop = (_, _) => true;
        var selected = a.SelectedPair;
        wire.Run(silentFrom + TimeSpan.FromMinutes(1), () => a.State != IceAgentState.Connected);

        Assert.Equal(IceAgentState.Failed, a.State);
        Assert.Null(a.SelectedPair);
        Assert.Equal(lastAnswer + TimeSpan.FromSeconds(30), wire.Now);
        Assert.Contains(wire.Events[a], e => e is IceConsentLost lost && lost.Pair == selected);
        Assert.Contains(wire.Events[a], e => e is IceSelectedPairChanged { Pair: null, Reason: IceSelectionReason.ConsentLost });
    }

    [Fact]
    public void Rfc8445_11_WithoutConsent_ABindingIndicationHoldsTheMappingEveryFifteenSeconds()
    {
        var (wire, a, b) = HostPair(new IceAgentOptions { ConsentInterval = TimeSpan.Zero });
        wire.Run(TimeSpan.FromSeconds(10), () => BothConnected(a, b));
        var connectedAt = wire.Now;
        wire.Run(connectedAt + TimeSpan.FromSeconds(50));

        var indications = wire.Sent.Where(s => s.From == a && Class(s.Bytes) == StunClass.Indication).ToList();
        Assert.Equal(3, indications.Count);
        Assert.All(indications, i => Assert.Equal(HostB, i.Destination));
        Assert.All(indications, i => Assert.True(StunMessageReader.TryParse(i.Bytes, out var r) && r.IsFingerprintValid()
                                                  && !r.HasMessageIntegrity));
        Assert.Equal(IceAgentState.Connected, a.State);

        // Application data counts as traffic: no indication while data flows.
        var before = a.Stats.KeepalivesSent;
        for (var t = 1; t <= 40; t++)
        {
            a.RecordDataSent(wire.Now);
            wire.Run(wire.Now + TimeSpan.FromSeconds(1));
        }

        Assert.Equal(before, a.Stats.KeepalivesSent);
    }

    [Fact]
    public void Rfc8445_6_1_2_6_PairStates_FrozenWaitingInProgressSucceeded_AndFailedAfterTheTransaction()
    {
        var options = new IceAgentOptions { CheckRequestCount = 2, CheckLastWaitMultiplier = 2 };
        var wire = new IceWire();
        // a is controlled, so its good pair is not selected before the thawed one starts (once a pair is selected
        // no new ordinary check begins: RFC 8445 section 8.1.2).
        var a = Agent(IceRole.Controlled, 1, options);
        var b = Agent(IceRole.Controlling, 2, options);
        wire.Bind(a, 0, HostA);
        wire.Bind(b, 0, HostB);
        var deadB = Ep("10.0.0.2:2001");
        a.AddLocalCandidate(IceCandidate.Host(HostA), 0);
        b.AddLocalCandidate(IceCandidate.Host(HostB), 0);
        a.SetRemoteCredentials(b.LocalCredentials);
        b.SetRemoteCredentials(a.LocalCredentials);
        // Two remote candidates sharing a foundation: one pair starts Waiting, the other Frozen.
        var good = IceCandidate.Host(HostB);
        var dead = new IceCandidate(good.Foundation, 1, IceProtocol.Udp, good.Priority - 1, deadB, IceCandidateType.Host);
        a.AddRemoteCandidate(good);
        a.AddRemoteCandidate(dead);
        var goodPair = a.CheckList.Single(p => p.Remote.EndPoint.Equals(HostB));
        var deadPair = a.CheckList.Single(p => p.Remote.EndPoint.Equals(deadB));
        Assert.Equal(IceCandidatePairState.Waiting, goodPair.State);
        Assert.Equal(IceCandidatePairState.Frozen, deadPair.State);

        a.Poll(wire.Now);
        Assert.Equal(IceCandidatePairState.InProgress, goodPair.State);
        Assert.Equal(IceCandidatePairState.Frozen, deadPair.State);
        wire.Run(wire.Now + TimeSpan.FromMilliseconds(25));
        Assert.Equal(IceCandidatePairState.Succeeded, goodPair.State);
        // Section 7.2.5.3.3: success thaws the foundation.
        Assert.True(deadPair.State is IceCandidatePairState.Waiting or IceCandidatePairState.InProgress);

        wire.Run(wire.Now + TimeSpan.FromMilliseconds(100));
        Assert.Equal(IceCandidatePairState.InProgress, deadPair.State);
        // Rc = 2 sends, waits 500 ms then 2 x 500 ms: failed 1.5 s after its first send.
        var sentAt = wire.Sent.First(s => s.Destination.Equals(deadB)).At;
        wire.Run(sentAt + TimeSpan.FromMilliseconds(1499));
        Assert.Equal(IceCandidatePairState.InProgress, deadPair.State);
        wire.Run(sentAt + TimeSpan.FromMilliseconds(1500));
        Assert.Equal(IceCandidatePairState.Failed, deadPair.State);
        Assert.Equal(2, wire.Sent.Count(s => s.Destination.Equals(deadB)));
    }

    [Fact]
    public void EveryPairFailed_AfterEndOfCandidates_TheAgentFails_AndNotBefore()
    {
        var options = new IceAgentOptions { CheckRequestCount = 1, CheckLastWaitMultiplier = 1 };
        var (wire, a, b) = HostPair(options);
        wire.Drop = (_, _) => true;
        wire.Run(TimeSpan.FromSeconds(10));
        Assert.Equal(IceCandidatePairState.Failed, a.CheckList.Single().State);
        Assert.Equal(IceAgentState.Checking, a.State);

        a.SetEndOfCandidates();
        Assert.Equal(IceAgentState.Failed, a.State);
        Assert.True(a.TryTakeEvent(out var e) && e is IceStateChanged { State: IceAgentState.Failed });
        Assert.Equal(IceAgentState.Checking, b.State); // b was not told the end of candidates
    }

    [Fact]
    public void Rfc8445_7_3_1_4_ACheckFromThePeer_TriggersACheckOnThatPairBeforeHigherPriorityOnes()
    {
        var wire = new IceWire();
        var a = Agent(IceRole.Controlling, 1, new IceAgentOptions { CheckInterval = TimeSpan.FromSeconds(1) });
        var b = Agent(IceRole.Controlled, 2, new IceAgentOptions { CheckInterval = TimeSpan.FromSeconds(1) });
        wire.Bind(a, 0, HostA);
        wire.Bind(b, 0, HostB);
        a.AddLocalCandidate(IceCandidate.Host(HostA), 0);
        b.AddLocalCandidate(IceCandidate.Host(HostB), 0);
        a.SetRemoteCredentials(b.LocalCredentials);
        b.SetRemoteCredentials(a.LocalCredentials);
        a.AddRemoteCandidate(b.LocalCandidates[0]);
        // b also knows two better candidates of a's that never answer: the best shares the foundation of a's real
        // one (so b's pair to a's real candidate is Frozen behind it), the second has its own (Waiting).
        var ghost = Ep("10.0.0.1:999");
        var ghost2 = Ep("10.0.0.1:998");
        var real = a.LocalCandidates[0];
        b.AddRemoteCandidate(new IceCandidate(real.Foundation, 1, IceProtocol.Udp, uint.MaxValue >> 1, ghost, IceCandidateType.Host));
        b.AddRemoteCandidate(new IceCandidate("other", 1, IceProtocol.Udp, real.Priority + 1, ghost2, IceCandidateType.Host));
        b.AddRemoteCandidate(real);
        Assert.Equal(ghost, b.CheckList[0].Remote.EndPoint);
        Assert.Equal(ghost2, b.CheckList[1].Remote.EndPoint);
        Assert.Equal(IceCandidatePairState.Frozen, b.CheckList[2].State);
        b.Poll(wire.Now); // b's first ordinary check goes to the ghost
        wire.Run(wire.Now + TimeSpan.FromMilliseconds(100)); // a's check arrives at b; b answers

        var bRequests = wire.Sent.Where(s => s.From == b && IsRequest(s.Bytes)).ToList();
        Assert.Equal(ghost, bRequests[0].Destination);
        wire.Run(wire.Now + TimeSpan.FromSeconds(1.5));
        bRequests = wire.Sent.Where(s => s.From == b && IsRequest(s.Bytes)).ToList();
        // b's next check is the triggered one back to a's source.
        Assert.Equal(HostA, bRequests[1].Destination);
        Assert.True(b.Stats.TriggeredChecks >= 1);
    }

    [Fact]
    public void Rfc8445_14_2_ChecksArePacedByTa_AndTheBudgetBoundsOrdinaryChecks()
    {
        var wire = new IceWire();
        var a = Agent(IceRole.Controlling, 1);
        var b = Agent(IceRole.Controlled, 2);
        wire.Bind(a, 0, HostA);
        wire.Bind(b, 0, HostB);
        a.AddLocalCandidate(IceCandidate.Host(HostA), 0);
        a.SetRemoteCredentials(b.LocalCredentials);
        for (var i = 0; i < 10; i++)
        {
            // Distinct foundations: all start Waiting; nobody answers.
            a.AddRemoteCandidate(new IceCandidate("f" + i, 1, IceProtocol.Udp, (uint)(1000 + i), Ep($"10.9.0.{i + 1}:5000"),
                IceCandidateType.Host));
        }

        var budget = new CountingBudget(4);
        a.CheckBudget = budget;
        wire.Run(wire.Now + TimeSpan.FromMilliseconds(400));
        var firstSends = wire.Sent.Where(s => s.From == a).GroupBy(s => s.Destination).Select(g => g.First().At)
            .OrderBy(t => t).ToList();
        Assert.Equal(4, firstSends.Count);
        for (var i = 1; i < firstSends.Count; i++)
        {
            Assert.Equal(TimeSpan.FromMilliseconds(50), firstSends[i] - firstSends[i - 1]);
        }

        Assert.Equal(4, a.Stats.OrdinaryChecks);
        // Pairs are checked highest priority first.
        Assert.Equal(Ep("10.9.0.10:5000"), wire.Sent.First(s => s.From == a).Destination);
        budget.Left = 100;
        wire.Run(wire.Now + TimeSpan.FromSeconds(1));
        Assert.Equal(10, wire.Sent.Where(s => s.From == a).Select(s => s.Destination).Distinct().Count());
    }

    [Fact]
    public void PathUpgrade_SelectedRelayedPair_IsReplacedByADirectPairThatStartsWorkingLater()
    {
        var (wire, a, b, relay) = RelayedSetup(new IceAgentOptions());
        var directOpen = false;
        wire.Drop = (from, to) => !directOpen && (from.Equals(HostA) || to.Equals(HostA));
        wire.Run(TimeSpan.FromSeconds(20), () => BothConnected(a, b));
        Assert.True(BothConnected(a, b));
        Assert.True(a.SelectedPair!.IsRelayed);
        Assert.Equal(relay, a.SelectedPair.Local.EndPoint);
        Assert.True(b.SelectedPair!.IsRelayed);

        var openedAt = wire.Now + TimeSpan.FromSeconds(30);
        wire.Run(openedAt);
        Assert.True(a.SelectedPair.IsRelayed); // nothing direct works yet
        directOpen = true;
        wire.Run(openedAt + TimeSpan.FromSeconds(30),
            () => a.SelectedPair is { IsRelayed: false } && b.SelectedPair is { IsRelayed: false });

        Assert.False(a.SelectedPair!.IsRelayed);
        Assert.False(b.SelectedPair!.IsRelayed);
        Assert.Equal(HostA, b.SelectedPair.Remote.EndPoint);
        Assert.True(wire.Now - openedAt <= TimeSpan.FromSeconds(3), $"upgrade took {wire.Now - openedAt}");
        Assert.Contains(wire.Events[a], e => e is IceSelectedPairChanged { Reason: IceSelectionReason.Upgraded, Previous.IsRelayed: true });
        Assert.Contains(wire.Events[b], e => e is IceSelectedPairChanged { Reason: IceSelectionReason.Upgraded });
        Assert.Equal(IceAgentState.Connected, a.State);
    }

    [Fact]
    public void PathUpgrade_Off_TheRelayedPairStays()
    {
        var (wire, a, b, _) = RelayedSetup(new IceAgentOptions { UpgradeInterval = TimeSpan.Zero });
        var directOpen = false;
        wire.Drop = (from, to) => !directOpen && (from.Equals(HostA) || to.Equals(HostA));
        wire.Run(TimeSpan.FromSeconds(20), () => BothConnected(a, b));
        wire.Run(wire.Now + TimeSpan.FromSeconds(60));
        directOpen = true;
        wire.Run(wire.Now + TimeSpan.FromSeconds(30));
        Assert.True(a.SelectedPair!.IsRelayed);
    }

    [Fact]
    public void Nomination_WaitsForAHigherPriorityPairStillInProgress_UpToTheTypeWait()
    {
        // a has a host and a relayed base; the relay answers at once, the host path only after 1 s: the relayed pair
        // must not be nominated while the better host pair is still being checked (within NominateRelayedAfter).
        var (wire, a, b, _) = RelayedSetup(new IceAgentOptions());
        var start = wire.Now;
        wire.Drop = (from, to) => wire.Now < start + TimeSpan.FromSeconds(1) && (from.Equals(HostA) || to.Equals(HostA));
        wire.Run(TimeSpan.FromSeconds(20), () => BothConnected(a, b));
        Assert.False(a.SelectedPair!.IsRelayed);
        Assert.DoesNotContain(wire.Events[a], e => e is IceSelectedPairChanged { Pair.IsRelayed: true });
    }

    private static (IceWire, IceAgent, IceAgent, IPEndPoint Relay) RelayedSetup(IceAgentOptions options)
    {
        var wire = new IceWire();
        var a = Agent(IceRole.Controlling, 1, options);
        var b = Agent(IceRole.Controlled, 2, options);
        var relay = Ep("198.51.100.9:4000");
        wire.Bind(a, 0, HostA);
        wire.Bind(a, 1, relay); // a TURN allocation: what a sends on socket 1 leaves from the relay
        wire.Bind(b, 0, HostB);
        a.AddLocalCandidate(IceCandidate.Host(HostA), 0);
        a.AddLocalCandidate(IceCandidate.Relayed(relay, Ep("203.0.113.1:6000"), IPAddress.Parse("198.51.100.9")), 1);
        b.AddLocalCandidate(IceCandidate.Host(HostB), 0);
        Exchange(a, b);
        return (wire, a, b, relay);
    }

    private sealed class CountingBudget(int left) : IIceCheckBudget
    {
        public int Left { get; set; } = left;

        public bool TryTake(TimeSpan now)
        {
            if (Left == 0)
            {
                return false;
            }

            Left--;
            return true;
        }

        public TimeSpan NextAvailable(TimeSpan now) => Left > 0 ? now : now + TimeSpan.FromMilliseconds(100);
    }
}
