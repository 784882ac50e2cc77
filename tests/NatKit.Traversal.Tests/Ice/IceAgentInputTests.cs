using FsCheck;
using FsCheck.Fluent;
using NatKit.Stun;
using NatKit.Traversal.Ice;
using static NatKit.Traversal.Tests.Ice.IceTestKit;

namespace NatKit.Traversal.Tests.Ice;

/// <summary>What the agent does with checks it cannot trust (RFC 8445 section 7.3, RFC 8489 section 9.1.3), and
/// properties: random or mutated STUN never throws, never moves the selected pair, never breaks a check.</summary>
public class IceAgentInputTests
{
    private static (IceWire Wire, IceAgent A, IceAgent B) Connected()
    {
        var (wire, a, b) = HostPair();
        wire.Run(TimeSpan.FromSeconds(10), () => BothConnected(a, b));
        Assert.True(BothConnected(a, b));
        return (wire, a, b);
    }

    private static byte[] LastSentTo(IceWire wire, IceAgent from) => wire.Sent.Last(s => s.From == from).Bytes;

    [Fact]
    public void Rfc8489_9_1_3_MissingUsernameOrIntegrity_Is400_WithoutIntegrity()
    {
        var (wire, a, _) = Connected();
        var user = $"{a.LocalCredentials.Ufrag}:x1234";
        var noIntegrity = Request(user, password: null);
        Assert.Equal(IceInputResult.Handled, wire.Inject(a, 0, noIntegrity, HostB));
        var reply = LastSentTo(wire, a);
        Assert.Equal(StunErrorCode.BadRequest, ErrorCode(reply));
        Assert.False(Has(reply, StunAttributeType.MessageIntegrity));
        Assert.True(Has(reply, StunAttributeType.Fingerprint));
    }

    [Fact]
    public void UnauthenticatedErrors_AreLimitedTo100ASecond_SoAFloodOfForgedChecksIsNoReflector()
    {
        var (wire, a, _) = Connected();
        var errorsBefore = a.Stats.ErrorsSent;
        var sentBefore = wire.Sent.Count(s => s.From == a);
        for (var i = 0; i < 1000; i++)
        {
            Assert.Equal(IceInputResult.Handled, wire.Inject(a, 0, Request("nobody:x1234", password: null), HostB));
        }

        var errors = a.Stats.ErrorsSent - errorsBefore;
        Assert.InRange(errors, 1, 100);
        Assert.InRange(wire.Sent.Count(s => s.From == a) - sentBefore, 1, 100);
    }

    [Fact]
    public void Rfc8489_9_1_3_AnotherUfragOrAWrongPassword_Is401_WithoutIntegrity()
    {
        var (wire, a, b) = Connected();
        var before = a.Stats.RequestsReceived;
        wire.Inject(a, 0, Request($"nope:{b.LocalCredentials.Ufrag}", a.LocalCredentials.Password, role: StunAttributeType.IceControlled), HostB);
        Assert.Equal(StunErrorCode.Unauthenticated, ErrorCode(LastSentTo(wire, a)));
        wire.Inject(a, 0, Request($"{a.LocalCredentials.Ufrag}:{b.LocalCredentials.Ufrag}", "wrongwrongwrongwrongwrong", role: StunAttributeType.IceControlled), HostB);
        var reply = LastSentTo(wire, a);
        Assert.Equal(StunErrorCode.Unauthenticated, ErrorCode(reply));
        Assert.False(Has(reply, StunAttributeType.MessageIntegrity));
        Assert.Equal(before, a.Stats.RequestsReceived);
    }

    [Fact]
    public void Rfc8445_7_3_AGoodCheck_IsAnsweredWithTheSourceAsXorMappedAddress()
    {
        var (wire, a, b) = Connected();
        var source = Ep("10.0.0.2:2999");
        wire.Inject(a, 0, Request($"{a.LocalCredentials.Ufrag}:{b.LocalCredentials.Ufrag}", a.LocalCredentials.Password,
            role: StunAttributeType.IceControlled), source);
        var reply = LastSentTo(wire, a);
        Assert.True(StunMessageReader.TryParse(reply, out var r));
        Assert.Equal(StunClass.SuccessResponse, r.Class);
        Assert.True(r.TryGetXorAddress(StunAttributeType.XorMappedAddress, out var mapped));
        Assert.Equal(source, mapped.ToEndPoint());
        Assert.True(r.VerifyMessageIntegrity(StunCredentials.ShortTermKey(a.LocalCredentials.Password)));
        // A source nobody signaled became a peer-reflexive remote candidate.
        Assert.Contains(a.RemoteCandidates, c => c.EndPoint.Equals(source) && c.Type == IceCandidateType.PeerReflexive);
    }

    [Fact]
    public void Rfc8445_7_3_AnUnknownComprehensionRequiredAttribute_Is420_ListingIt()
    {
        var (wire, a, b) = Connected();
        wire.Inject(a, 0, Request($"{a.LocalCredentials.Ufrag}:{b.LocalCredentials.Ufrag}", a.LocalCredentials.Password,
            role: StunAttributeType.IceControlled, extraAttribute: 0x7F01), HostB);
        var reply = LastSentTo(wire, a);
        Assert.Equal(StunErrorCode.UnknownAttribute, ErrorCode(reply));
        Assert.True(StunMessageReader.TryParse(reply, out var r) && r.TryGet(StunAttributeType.UnknownAttributes, out var list)
                    && list.Length == 2 && list[0] == 0x7F && list[1] == 0x01);
    }

    [Fact]
    public void Rfc8445_7_3_NoPriority_Is400()
    {
        var (wire, a, b) = Connected();
        wire.Inject(a, 0, Request($"{a.LocalCredentials.Ufrag}:{b.LocalCredentials.Ufrag}", a.LocalCredentials.Password,
            priority: null, role: StunAttributeType.IceControlled), HostB);
        Assert.Equal(StunErrorCode.BadRequest, ErrorCode(LastSentTo(wire, a)));
    }

    [Fact]
    public void ABadFingerprint_IsIgnored_WithNoAnswer()
    {
        var (wire, a, b) = Connected();
        var request = Request($"{a.LocalCredentials.Ufrag}:{b.LocalCredentials.Ufrag}", a.LocalCredentials.Password,
            role: StunAttributeType.IceControlled);
        request[^1] ^= 1;
        var sent = wire.Sent.Count;
        Assert.Equal(IceInputResult.Dropped, wire.Inject(a, 0, request, HostB));
        Assert.Equal(sent, wire.Sent.Count);
    }

    [Fact]
    public void NonStun_AndOtherPeoplesStun_ArePassedOn()
    {
        var (wire, a, _) = Connected();
        Assert.Equal(IceInputResult.NotStun, wire.Inject(a, 0, [0x01, 0x02, 0x03], HostB));
        // A Binding response to someone else's transaction (the STUN client's, on the same socket).
        var buffer = new byte[64];
        var w = new StunMessageWriter(buffer, StunMethods.Binding, StunClass.SuccessResponse, StunTransactionId.NewRandom());
        w.AddXorAddress(StunAttributeType.XorMappedAddress, StunAddress.FromEndPoint(HostA));
        Assert.Equal(IceInputResult.NotMine, wire.Inject(a, 0, buffer[..w.Length], Ep("203.0.113.100:3478")));
        var allocate = new byte[20];
        _ = new StunMessageWriter(allocate, 0x003, StunClass.Request, StunTransactionId.NewRandom());
        Assert.Equal(IceInputResult.NotMine, wire.Inject(a, 0, allocate, HostB));
    }

    [Fact]
    public void AForgedResponseToAPendingCheck_LeavesTheCheckRunning()
    {
        var (wire, a, b) = HostPair();
        wire.Drop = (from, _) => from.Equals(HostB); // b's answers are lost: a's check stays pending
        a.Poll(wire.Now);
        wire.Drain([a, b]);
        var request = wire.Sent.Last(s => s.From == a).Bytes;
        Assert.True(StunMessageReader.TryParse(request, out var r));
        var id = r.TransactionId;
        var pair = a.CheckList.Single();
        Assert.Equal(IceCandidatePairState.InProgress, pair.State);

        // Right id, wrong key: dropped, the pair still In-Progress.
        var forged = new byte[128];
        var w = new StunMessageWriter(forged, StunMethods.Binding, StunClass.SuccessResponse, id);
        w.AddXorAddress(StunAttributeType.XorMappedAddress, StunAddress.FromEndPoint(Ep("6.6.6.6:6")));
        w.AddMessageIntegrity(StunCredentials.ShortTermKey("forgedforgedforgedforged"));
        w.AddFingerprint();
        Assert.Equal(IceInputResult.Dropped, a.Receive(forged.AsSpan(0, w.Length), HostB, 0, wire.Now));
        // An unauthenticated 401 for it, too.
        var e = new byte[128];
        var ew = new StunMessageWriter(e, StunMethods.Binding, StunClass.ErrorResponse, id);
        ew.AddErrorCode(StunErrorCode.Unauthenticated);
        Assert.Equal(IceInputResult.Dropped, a.Receive(e.AsSpan(0, ew.Length), HostB, 0, wire.Now));
        Assert.Equal(IceCandidatePairState.InProgress, pair.State);

        wire.Drop = (_, _) => false;
        wire.Run(wire.Now + TimeSpan.FromSeconds(10), () => BothConnected(a, b));
        Assert.True(BothConnected(a, b));
        Assert.DoesNotContain(a.LocalCandidates, c => c.EndPoint.Equals(Ep("6.6.6.6:6")));
    }

    [Fact]
    public void AResponseFromAnotherAddress_FailsThePair_Rfc8445_7_2_5_2_1()
    {
        var (wire, a, b) = HostPair();
        wire.Drop = (from, _) => from.Equals(HostB);
        a.Poll(wire.Now);
        wire.Drain([a, b]);
        var request = wire.Sent.Last(s => s.From == a).Bytes;
        Assert.True(StunMessageReader.TryParse(request, out var r));
        var answer = new byte[128];
        var w = new StunMessageWriter(answer, StunMethods.Binding, StunClass.SuccessResponse, r.TransactionId);
        w.AddXorAddress(StunAttributeType.XorMappedAddress, StunAddress.FromEndPoint(HostA));
        w.AddMessageIntegrity(StunCredentials.ShortTermKey(b.LocalCredentials.Password));
        w.AddFingerprint();
        Assert.Equal(IceInputResult.Handled, a.Receive(answer.AsSpan(0, w.Length), Ep("10.0.0.2:2001"), 0, wire.Now));
        Assert.Equal(IceCandidatePairState.Failed, a.CheckList.Single().State);
    }

    private static readonly Gen<byte[]> Garbage = Gen.ArrayOf(ArbMap.Default.GeneratorFor<byte>());

    [Fact]
    public void Property_RandomAndMutatedStun_NeverThrows_NeverMovesTheSelectedPair()
    {
        var (wire, a, b) = Connected();
        var captured = wire.Delivered.Select(d => d.Bytes).ToArray();
        var selectedA = a.SelectedPair;
        var selectedB = b.SelectedPair;
        var gen = from pick in Gen.Choose(0, captured.Length - 1)
                  from flips in Gen.ListOf(Gen.Zip(Gen.Choose(0, 200), ArbMap.Default.GeneratorFor<byte>()))
                  from cut in Gen.Choose(0, 12)
                  from random in Garbage
                  from toA in ArbMap.Default.GeneratorFor<bool>()
                  select (pick, flips, cut, random, toA);
        Prop.ForAll(gen.ToArbitrary(), t =>
        {
            var bytes = (byte[])captured[t.pick].Clone();
            foreach (var (pos, value) in t.flips.Take(3))
            {
                bytes[20 + (pos % Math.Max(1, bytes.Length - 20))] ^= value == 0 ? (byte)1 : value;
            }

            var agent = t.toA ? a : b;
            var from = t.toA ? HostB : HostA;
            agent.Receive(bytes, from, 0, wire.Now);
            agent.Receive(bytes.AsSpan(0, Math.Max(0, bytes.Length - t.cut)), from, 0, wire.Now);
            agent.Receive(t.random, from, 0, wire.Now);
            var stunLooking = t.random.Length >= 20 ? (byte[])t.random.Clone() : new byte[20];
            stunLooking[0] &= 0x3F;
            stunLooking[4] = 0x21; stunLooking[5] = 0x12; stunLooking[6] = 0xA4; stunLooking[7] = 0x42;
            agent.Receive(stunLooking, from, 0, wire.Now);
            while (agent.TryTakeTransmit(out _))
            {
            }

            return ReferenceEquals(selectedA, a.SelectedPair) && ReferenceEquals(selectedB, b.SelectedPair) &&
                   a.State == IceAgentState.Connected && b.State == IceAgentState.Connected;
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(2000));

        // And the connection goes on: consent still holds a minute later.
        wire.Run(wire.Now + TimeSpan.FromMinutes(1));
        Assert.Same(selectedA, a.SelectedPair);
        Assert.Equal(IceAgentState.Connected, a.State);
    }

    [Fact]
    public void Property_GarbageDuringChecks_NeverBreaksACheckInProgress()
    {
        Prop.ForAll(Gen.ListOf(Garbage).ToArbitrary(), junk =>
        {
            var (wire, a, b) = HostPair();
            a.Poll(wire.Now);
            foreach (var j in junk.Take(20))
            {
                var bytes = j.Length >= 20 ? j : [.. j, .. new byte[20]];
                bytes[0] = 0x01; // a success response, as far as the header goes
                bytes[1] = 0x01;
                bytes[2] = 0;
                bytes[3] = (byte)((bytes.Length - 20) & ~3);
                bytes[4] = 0x21; bytes[5] = 0x12; bytes[6] = 0xA4; bytes[7] = 0x42;
                a.Receive(bytes.AsSpan(0, 20 + bytes[3]), HostB, 0, wire.Now);
                b.Receive(j, HostA, 0, wire.Now);
            }

            wire.Run(wire.Now + TimeSpan.FromSeconds(5), () => BothConnected(a, b));
            return BothConnected(a, b) && a.Stats.TimedOut == 0;
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(200));
    }
}
