using System.Net;
using Microsoft.Extensions.Logging.Abstractions;
using NatKit.Stun;
using NatKit.Turn.Policy;
using NatKit.Turn.Protocol;
using NatKit.Turn.Server;

namespace NatKit.Turn.Tests.Server;

/// <summary>
/// The TURN server's protocol core driven directly: bytes and a 5-tuple in, an answer and an action out, on a
/// manual clock. No socket is opened (the client link below throws if anything tries to send through it), so
/// these pin what the handler decides, not what the edge does with it.
/// </summary>
public class TurnRequestHandlerTests
{
    private const string User = "alice";
    private const string Password = "wonderland";

    // No packet leaves these tests: addresses only name peers in the handler's decisions.
    private static readonly IPEndPoint Peer = new(IPAddress.Parse("8.8.8.8"), 4000);
    private static readonly IPEndPoint OtherPeer = new(IPAddress.Parse("8.8.4.4"), 4000);

    private readonly ManualTimeProvider _time = new();

    private TurnRequestHandler NewHandler(Func<TurnServerOptions, TurnServerOptions>? with = null)
    {
        var options = new TurnServerOptions
        {
            Users = new Dictionary<string, string> { [User] = Password, ["bob"] = "builder", ["carol"] = "c" },
            UnauthenticatedRequestsPerSecond = 0,
        };
        options = with?.Invoke(options) ?? options;
        return new TurnRequestHandler(options, _time, new TurnMetrics(() => 0, () => 0), NullLogger.Instance);
    }

    private sealed class Client(int port = 50000, string address = "198.51.100.7")
        : ClientLink(new IPEndPoint(IPAddress.Parse(address), port), new IPEndPoint(IPAddress.Loopback, 3478))
    {
        public string? Nonce { get; set; }

        public string User { get; init; } = TurnRequestHandlerTests.User;

        public string Password { get; init; } = TurnRequestHandlerTests.Password;

        public override bool IsStream => false;

        public override ValueTask SendAsync(ReadOnlyMemory<byte> frame) =>
            throw new InvalidOperationException("the handler never sends: the edge does");
    }

    private delegate void Attributes(ref StunMessageWriter w);

    private static byte[] Build(Client c, ushort method, Attributes? attributes, bool sign = true,
        StunClass cls = StunClass.Request, StunTransactionId? id = null, string? password = null)
    {
        var buffer = new byte[1024];
        var w = new StunMessageWriter(buffer, method, cls, id ?? StunTransactionId.NewRandom());
        attributes?.Invoke(ref w);
        if (sign)
        {
            w.AddString(StunAttributeType.Username, c.User);
            w.AddString(StunAttributeType.Realm, "natkit");
            w.AddString(StunAttributeType.Nonce, c.Nonce ?? "none");
            w.AddMessageIntegrity(StunCredentials.LongTermKey(c.User, "natkit", password ?? c.Password));
        }

        return w.Written.ToArray();
    }

    private static int ErrorOf(TurnAnswer answer, Client? c = null)
    {
        Assert.NotNull(answer.Response);
        Assert.True(StunMessageReader.TryParse(answer.Response, out var r));
        if (c is not null && r.TryGet(StunAttributeType.Nonce, out var nonce))
        {
            c.Nonce = System.Text.Encoding.UTF8.GetString(nonce);
        }

        if (r.Class == StunClass.SuccessResponse)
        {
            return 0;
        }

        Assert.True(r.TryGetErrorCode(out var code, out _));
        return code;
    }

    private static void UdpTransport(ref StunMessageWriter w) =>
        w.AddUInt32(TurnAttributeType.RequestedTransport, (uint)TurnLimits.TransportUdp << 24);

    /// <summary>401 for the nonce, then an authenticated Allocate the edge completes with relay port 50002.</summary>
    private static (Allocation Allocation, byte[] Response) Allocate(TurnRequestHandler h, Client c)
    {
        if (c.Nonce is null)
        {
            Assert.Equal(StunErrorCode.Unauthenticated, ErrorOf(h.Handle(Build(c, TurnMethods.Allocate, UdpTransport, sign: false), c, null), c));
        }

        var answer = h.Handle(Build(c, TurnMethods.Allocate, UdpTransport), c, null);
        Assert.Equal(TurnAction.OpenRelay, answer.Action);
        Assert.Null(answer.Response); // nothing is said before the relay is bound
        var pending = answer.Pending!;
        Assert.Equal(StunAddress.FamilyIPv4, pending.Family);
        Assert.True(h.Ledger.TryTakePort(pending.Family, pending.EvenPort, pending.ReservePair, out var port));
        pending.Allocation.RelayPortV4 = port; // what the edge records once it has bound the socket
        return (pending.Allocation, h.CompleteAllocate(pending, 0, v6Failed: false));
    }

    private static Attributes PeerAttribute(IPEndPoint peer) =>
        (ref StunMessageWriter w) => w.AddXorAddress(TurnAttributeType.XorPeerAddress, StunAddress.FromEndPoint(peer));

    [Fact]
    public void Rfc8656_7_2_Allocate_WithoutCredentials_Is401_WithRealmNonceAndPasswordAlgorithms()
    {
        var h = NewHandler();
        var c = new Client();
        var answer = h.Handle(Build(c, TurnMethods.Allocate, UdpTransport, sign: false), c, null);
        Assert.Equal(TurnAction.Answer, answer.Action);
        Assert.Equal(StunErrorCode.Unauthenticated, ErrorOf(answer, c));
        Assert.True(StunMessageReader.TryParse(answer.Response, out var r));
        Assert.True(r.TryGet(StunAttributeType.Realm, out var realm));
        Assert.Equal("natkit"u8.ToArray(), realm.ToArray());
        Assert.True(r.Contains(StunAttributeType.PasswordAlgorithms));
        Assert.NotNull(c.Nonce);
        Assert.Equal(0, h.Ledger.Count);
    }

    [Fact]
    public void Rfc8489_9_2_4_WrongPassword_Is401_AndAllocatesNothing()
    {
        var h = NewHandler();
        var c = new Client();
        ErrorOf(h.Handle(Build(c, TurnMethods.Allocate, UdpTransport, sign: false), c, null), c);
        var answer = h.Handle(Build(c, TurnMethods.Allocate, UdpTransport, password: "guess"), c, null);
        Assert.Equal(StunErrorCode.Unauthenticated, ErrorOf(answer));
        Assert.Equal(0, h.Ledger.Count);
    }

    [Fact]
    public void Rfc8489_9_2_4_ExpiredNonce_Is438_WithAFreshNonce_ThatThenWorks()
    {
        var h = NewHandler();
        var c = new Client();
        ErrorOf(h.Handle(Build(c, TurnMethods.Allocate, UdpTransport, sign: false), c, null), c);
        var old = c.Nonce;
        _time.Advance(new TurnServerOptions().NonceLifetime + TimeSpan.FromSeconds(1));
        Assert.Equal(StunErrorCode.StaleNonce, ErrorOf(h.Handle(Build(c, TurnMethods.Allocate, UdpTransport), c, null), c));
        Assert.NotEqual(old, c.Nonce);
        Assert.Equal(TurnAction.OpenRelay, h.Handle(Build(c, TurnMethods.Allocate, UdpTransport), c, null).Action);
    }

    [Fact]
    public void NonceIssuedToAnotherAddress_Is438_TheSameAddressOnAnotherPortMayUseIt()
    {
        var h = NewHandler();
        var a = new Client(50000);
        ErrorOf(h.Handle(Build(a, TurnMethods.Allocate, UdpTransport, sign: false), a, null), a);
        var samePlace = new Client(50001) { Nonce = a.Nonce };
        Assert.Equal(TurnAction.OpenRelay, h.Handle(Build(samePlace, TurnMethods.Allocate, UdpTransport), samePlace, null).Action);
        var thief = new Client(50000, "203.0.113.9") { Nonce = a.Nonce };
        Assert.Equal(StunErrorCode.StaleNonce, ErrorOf(h.Handle(Build(thief, TurnMethods.Allocate, UdpTransport), thief, null)));
    }

    [Fact]
    public void Rfc8656_7_2_Allocate_CompletedByTheEdge_AnswersRelayedAndMappedAddress_AndHoldsOneSlot()
    {
        var h = NewHandler();
        var c = new Client();
        var (allocation, response) = Allocate(h, c);
        Assert.True(StunMessageReader.TryParse(response, out var r));
        Assert.Equal(StunClass.SuccessResponse, r.Class);
        Assert.True(r.TryGetXorAddress(TurnAttributeType.XorRelayedAddress, out var relayed));
        Assert.Equal(allocation.RelayPortV4, relayed.Port);
        Assert.True(r.TryGetXorAddress(StunAttributeType.XorMappedAddress, out var mapped));
        Assert.Equal(c.Remote, mapped.ToEndPoint());
        Assert.True(r.TryGetUInt32(TurnAttributeType.Lifetime, out var lifetime));
        Assert.Equal((uint)new TurnServerOptions().DefaultLifetime.TotalSeconds, lifetime);
        Assert.True(r.HasMessageIntegrity);
        Assert.Equal(1, h.Ledger.Count);
    }

    [Fact]
    public void Rfc8656_7_2_AllocateRetransmission_GetsTheSameAnswer_AnotherTransactionIs437()
    {
        var h = NewHandler();
        var c = new Client();
        var (allocation, response) = Allocate(h, c);
        var id = StunMessageReader.TryParse(response, out var first) ? first.TransactionId : default;
        var again = h.Handle(Build(c, TurnMethods.Allocate, UdpTransport, id: id), c, allocation);
        Assert.Same(response, again.Response);
        var other = h.Handle(Build(c, TurnMethods.Allocate, UdpTransport), c, allocation);
        Assert.Equal(StunErrorCode.AllocationMismatch, ErrorOf(other));
    }

    [Fact]
    public void Rfc8656_7_2_EdgeCannotBindARelay_Is508_AndTheSlotComesBack()
    {
        var h = NewHandler(o => o with { MaxAllocationsPerUser = 1 });
        var c = new Client();
        ErrorOf(h.Handle(Build(c, TurnMethods.Allocate, UdpTransport, sign: false), c, null), c);
        var pending = h.Handle(Build(c, TurnMethods.Allocate, UdpTransport), c, null).Pending!;
        Assert.Equal(1, h.Ledger.Count);
        var refused = new TurnAnswer(TurnAction.Answer, h.AbandonAllocate(pending));
        Assert.Equal(StunErrorCode.InsufficientCapacity, ErrorOf(refused));
        Assert.Equal(0, h.Ledger.Count);
        Assert.Equal(TurnAction.OpenRelay, h.Handle(Build(c, TurnMethods.Allocate, UdpTransport), c, null).Action);
    }

    [Fact]
    public void Rfc8656_7_2_QuotaPerUser_Is486_AndTotal_Is508()
    {
        var h = NewHandler(o => o with { MaxAllocationsPerUser = 1, MaxAllocations = 2 });
        Allocate(h, new Client(50000));
        var second = new Client(50001);
        ErrorOf(h.Handle(Build(second, TurnMethods.Allocate, UdpTransport, sign: false), second, null), second);
        Assert.Equal(StunErrorCode.AllocationQuotaReached,
            ErrorOf(h.Handle(Build(second, TurnMethods.Allocate, UdpTransport), second, null)));

        Allocate(h, new Client(50002) { User = "bob", Password = "builder" });
        var third = new Client(50003) { User = "carol", Password = "c" }; // under her own quota, over the total
        ErrorOf(h.Handle(Build(third, TurnMethods.Allocate, UdpTransport, sign: false), third, null), third);
        Assert.Equal(StunErrorCode.InsufficientCapacity,
            ErrorOf(h.Handle(Build(third, TurnMethods.Allocate, UdpTransport), third, null)));
    }

    [Fact]
    public void Draining_RefusesNewAllocations_With508_WhileLiveOnesRefresh()
    {
        var h = NewHandler();
        var (allocation, _) = Allocate(h, new Client(50000));
        Assert.Equal(1, h.Ledger.BeginDrain());
        var late = new Client(50001);
        ErrorOf(h.Handle(Build(late, TurnMethods.Allocate, UdpTransport, sign: false), late, null), late);
        Assert.Equal(StunErrorCode.InsufficientCapacity, ErrorOf(h.Handle(Build(late, TurnMethods.Allocate, UdpTransport), late, null)));

        var live = (Client)allocation.Client;
        var refresh = h.Handle(Build(live, TurnMethods.Refresh, null), live, allocation);
        Assert.Equal(0, ErrorOf(refresh));
        Assert.False(h.Ledger.Drained.IsCompleted);
    }

    [Fact]
    public void Rfc8656_7_3_RefreshWithLifetime0_AsksTheEdgeToClose_AndTheDrainEndsOnlyAfterTheAnswer()
    {
        var h = NewHandler();
        var (allocation, _) = Allocate(h, new Client());
        var c = (Client)allocation.Client;
        h.Ledger.BeginDrain();
        var answer = h.Handle(Build(c, TurnMethods.Refresh, (ref StunMessageWriter w) => w.AddUInt32(TurnAttributeType.Lifetime, 0)), c, allocation);
        Assert.Equal(TurnAction.CloseRelay, answer.Action);
        Assert.Same(allocation, answer.Allocation);
        Assert.Equal(0, ErrorOf(answer));
        Assert.True(allocation.Closed);
        Assert.Equal(0, h.Ledger.Count);
        Assert.False(h.Ledger.Drained.IsCompleted); // the client has not heard yet
        h.AnswerSent();
        Assert.True(h.Ledger.Drained.IsCompleted);
    }

    [Fact]
    public void Rfc8656_7_Lifetime_RefreshExtendsIt_ThenExpiryReleasesIt()
    {
        var h = NewHandler();
        var (allocation, _) = Allocate(h, new Client());
        var c = (Client)allocation.Client;
        _time.Advance(TimeSpan.FromSeconds(500));
        Assert.Null(h.Expire());
        Assert.Equal(0, ErrorOf(h.Handle(Build(c, TurnMethods.Refresh, null), c, allocation)));
        _time.Advance(TimeSpan.FromSeconds(500)); // 1000 s since the Allocate, 500 since the Refresh (600 s each)
        Assert.Null(h.Expire());
        _time.Advance(TimeSpan.FromSeconds(101));
        var due = h.Expire();
        Assert.NotNull(due);
        Assert.Same(allocation, Assert.Single(due));
        Assert.Equal(0, h.Ledger.Count);
    }

    [Fact]
    public void RequestFromAnotherUser_OnTheAllocation_Is441()
    {
        var h = NewHandler();
        var (allocation, _) = Allocate(h, new Client());
        var bob = new Client { User = "bob", Password = "builder" };
        ErrorOf(h.Handle(Build(bob, TurnMethods.Refresh, null, sign: false), bob, allocation), bob);
        Assert.Equal(StunErrorCode.WrongCredentials, ErrorOf(h.Handle(Build(bob, TurnMethods.Refresh, null), bob, allocation)));
    }

    [Fact]
    public void Rfc8656_9_SendIndication_NeedsAPermission_ThenIsPlannedForTheRelay()
    {
        var h = NewHandler();
        var (allocation, _) = Allocate(h, new Client());
        var c = (Client)allocation.Client;
        byte[] payload = [1, 2, 3, 4, 5];
        var send = Build(c, TurnMethods.Send, (ref StunMessageWriter w) =>
        {
            w.AddXorAddress(TurnAttributeType.XorPeerAddress, StunAddress.FromEndPoint(Peer));
            w.Add(TurnAttributeType.Data, payload);
        }, sign: false, cls: StunClass.Indication);

        Assert.Equal(TurnAction.Answer, h.Handle(send, c, allocation).Action); // dropped: no permission
        Assert.Null(h.Handle(send, c, allocation).Response);

        Assert.Equal(0, ErrorOf(h.Handle(Build(c, TurnMethods.CreatePermission, PeerAttribute(Peer)), c, allocation)));
        var planned = h.Handle(send, c, allocation);
        Assert.Equal(TurnAction.SendToPeer, planned.Action);
        Assert.Equal(Peer, planned.Peer);
        Assert.Equal(payload, send.AsSpan(planned.Offset, planned.Length).ToArray());

        _time.Advance(TurnLimits.PermissionLifetime + TimeSpan.FromSeconds(1)); // RFC 8656 section 9: 300 s
        Assert.Equal(TurnAction.Answer, h.Handle(send, c, allocation).Action);
    }

    [Theory]
    [InlineData("127.0.0.1")]
    [InlineData("169.254.169.254")]
    [InlineData("10.1.2.3")]
    [InlineData("::ffff:127.0.0.1")]
    public void DenyList_PermissionToAnInsideAddress_Is403(string address)
    {
        var h = NewHandler();
        var (allocation, _) = Allocate(h, new Client());
        var c = (Client)allocation.Client;
        var peer = new IPEndPoint(IPAddress.Parse(address), 80);
        Assert.Equal(StunErrorCode.Forbidden, ErrorOf(h.Handle(Build(c, TurnMethods.CreatePermission, PeerAttribute(peer)), c, allocation)));
        Assert.Equal(StunErrorCode.Forbidden, ErrorOf(h.Handle(Build(c, TurnMethods.ChannelBind, (ref StunMessageWriter w) =>
        {
            w.AddUInt32(TurnAttributeType.ChannelNumber, (uint)TurnLimits.FirstChannel << 16);
            w.AddXorAddress(TurnAttributeType.XorPeerAddress, StunAddress.FromEndPoint(peer));
        }), c, allocation)));
    }

    [Fact]
    public void Policy_AnAllowRule_OpensADeniedRange_AndADenyRuleClosesAPublicOne()
    {
        var h = NewHandler();
        var (allocation, _) = Allocate(h, new Client());
        var c = (Client)allocation.Client;
        var loopback = new IPEndPoint(IPAddress.Loopback, 9);
        h.Policy = new PeerPolicy(allow: [PeerRule.Parse("127.0.0.0/8")], deny: [PeerRule.Parse("8.8.8.8/32")]);
        Assert.Equal(0, ErrorOf(h.Handle(Build(c, TurnMethods.CreatePermission, PeerAttribute(loopback)), c, allocation)));
        Assert.Equal(StunErrorCode.Forbidden, ErrorOf(h.Handle(Build(c, TurnMethods.CreatePermission, PeerAttribute(Peer)), c, allocation)));
    }

    private static Attributes Channel(ushort number, IPEndPoint peer) => (ref StunMessageWriter w) =>
    {
        w.AddUInt32(TurnAttributeType.ChannelNumber, (uint)number << 16);
        w.AddXorAddress(TurnAttributeType.XorPeerAddress, StunAddress.FromEndPoint(peer));
    };

    [Fact]
    public void Rfc8656_11_ChannelBind_Rules()
    {
        var h = NewHandler();
        var (allocation, _) = Allocate(h, new Client());
        var c = (Client)allocation.Client;
        int Bind(ushort n, IPEndPoint p) => ErrorOf(h.Handle(Build(c, TurnMethods.ChannelBind, Channel(n, p)), c, allocation));

        Assert.Equal(StunErrorCode.BadRequest, Bind((ushort)(TurnLimits.FirstChannel - 1), Peer)); // below 0x4000
        Assert.Equal(StunErrorCode.BadRequest, Bind(0x8000, Peer));                    // above 0x7FFF
        Assert.Equal(0, Bind(0x4000, Peer));
        Assert.Equal(0, Bind(0x4000, Peer));                                             // a refresh
        Assert.Equal(StunErrorCode.BadRequest, Bind(0x4000, OtherPeer));                // the number is taken
        Assert.Equal(StunErrorCode.BadRequest, Bind(0x4001, Peer));                     // the peer has a channel
        Assert.Equal(0, Bind(0x4001, OtherPeer));

        // A channel installs the permission too: ChannelData's peer may now send back.
        var now = _time.GetTimestamp();
        Assert.True(allocation.Bindings.HasPermission(OtherPeer.Address, now));
        Assert.Equal(OtherPeer, allocation.Bindings.PeerOf(0x4001, now));

        // RFC 8656 section 9.1 / 11.2: an IPv6 peer on an IPv4-only allocation.
        Assert.Equal(TurnErrorCode.PeerAddressFamilyMismatch, Bind(0x4002, new IPEndPoint(IPAddress.Parse("2001:4860::8888"), 53)));
    }

    [Fact]
    public void ChannelsPerAllocation_AreCapped_With508()
    {
        var h = NewHandler(o => o with { MaxChannelsPerAllocation = 1 });
        var (allocation, _) = Allocate(h, new Client());
        var c = (Client)allocation.Client;
        Assert.Equal(0, ErrorOf(h.Handle(Build(c, TurnMethods.ChannelBind, Channel(0x4000, Peer)), c, allocation)));
        Assert.Equal(StunErrorCode.InsufficientCapacity,
            ErrorOf(h.Handle(Build(c, TurnMethods.ChannelBind, Channel(0x4001, OtherPeer)), c, allocation)));
    }

    [Fact]
    public void UnauthenticatedRequests_OverTheRate_GetNoAnswerAtAll()
    {
        var h = NewHandler(o => o with { UnauthenticatedRequestsPerSecond = 2 });
        var c = new Client();
        var answered = 0;
        for (var i = 0; i < 10; i++)
        {
            if (h.Handle(Build(c, TurnMethods.Allocate, UdpTransport, sign: false), c, null).Response is not null)
            {
                answered++;
            }
        }

        Assert.InRange(answered, 1, 3); // the burst the limiter allows, then silence: no amplification
    }

    [Fact]
    public void Binding_NeedsNoCredentials_AndAnswersTheMappedAddress()
    {
        var h = NewHandler();
        var c = new Client();
        var answer = h.Handle(Build(c, StunMethods.Binding, null, sign: false), c, null);
        Assert.Equal(0, ErrorOf(answer));
        Assert.True(StunMessageReader.TryParse(answer.Response, out var r));
        Assert.True(r.TryGetXorAddress(StunAttributeType.XorMappedAddress, out var mapped));
        Assert.Equal(c.Remote, mapped.ToEndPoint());
    }

    [Fact]
    public void GarbageAndTruncatedMessages_AreDropped_WithoutThrowing()
    {
        var h = NewHandler();
        var c = new Client();
        var good = Build(c, TurnMethods.Allocate, UdpTransport);
        var random = new Random(17);
        for (var i = 0; i < 2000; i++)
        {
            var bytes = good.AsSpan(0, random.Next(good.Length)).ToArray();
            if (bytes.Length > 0)
            {
                bytes[random.Next(bytes.Length)] ^= (byte)random.Next(1, 256);
            }

            var answer = h.Handle(bytes, c, null);
            Assert.NotEqual(TurnAction.SendToPeer, answer.Action);
        }

        Assert.Equal(0, h.Ledger.Count);
    }
}
