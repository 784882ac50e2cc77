using System.Text;
using System.Net;
using NatKit.Stun;
using NatKit.Traversal.Identity;
using NatKit.Traversal.Rendezvous;

namespace NatKit.Traversal.Tests.Rendezvous;

public class RendezvousHandlerTests
{
    private static readonly TimeSpan Window = new RendezvousServerOptions().TimestampWindow;

    [Fact]
    public void Register_WithoutNonce_Gets401WithANonce_ThenWithItIsRecordedWithItsSource()
    {
        var h = new HandlerHarness();
        var a = h.NewNode("198.51.100.7", 41000);
        var first = h.Send(a.RegisterBytes(), a.EndPoint);
        Assert.Equal(StunErrorCode.Unauthenticated, Node.ErrorCode(first));
        Assert.Equal(0, h.Handler.Registrations);
        Assert.Equal(0, h.Handler.Metrics.SignatureChecks);

        a.Nonce = first!.Value(StunAttributeType.Nonce)!;
        var ok = h.Send(a.RegisterBytes(lifetime: 5), a.EndPoint)!;
        Assert.Equal(StunClass.SuccessResponse, ok.Class);
        Assert.Equal(a.EndPoint, ok.XorAddress(StunAttributeType.XorMappedAddress));
        Assert.Equal(60u, ok.UInt32(RendezvousAttributes.Lifetime)); // raised to MinLifetime
        Assert.Equal(1, h.Handler.Registrations);
    }

    [Fact]
    public void Nonce_IsBoundToTheAddressItWasIssuedTo_AndExpires()
    {
        var h = new HandlerHarness();
        var a = h.NewNode("198.51.100.7");
        a.FetchNonce();
        var b = h.NewNode("198.51.100.8");
        b.Nonce = a.Nonce; // stolen: b never received it
        Assert.Equal(StunErrorCode.StaleNonce, Node.ErrorCode(b.Register()));

        h.Advance(new RendezvousServerOptions().NonceLifetime + TimeSpan.FromSeconds(1));
        Assert.Equal(StunErrorCode.StaleNonce, Node.ErrorCode(a.Register()));
    }

    [Fact]
    public void Register_ABadSignature_IsRefused403_AndNothingIsStored()
    {
        var h = new HandlerHarness();
        var a = h.NewNode("198.51.100.7");
        a.FetchNonce();
        var bytes = a.RegisterBytes();
        bytes[^5] ^= 0x40; // inside SIGNATURE, the last attribute
        Assert.Equal(StunErrorCode.Forbidden, Node.ErrorCode(h.Send(bytes, a.EndPoint)));
        Assert.Equal(0, h.Handler.Registrations);
        Assert.Equal(1, h.Handler.Metrics.SignatureChecks);
    }

    [Fact]
    public void Register_CandidatesChangedAfterSigning_IsRefused403()
    {
        var h = new HandlerHarness();
        var a = h.NewNode("198.51.100.7");
        a.FetchNonce();
        var bytes = a.RegisterBytes(candidates: "candidate:1 1 udp 1 10.0.0.2 40000 typ host");
        var at = bytes.AsSpan().IndexOf("10.0.0.2"u8);
        bytes[at + 7] = (byte)'9'; // the attacker's address instead
        Assert.Equal(StunErrorCode.Forbidden, Node.ErrorCode(h.Send(bytes, a.EndPoint)));
    }

    [Fact]
    public void Register_AKeyThatDoesNotHashToTheNodeId_IsRefused400_WithoutASignatureCheck()
    {
        var h = new HandlerHarness();
        var a = h.NewNode("198.51.100.7");
        a.FetchNonce();
        var bytes = a.RegisterBytes();
        var at = bytes.AsSpan().IndexOf(a.Identity.PublicKey);
        bytes[at + 40] ^= 1;
        Assert.Equal(StunErrorCode.BadRequest, Node.ErrorCode(h.Send(bytes, a.EndPoint)));
        Assert.Equal(0, h.Handler.Metrics.SignatureChecks);
    }

    [Fact]
    public void Register_Replayed_IsRefused409_AndAnOlderTimestampToo_ButARetransmissionGetsTheSameAnswer()
    {
        var h = new HandlerHarness();
        var a = h.NewNode("198.51.100.7");
        a.FetchNonce();
        var bytes = a.RegisterBytes();
        var first = h.Send(bytes, a.EndPoint)!;
        Assert.Equal(StunClass.SuccessResponse, first.Class);

        // The same transaction from the same source: its response was lost. Same answer, nothing done again.
        h.Time.Advance(TimeSpan.FromSeconds(1));
        var again = h.Send(bytes, a.EndPoint)!;
        Assert.Equal(StunClass.SuccessResponse, again.Class);
        Assert.Equal(first.UInt32(RendezvousAttributes.Lifetime), again.UInt32(RendezvousAttributes.Lifetime));
        Assert.Equal(1, h.Handler.Metrics.Registrations);

        // The same signed fields in another transaction: a replay.
        var replay = (byte[])bytes.Clone();
        replay[8] ^= 0xFF;
        Assert.Equal(RendezvousErrors.Replayed, Node.ErrorCode(h.Send(replay, a.EndPoint)));
        Assert.Equal(RendezvousErrors.Replayed, Node.ErrorCode(a.Register(h.UnixMs - 2000)));
        Assert.Equal(1, h.Handler.Metrics.SignatureChecks); // neither costs a signature check
        Assert.Equal(StunClass.SuccessResponse, a.Register(h.UnixMs + 1)!.Class);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(1)]
    public void Register_WithATimestampOutsideTheWindow_IsRefused406(int sign)
    {
        var h = new HandlerHarness();
        var a = h.NewNode("198.51.100.7");
        var stale = h.UnixMs + (sign * ((long)Window.TotalMilliseconds + 1));
        Assert.Equal(RendezvousErrors.StaleTimestamp, Node.ErrorCode(a.Register(stale)));
        Assert.Equal(0, h.Handler.Metrics.SignatureChecks);
        var edge = h.UnixMs + (sign * (long)Window.TotalMilliseconds);
        Assert.Equal(StunClass.SuccessResponse, a.Register(edge)!.Class);
    }

    [Fact]
    public void Lookup_ReturnsTheSignedRecordAndTheReflexiveAddress_WhichTheAskerCanVerify()
    {
        var h = new HandlerHarness();
        var a = h.NewNode("198.51.100.7", 41000);
        a.Register(candidates: ["candidate:1 1 udp 2130706431 10.0.0.2 40000 typ host", "candidate:2 1 udp 1694498815 198.51.100.7 41000 typ srflx"]);
        var b = h.NewNode("203.0.113.9");
        b.FetchNonce();
        var found = b.Lookup(a.Id)!;
        Assert.Equal(StunClass.SuccessResponse, found.Class);
        Assert.Equal(a.EndPoint, found.XorAddress(RendezvousAttributes.PeerAddress));
        var peer = RendezvousPeer.TryRead(found.ToArray(), a.Id, out var p) ? p : null;
        Assert.NotNull(peer);
        Assert.Equal(a.EndPoint, peer.ReflexiveEndPoint);
        Assert.Equal(2, peer.Candidates.Count);
        Assert.EndsWith("typ srflx", peer.Candidates[1], StringComparison.Ordinal);

        // The record is the node's own: the asker refuses it for another id.
        Assert.False(RendezvousPeer.TryRead(found.ToArray(), b.Id, out _));
        Assert.Equal(RendezvousErrors.UnknownNode, Node.ErrorCode(b.Lookup(b.Id)));
    }

    [Fact]
    public void Registration_ExpiresAfterItsLifetime_AndTheTableShrinks()
    {
        var h = new HandlerHarness();
        var a = h.NewNode("198.51.100.7");
        a.Register(lifetime: 60);
        var b = h.NewNode("203.0.113.9");
        b.Register(lifetime: 600);
        h.Advance(TimeSpan.FromSeconds(59));
        Assert.Equal(StunClass.SuccessResponse, b.Lookup(a.Id)!.Class);
        h.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal(RendezvousErrors.UnknownNode, Node.ErrorCode(b.Lookup(a.Id)));
        Assert.Equal(1, h.Handler.Registrations);
        Assert.Equal(1, h.Handler.RegisteredAddresses);
    }

    [Fact]
    public void Deregister_RemovesTheNode_AndAReplayOfItsLastRegistrationStaysRefused()
    {
        var h = new HandlerHarness();
        var a = h.NewNode("198.51.100.7");
        a.FetchNonce();
        var registration = a.RegisterBytes();
        h.Send(registration, a.EndPoint);
        Assert.Equal(0u, a.Register(h.UnixMs + 1, lifetime: 0)!.UInt32(RendezvousAttributes.Lifetime));
        var b = h.NewNode("203.0.113.9");
        b.Register();
        Assert.Equal(RendezvousErrors.UnknownNode, Node.ErrorCode(b.Lookup(a.Id)));
        Assert.Equal(RendezvousErrors.Replayed, Node.ErrorCode(h.Send(registration, a.EndPoint)));

        // Once the window has passed the tombstone goes; the old registration is stale by then.
        h.Advance(Window + TimeSpan.FromSeconds(2));
        Assert.Equal(1, h.Handler.Registrations);
        a.FetchNonce();
        Assert.Equal(RendezvousErrors.StaleTimestamp, Node.ErrorCode(h.Send(registration, a.EndPoint)));
    }

    [Fact]
    public void RegistrationsPerAddress_AreCapped_486_ButRefreshesOfRegisteredNodesGoOn()
    {
        var h = new HandlerHarness(new RendezvousServerOptions { MaxRegistrationsPerAddress = 3 });
        var nodes = Enumerable.Range(0, 4).Select(i => h.NewNode("198.51.100.7", 40000 + i)).ToList();
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(StunClass.SuccessResponse, nodes[i].Register()!.Class);
        }

        Assert.Equal(RendezvousErrors.QuotaReached, Node.ErrorCode(nodes[3].Register()));
        Assert.Equal(StunClass.SuccessResponse, nodes[0].Register(h.UnixMs + 5)!.Class);
        Assert.Equal(StunClass.SuccessResponse, h.NewNode("198.51.100.8").Register()!.Class);
    }

    [Fact]
    public void Registrations_AreCappedInTotal_508()
    {
        var h = new HandlerHarness(new RendezvousServerOptions { MaxRegistrations = 2 });
        Assert.Equal(StunClass.SuccessResponse, h.NewNode("198.51.100.1").Register()!.Class);
        Assert.Equal(StunClass.SuccessResponse, h.NewNode("198.51.100.2").Register()!.Class);
        Assert.Equal(RendezvousErrors.InsufficientCapacity, Node.ErrorCode(h.NewNode("198.51.100.3").Register()));
        Assert.Equal(2, h.Handler.Registrations);
    }

    [Fact]
    public void Draining_RefusesANewConnect_508_ButRegistrationsAndLookupsGoOn()
    {
        var h = new HandlerHarness();
        var a = h.NewNode("198.51.100.1");
        var b = h.NewNode("198.51.100.2");
        a.Register();
        b.Register();
        Assert.Equal(StunClass.SuccessResponse, a.Connect(b.Id)!.Class);
        Assert.Equal(1, h.Handler.ConnectionAttempts);

        h.Handler.Draining = true;
        Assert.Equal(RendezvousErrors.InsufficientCapacity, Node.ErrorCode(b.Connect(a.Id)));
        Assert.Equal(1, h.Handler.ConnectionAttempts);
        Assert.Equal(StunClass.SuccessResponse, a.Register(h.UnixMs + 5)!.Class);
        Assert.Equal(StunClass.SuccessResponse, h.NewNode("198.51.100.3").Register()!.Class);
        Assert.Equal(StunClass.SuccessResponse, a.Lookup(b.Id)!.Class);
    }

    [Fact]
    public void ANodeThatMoves_IsCountedAtItsNewAddress()
    {
        var h = new HandlerHarness(new RendezvousServerOptions { MaxRegistrationsPerAddress = 1 });
        var a = h.NewNode("198.51.100.7");
        a.Register();
        a.EndPoint = new IPEndPoint(IPAddress.Parse("198.51.100.99"), 50000);
        a.FetchNonce();
        Assert.Equal(StunClass.SuccessResponse, a.Register(h.UnixMs + 1)!.Class);
        Assert.Equal(1, h.Handler.RegisteredAddresses);
        Assert.Equal(StunClass.SuccessResponse, h.NewNode("198.51.100.7").Register()!.Class);
    }

    [Fact]
    public void Binding_IsAnsweredOnTheSamePort_BySTUNsHandler()
    {
        var h = new HandlerHarness();
        var request = new StunMessage(StunMethods.Binding, StunClass.Request, StunTransactionId.NewRandom(), []);
        var source = new IPEndPoint(IPAddress.Parse("198.51.100.7"), 41000);
        var reply = h.Send(request.ToArray(), source)!;
        Assert.Equal(StunMethods.Binding, reply.Method);
        Assert.Equal(source, reply.XorAddress(StunAttributeType.XorMappedAddress));
    }

    [Fact]
    public void ASourceOverItsRate_GetsSilence()
    {
        var h = new HandlerHarness(new RendezvousServerOptions { RequestsPerSecondPerAddress = 5 });
        var a = h.NewNode("198.51.100.7");
        var answered = 0;
        for (var i = 0; i < 20; i++)
        {
            var buffer = new byte[128];
            var n = RendezvousRequests.Lookup(buffer, StunTransactionId.NewRandom(), a.Id, default);
            answered += h.Send(buffer.AsSpan(0, n), a.EndPoint) is null ? 0 : 1;
        }

        Assert.Equal(5, answered);
        Assert.Equal(15, h.Handler.Metrics.RateLimited);
    }

    [Fact]
    public void UnknownComprehensionRequiredAttribute_Gets420()
    {
        var h = new HandlerHarness();
        var a = h.NewNode("198.51.100.7");
        var m = new StunMessage(RendezvousMethods.Lookup, StunClass.Request, StunTransactionId.NewRandom(),
            [new StunRawAttribute(0x7001, [1, 2, 3, 4])]);
        Assert.Equal(StunErrorCode.UnknownAttribute, Node.ErrorCode(h.Send(m.ToArray(), a.EndPoint)));
    }

    [Fact]
    public void AnAnswerRetransmittedAfterTheStart_GetsTheSameSuccess_NotUnknownNode()
    {
        // Seen under 2% loss: B's Answer response was lost, the Start got through and was acknowledged, and B's
        // retransmitted Answer met a service that had forgotten the connection: 404, and B gave up.
        var h = new HandlerHarness();
        var a = h.NewNode("198.51.100.7", 41000);
        var b = h.NewNode("203.0.113.9", 42000);
        a.Register();
        b.Register();
        h.TakeOutputs();
        var cid = a.Connect(b.Id, "offer")!.UInt64(RendezvousAttributes.ConnectionId);
        var (offer, _) = Assert.Single(h.TakeOutputs().Sends());
        b.Acknowledge(offer);

        var answer = new byte[1280];
        var n = RendezvousRequests.Answer(answer, StunTransactionId.NewRandom(), b.Identity, a.Id, cid,
            Encoding.UTF8.GetBytes("answer"), h.UnixMs, b.Nonce);
        Assert.Equal(StunClass.SuccessResponse, h.Send(answer.AsSpan(0, n), b.EndPoint)!.Class);
        var (relayed, _) = Assert.Single(h.TakeOutputs().Sends());
        a.Acknowledge(relayed);
        foreach (var (start, to) in h.TakeOutputs().Sends())
        {
            (to.Equals(a.EndPoint) ? a : b).Acknowledge(start);
        }

        Assert.Equal(0, h.Handler.PendingConnections);
        Assert.Equal(StunClass.SuccessResponse, h.Send(answer.AsSpan(0, n), b.EndPoint)!.Class);
        Assert.Empty(h.TakeOutputs().Sends()); // nothing relayed twice

        // Another transaction for the finished connection is still unknown.
        Assert.Equal(RendezvousErrors.UnknownNode, Node.ErrorCode(b.Answer(a.Id, cid)));
    }

    [Fact]
    public void Connect_RelaysTheOfferAndTheAnswer_AndTellsBothToStartAtTheSameMoment()
    {
        var h = new HandlerHarness();
        var a = h.NewNode("198.51.100.7", 41000);
        var b = h.NewNode("203.0.113.9", 42000);
        a.Register();
        b.Register();
        h.TakeOutputs();

        // A asks; the service answers with a connection id and sends B the offer.
        var connect = a.Connect(b.Id, "a's offer")!;
        Assert.Equal(StunClass.SuccessResponse, connect.Class);
        var cid = connect.UInt64(RendezvousAttributes.ConnectionId);
        var (offer, to) = Assert.Single(h.TakeOutputs().Sends());
        Assert.Equal(b.EndPoint, to);
        Assert.Equal(RendezvousMethods.Offer, offer.Method);
        Assert.Equal(cid, offer.UInt64(RendezvousAttributes.ConnectionId));
        var received = RendezvousOffer.TryRead(offer.ToArray(), b.Id, h.UnixMs, Window, out var o) ? o : null;
        Assert.NotNull(received);
        Assert.Equal(a.Id, received.From);
        Assert.Equal("a's offer", received.Session);
        Assert.Equal(a.EndPoint, received.FromEndPoint);

        // B's network is 80 ms round trip away; A's 20 ms.
        h.Advance(TimeSpan.FromMilliseconds(80));
        b.Acknowledge(offer);
        Assert.Equal(StunClass.SuccessResponse, b.Answer(a.Id, cid, "b's answer")!.Class);
        var (answer, toA) = Assert.Single(h.TakeOutputs().Sends());
        Assert.Equal(a.EndPoint, toA);
        Assert.Equal(RendezvousMethods.Answer, answer.Method);
        var answered = RendezvousAnswer.TryRead(answer.ToArray(), a.Id, b.Id, h.UnixMs, Window, out var ans)
            ? ans : null;
        Assert.NotNull(answered);
        Assert.Equal("b's answer", answered.Session);
        Assert.Equal(b.EndPoint, answered.FromEndPoint);

        h.Advance(TimeSpan.FromMilliseconds(20));
        a.Acknowledge(answer);
        var starts = h.TakeOutputs().Sends();
        Assert.Equal(2, starts.Count);
        Assert.All(starts, s => Assert.Equal(RendezvousMethods.Start, s.Message.Method));
        var startA = starts.Single(s => s.To.Equals(a.EndPoint)).Message;
        var startB = starts.Single(s => s.To.Equals(b.EndPoint)).Message;

        // Both Starts leave now; each lands after half its side's round trip and waits its delay: the same moment.
        var delayA = TimeSpan.FromMicroseconds(startA.UInt32(RendezvousAttributes.StartDelay));
        var delayB = TimeSpan.FromMicroseconds(startB.UInt32(RendezvousAttributes.StartDelay));
        Assert.Equal(TimeSpan.FromMilliseconds(10) + delayA, TimeSpan.FromMilliseconds(40) + delayB);
        Assert.Equal(TimeSpan.FromMilliseconds(40) + new RendezvousServerOptions().StartMargin,
            TimeSpan.FromMilliseconds(40) + delayB);
        Assert.Equal(1, h.Handler.Metrics.Started);

        a.Acknowledge(startA);
        b.Acknowledge(startB);
        Assert.Equal(0, h.Handler.PendingConnections);
        Assert.Equal(0, h.Handler.OutstandingRequests);
    }

    [Fact]
    public void Connect_FromANodeNotRegistered_OrFromAnotherAddress_IsRefused403()
    {
        var h = new HandlerHarness();
        var a = h.NewNode("198.51.100.7", 41000);
        var b = h.NewNode("203.0.113.9");
        b.Register();
        a.FetchNonce();
        Assert.Equal(StunErrorCode.Forbidden, Node.ErrorCode(a.Connect(b.Id)));
        a.Register();
        a.EndPoint = new IPEndPoint(a.EndPoint.Address, 41001); // a spoofer beside it, or a stale mapping
        Assert.Equal(StunErrorCode.Forbidden, Node.ErrorCode(a.Connect(b.Id)));
        Assert.Empty(h.Outputs.Sends());
    }

    [Fact]
    public void Connect_ToAnUnknownNode_404_ABadSignature_403_AReplay_409_ARetransmission_TheSameConnection()
    {
        var h = new HandlerHarness();
        var a = h.NewNode("198.51.100.7");
        var b = h.NewNode("203.0.113.9");
        a.Register();
        b.Register();
        using var stranger = NodeIdentity.Create();
        Assert.Equal(RendezvousErrors.UnknownNode, Node.ErrorCode(a.Connect(stranger.Id)));

        var bytes = a.ConnectBytes(b.Id);
        var tampered = (byte[])bytes.Clone();
        tampered[tampered.AsSpan().IndexOf("offer"u8)] = (byte)'O';
        Assert.Equal(StunErrorCode.Forbidden, Node.ErrorCode(h.Send(tampered, a.EndPoint)));
        var first = h.Send(bytes, a.EndPoint)!;
        Assert.Equal(StunClass.SuccessResponse, first.Class);
        // A retransmission (the response was lost) gets the same connection, and no second offer goes out.
        var again = h.Send(bytes, a.EndPoint)!;
        Assert.Equal(first.UInt64(RendezvousAttributes.ConnectionId), again.UInt64(RendezvousAttributes.ConnectionId));
        var replay = (byte[])bytes.Clone();
        replay[8] ^= 0xFF;
        Assert.Equal(RendezvousErrors.Replayed, Node.ErrorCode(h.Send(replay, a.EndPoint)));
        Assert.Single(h.Outputs.Sends()); // one offer went to B
    }

    [Fact]
    public void Connect_AttemptsPerNode_AreCapped486()
    {
        var h = new HandlerHarness(new RendezvousServerOptions { MaxPendingConnectionsPerNode = 2 });
        var a = h.NewNode("198.51.100.7");
        var b = h.NewNode("203.0.113.9");
        a.Register();
        b.Register();
        Assert.Equal(StunClass.SuccessResponse, a.Connect(b.Id, timestamp: h.UnixMs)!.Class);
        Assert.Equal(StunClass.SuccessResponse, a.Connect(b.Id, timestamp: h.UnixMs + 1)!.Class);
        Assert.Equal(RendezvousErrors.QuotaReached, Node.ErrorCode(a.Connect(b.Id, timestamp: h.UnixMs + 2)));
    }

    [Fact]
    public void AnOfferTheTargetNeverAnswers_IsRetransmitted_ThenTheInitiatorHears480()
    {
        var options = new RendezvousServerOptions();
        var h = new HandlerHarness(options);
        var a = h.NewNode("198.51.100.7");
        var b = h.NewNode("203.0.113.9");
        a.Register();
        b.Register();
        a.Connect(b.Id);
        Assert.Single(h.TakeOutputs().Sends());
        h.Advance(options.InitialRto);
        var again = Assert.Single(h.TakeOutputs().Sends());
        Assert.Equal(RendezvousMethods.Offer, again.Message.Method);
        Assert.Equal(b.EndPoint, again.To);

        // Up to the end of the Offer's transaction (RFC 8489 schedule, Rm = 4): the failure goes out once.
        h.Advance(NatKit.Stun.Client.StunRetransmission.TransactionTimeout(options.RequestCount, options.InitialRto, 4) -
                  options.InitialRto);
        var sends = h.TakeOutputs().Sends();
        Assert.Equal(options.RequestCount - 2, sends.Count(s => s.Message.Method == RendezvousMethods.Offer));
        var failure = sends.Single(s => s.Message.Method == RendezvousMethods.Answer);
        Assert.Equal(a.EndPoint, failure.To);
        Assert.Equal(RendezvousErrors.NoAnswer, Node.ErrorCode(failure.Message));
        a.Acknowledge(failure.Message);
        Assert.Equal(0, h.Handler.PendingConnections);
    }

    [Fact]
    public void AnAnswerForAnotherNodesConnection_IsRefused()
    {
        var h = new HandlerHarness();
        var a = h.NewNode("198.51.100.7");
        var b = h.NewNode("203.0.113.9");
        var c = h.NewNode("203.0.113.10");
        a.Register();
        b.Register();
        c.Register();
        var cid = a.Connect(b.Id)!.UInt64(RendezvousAttributes.ConnectionId);
        h.TakeOutputs();
        Assert.Equal(RendezvousErrors.UnknownNode, Node.ErrorCode(c.Answer(a.Id, cid)));
        Assert.Equal(RendezvousErrors.UnknownNode, Node.ErrorCode(b.Answer(a.Id, cid + 1)));
        Assert.Empty(h.Outputs.Sends());
    }

    [Fact]
    public void WithASharedRegistry_ALookupOfAnUnknownNodeAsksTheEdge_ThenUsesItsAnswer()
    {
        var h = new HandlerHarness(new RendezvousServerOptions { SharedRegistry = true });
        var a = h.NewNode("198.51.100.7");
        a.Register();
        var stored = Assert.Single(h.TakeOutputs(), o => o.Kind == RendezvousOutputKind.Store);
        Assert.Equal(a.Id, stored.Node);
        Assert.True(RendezvousRecord.TryDecode(stored.Data.Span, out var record));
        Assert.Equal(h.Handler.Instance, record.Instance);

        var other = new HandlerHarness(new RendezvousServerOptions { SharedRegistry = true }, h.Time);
        var b = other.NewNode("203.0.113.9");
        b.Register();
        Assert.Null(b.Lookup(a.Id));
        Assert.Equal(a.Id, other.LastVerdict.Lookup);
        var found = b.Lookup(a.Id, RemoteLookup.Found(record))!;
        Assert.Equal(a.EndPoint, found.XorAddress(RendezvousAttributes.PeerAddress));
        Assert.Equal(RendezvousErrors.UnknownNode, Node.ErrorCode(b.Lookup(a.Id, RemoteLookup.NotFound)));
    }
}
