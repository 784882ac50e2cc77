using System.Net;
using System.Text;
using FsCheck;
using FsCheck.Fluent;
using NatKit.Stun.Server;

namespace NatKit.Stun.Tests;

public class StunRequestHandlerTests
{
    private static readonly IPEndPoint Client = new(IPAddress.Parse("192.0.2.10"), 40000);

    private static readonly IPEndPoint[] FourSockets =
    [
        new(IPAddress.Parse("198.51.100.1"), 3478), new(IPAddress.Parse("198.51.100.1"), 3479),
        new(IPAddress.Parse("198.51.100.2"), 3478), new(IPAddress.Parse("198.51.100.2"), 3479),
    ];

    private readonly ManualTimeProvider _time = new();

    private StunRequestHandler Handler(StunServerOptions? options = null, bool rfc5780 = false)
    {
        options ??= new StunServerOptions();
        if (rfc5780 && options.AlternateAddress is null)
        {
            options = options with { AlternateAddress = IPAddress.Parse("127.0.0.2") };
        }

        return new StunRequestHandler(options, rfc5780 ? FourSockets : FourSockets[..1], _time,
            new StunServerMetrics());
    }

    private static byte[] Request(ushort method = StunMethods.Binding, StunClass cls = StunClass.Request)
    {
        var buffer = new byte[1500];
        var w = new StunMessageWriter(buffer, method, cls, StunTransactionId.NewRandom());
        return buffer[..w.Length];
    }

    private delegate void Build(ref StunMessageWriter w);

    private static byte[] Request(Build build)
    {
        var buffer = new byte[1500];
        var w = new StunMessageWriter(buffer, StunMethods.Binding, StunClass.Request, StunTransactionId.NewRandom());
        build(ref w);
        return buffer[..w.Length];
    }

    private static (StunReplyRoute Route, byte[] Reply) Run(StunRequestHandler h, byte[] request,
        IPEndPoint? source = null, int socket = 0, StunTransport transport = StunTransport.Udp)
    {
        var reply = new byte[StunRequestHandler.MaxReplyLength];
        var route = h.Handle(request, source ?? Client, socket, transport, reply);
        return (route, reply[..route.Length]);
    }

    [Fact]
    public void Rfc8489_S18_2_Binding_ReturnsXorMappedSource()
    {
        var req = Request();
        var (route, reply) = Run(Handler(), req);
        Assert.True(StunMessageReader.TryParse(reply, out var r));
        Assert.Equal(StunClass.SuccessResponse, r.Class);
        Assert.Equal(StunTransactionId.Read(req.AsSpan(8)), r.TransactionId);
        Assert.True(r.TryGetXorAddress(StunAttributeType.XorMappedAddress, out var mapped));
        Assert.Equal(Client, mapped.ToEndPoint());
        Assert.Equal(0, route.SocketIndex);
        Assert.Equal(0, route.Port);
    }

    [Theory]
    [InlineData(0, false, false, 0)]
    [InlineData(0, true, false, 2)]
    [InlineData(0, false, true, 1)]
    [InlineData(0, true, true, 3)]
    [InlineData(3, true, true, 0)]
    [InlineData(2, false, true, 3)]
    public void Rfc5780_S6_1_ChangeRequest_AnswersFromTheChangedSocket(int receivedOn, bool ip, bool port, int from)
    {
        var req = Request((ref StunMessageWriter w) => w.AddChangeRequest(ip, port));
        var (route, reply) = Run(Handler(rfc5780: true), req, socket: receivedOn);
        Assert.Equal(from, route.SocketIndex);
        Assert.True(StunMessageReader.TryParse(reply, out var r));
        Assert.True(r.TryGetAddress(StunAttributeType.ResponseOrigin, out var origin));
        Assert.Equal(FourSockets[from], origin.ToEndPoint());
        Assert.True(r.TryGetAddress(StunAttributeType.OtherAddress, out var other));
        Assert.Equal(FourSockets[receivedOn ^ 3], other.ToEndPoint());
    }

    [Fact]
    public void Rfc5780_S6_1_ChangeRequest_WithoutRfc5780Mode_Is420()
    {
        var req = Request((ref StunMessageWriter w) => w.AddChangeRequest(true, true));
        var (_, reply) = Run(Handler(), req);
        Assert.True(StunMessageReader.TryParse(reply, out var r));
        Assert.True(r.TryGetErrorCode(out var code, out _));
        Assert.Equal(420, code);
        Assert.True(r.TryGet(StunAttributeType.UnknownAttributes, out var list));
        Assert.Equal(new byte[] { 0x00, 0x03 }, list.ToArray());
    }

    [Fact]
    public void Rfc8489_S6_3_1_UnknownComprehensionRequired_Is420_OptionalIsIgnored()
    {
        var req = Request((ref StunMessageWriter w) =>
        {
            w.AddUInt32(0x7ABC, 1);
            w.AddUInt32(0xFABC, 1);
        });
        var (_, reply) = Run(Handler(), req);
        Assert.True(StunMessageReader.TryParse(reply, out var r));
        Assert.Equal(StunClass.ErrorResponse, r.Class);
        Assert.True(r.TryGet(StunAttributeType.UnknownAttributes, out var list));
        Assert.Equal(new byte[] { 0x7A, 0xBC }, list.ToArray());

        var (_, ok) = Run(Handler(), Request((ref StunMessageWriter w) => w.AddUInt32(0xFABC, 1)));
        Assert.True(StunMessageReader.TryParse(ok, out var r2));
        Assert.Equal(StunClass.SuccessResponse, r2.Class);
    }

    [Fact]
    public void Rfc8489_S6_3_Indications_Responses_AndBadFingerprints_GetSilence()
    {
        var h = Handler();
        Assert.Equal(0, Run(h, Request(cls: StunClass.Indication)).Route.Length);
        Assert.Equal(0, Run(h, Request(cls: StunClass.SuccessResponse)).Route.Length);
        var req = Request((ref StunMessageWriter w) => w.AddFingerprint());
        req[^1] ^= 0xFF;
        Assert.Equal(0, Run(h, req).Route.Length);
        Assert.Equal(3, h.Metrics.Dropped);
    }

    [Fact]
    public void Rfc8489_UnknownMethod_Is400()
    {
        var (_, reply) = Run(Handler(), Request(method: 0x0ABC));
        Assert.True(StunMessageReader.TryParse(reply, out var r));
        Assert.True(r.TryGetErrorCode(out var code, out _));
        Assert.Equal(400, code);
    }

    [Fact]
    public void Rfc8489_S7_FingerprintInRequest_IsEchoedInResponse()
    {
        var (_, reply) = Run(Handler(), Request((ref StunMessageWriter w) => w.AddFingerprint()));
        Assert.True(StunMessageReader.TryParse(reply, out var r));
        Assert.True(r.IsFingerprintValid());
    }

    [Fact]
    public void Amplification_UnauthenticatedResponse_NeverExceedsRequestBeyondRequiredAttributes()
    {
        // A 20-byte request gets only what RFC 8489/5780 require; SOFTWARE and PADDING come only out of the
        // request's own size.
        var h = Handler(new StunServerOptions { RateLimitPerSecond = 0 }, rfc5780: true);
        var (_, small) = Run(h, Request());
        Assert.True(StunMessageReader.TryParse(small, out var r));
        Assert.False(r.Contains(StunAttributeType.Software));
        Assert.Equal(20 + 12 + 12 + 12, small.Length);

        var gen = from pad in Gen.Choose(0, 600)
                  from software in Gen.Choose(0, 40)
                  from fp in ArbMap.Default.GeneratorFor<bool>()
                  select (pad, software, fp);
        Prop.ForAll(gen.ToArbitrary(), t =>
        {
            var req = Request((ref StunMessageWriter w) =>
            {
                if (t.pad > 0)
                {
                    w.AddPadding(t.pad);
                }

                if (t.software > 0)
                {
                    w.AddString(StunAttributeType.Software, new string('s', t.software));
                }

                if (t.fp)
                {
                    w.AddFingerprint();
                }
            });
            var (_, reply) = Run(h, req);
            return reply.Length > 0 && reply.Length <= Math.Max(req.Length, 20 + 36 + (t.fp ? 8 : 0));
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(300));
    }

    [Fact]
    public void Software_IsSentWhenTheRequestPaysForIt_AndOnlyThen()
    {
        var h = Handler(new StunServerOptions { Software = "NatKit test" });
        Assert.True(StunMessageReader.TryParse(Run(h, Request()).Reply, out var small));
        Assert.False(small.Contains(StunAttributeType.Software));
        var (_, reply) = Run(h, Request((ref StunMessageWriter w) =>
            w.AddString(StunAttributeType.Software, new string('s', 64))));
        Assert.True(StunMessageReader.TryParse(reply, out var r));
        Assert.True(r.TryGet(StunAttributeType.Software, out var software));
        Assert.Equal("NatKit test", Encoding.UTF8.GetString(software));
    }

    [Fact]
    public void Rfc5780_S7_6_Padding_IsEchoedWithinTheRequestSize()
    {
        var req = Request((ref StunMessageWriter w) => w.AddPadding(400));
        var (_, reply) = Run(Handler(rfc5780: true), req);
        Assert.True(StunMessageReader.TryParse(reply, out var r));
        Assert.True(r.TryGet(StunAttributeType.Padding, out var pad));
        Assert.True(pad.Length > 300);
        Assert.True(reply.Length <= req.Length);
    }

    [Fact]
    public void Rfc5780_S7_5_ResponsePort_RoutesReply_AndLowPortsAreRefused()
    {
        var h = Handler(rfc5780: true);
        var (route, _) = Run(h, Request((ref StunMessageWriter w) => w.AddResponsePort(50000)));
        Assert.Equal(50000, route.Port);
        var (_, refused) = Run(h, Request((ref StunMessageWriter w) => w.AddResponsePort(53)));
        Assert.True(StunMessageReader.TryParse(refused, out var r));
        Assert.True(r.TryGetErrorCode(out var code, out _));
        Assert.Equal(400, code);
        var (_, tcp) = Run(h, Request((ref StunMessageWriter w) => w.AddResponsePort(50000)),
            transport: StunTransport.Tcp);
        Assert.True(StunMessageReader.TryParse(tcp, out var t));
        Assert.Equal(StunClass.ErrorResponse, t.Class);
    }

    [Fact]
    public void RateLimit_PerSourceAddress_DropsExcess_AndRefillsWithTime()
    {
        var h = Handler(new StunServerOptions { RateLimitPerSecond = 10 });
        for (var i = 0; i < 10; i++)
        {
            Assert.NotEqual(0, Run(h, Request(), new IPEndPoint(Client.Address, 1000 + i)).Route.Length);
        }

        Assert.Equal(0, Run(h, Request()).Route.Length);
        Assert.NotEqual(0, Run(h, Request(), new IPEndPoint(IPAddress.Parse("192.0.2.11"), 1)).Route.Length);
        _time.Advance(TimeSpan.FromMilliseconds(250));
        Assert.NotEqual(0, Run(h, Request()).Route.Length);
        Assert.NotEqual(0, Run(h, Request()).Route.Length);
        Assert.Equal(0, Run(h, Request()).Route.Length);
    }

    [Fact]
    public void RateLimit_TableIsBounded_UnderManySources()
    {
        var h = Handler(new StunServerOptions { RateLimitPerSecond = 1, RateLimitTableSize = 16 });
        for (var i = 0; i < 10_000; i++)
        {
            var ip = new IPAddress(BitConverter.GetBytes(0x0A000000 + i));
            Assert.NotEqual(0, Run(h, Request(), new IPEndPoint(ip, 1)).Route.Length);
        }
    }

    [Fact]
    public void Rfc8489_S9_1_ShortTerm_MissingIntegrityIs400_WrongIs401_RightIsSigned()
    {
        var options = new StunServerOptions { Users = new Dictionary<string, string> { ["alice"] = "secret" } };
        var h = Handler(options);
        Assert.Equal(400, ErrorCode(Run(h, Request()).Reply));
        var wrong = Request((ref StunMessageWriter w) =>
        {
            w.AddString(StunAttributeType.Username, "alice");
            w.AddMessageIntegrity(StunCredentials.ShortTermKey("guess"));
        });
        Assert.Equal(401, ErrorCode(Run(h, wrong).Reply));
        var key = StunCredentials.ShortTermKey("secret");
        var right = Request((ref StunMessageWriter w) =>
        {
            w.AddString(StunAttributeType.Username, "alice");
            w.AddMessageIntegrity(key);
        });
        var (_, reply) = Run(h, right);
        Assert.True(StunMessageReader.TryParse(reply, out var r));
        Assert.Equal(StunClass.SuccessResponse, r.Class);
        Assert.True(r.VerifyMessageIntegrity(key));
    }

    [Fact]
    public void Rfc8489_S6_3_1_UnknownAttributes_AreCheckedAfterAuthentication_And420IsSigned()
    {
        var h = Handler(new StunServerOptions { Users = new Dictionary<string, string> { ["alice"] = "secret" } });
        Assert.Equal(400, ErrorCode(Run(h, Request((ref StunMessageWriter w) => w.AddUInt32(0x7ABC, 1))).Reply));
        var key = StunCredentials.ShortTermKey("secret");
        var (_, reply) = Run(h, Request((ref StunMessageWriter w) =>
        {
            w.AddUInt32(0x7ABC, 1);
            w.AddString(StunAttributeType.Username, "alice");
            w.AddMessageIntegrity(key);
        }));
        Assert.Equal(420, ErrorCode(reply));
        Assert.True(StunMessageReader.TryParse(reply, out var r));
        Assert.True(r.VerifyMessageIntegrity(key));
    }

    [Fact]
    public void Rfc8489_S9_2_LongTerm_401WithRealmAndNonce_ThenSuccess_Then438WhenStale()
    {
        var options = new StunServerOptions
        {
            Users = new Dictionary<string, string> { ["bob"] = "pw" },
            Realm = "natkit.test",
            NonceLifetime = TimeSpan.FromMinutes(1),
        };
        var h = Handler(options);
        var (_, challenge) = Run(h, Request());
        Assert.Equal(401, ErrorCode(challenge));
        Assert.True(StunMessageReader.TryParse(challenge, out var c));
        Assert.True(c.TryGet(StunAttributeType.Realm, out var realmBytes));
        Assert.Equal("natkit.test", Encoding.UTF8.GetString(realmBytes));
        Assert.True(c.TryGet(StunAttributeType.Nonce, out var nonceBytes));
        var nonce = Encoding.UTF8.GetString(nonceBytes);

        var key = StunCredentials.LongTermKey("bob", "natkit.test", "pw");
        byte[] Signed(string n, byte[] k, bool sha256 = false) => Request((ref StunMessageWriter w) =>
        {
            w.AddString(StunAttributeType.Username, "bob");
            w.AddString(StunAttributeType.Realm, "natkit.test");
            w.AddString(StunAttributeType.Nonce, n);
            if (sha256)
            {
                w.AddPasswordAlgorithm(StunPasswordAlgorithm.Sha256);
                w.AddMessageIntegritySha256(k);
            }
            else
            {
                w.AddMessageIntegrity(k);
            }
        });

        var (_, ok) = Run(h, Signed(nonce, key));
        Assert.True(StunMessageReader.TryParse(ok, out var r));
        Assert.Equal(StunClass.SuccessResponse, r.Class);
        Assert.True(r.VerifyMessageIntegrity(key));

        var shaKey = StunCredentials.LongTermKey("bob", "natkit.test", "pw", StunPasswordAlgorithm.Sha256);
        var (_, ok256) = Run(h, Signed(nonce, shaKey, sha256: true));
        Assert.True(StunMessageReader.TryParse(ok256, out var r256));
        Assert.True(r256.VerifyMessageIntegritySha256(shaKey));

        Assert.Equal(401, ErrorCode(Run(h, Signed(nonce, StunCredentials.LongTermKey("bob", "natkit.test", "x"))).Reply));
        Assert.Equal(438, ErrorCode(Run(h, Signed("0000000000000000ffffffffffffffff", key)).Reply));
        Assert.Equal(438, ErrorCode(Run(h, Signed(nonce, key), new IPEndPoint(IPAddress.Parse("192.0.2.99"), 1)).Reply));

        _time.Advance(TimeSpan.FromMinutes(2));
        var (_, stale) = Run(h, Signed(nonce, key));
        Assert.Equal(438, ErrorCode(stale));
        Assert.True(StunMessageReader.TryParse(stale, out var s));
        Assert.True(s.TryGet(StunAttributeType.Nonce, out var fresh));
        Assert.Equal(StunClass.SuccessResponse,
            StunMessage.Parse(Run(h, Signed(Encoding.UTF8.GetString(fresh), key)).Reply)!.Class);
    }

    [Fact]
    public void Rfc8489_S9_2_4_LongTerm_AnotherRealm_Is401()
    {
        var h = Handler(new StunServerOptions
        {
            Users = new Dictionary<string, string> { ["bob"] = "pw" },
            Realm = "natkit.test",
        });
        var nonce = ChallengeNonce(h);
        byte[] Signed(string realm) => Request((ref StunMessageWriter w) =>
        {
            w.AddString(StunAttributeType.Username, "bob");
            w.AddString(StunAttributeType.Realm, realm);
            w.AddString(StunAttributeType.Nonce, nonce);
            // Signed with the server's key, so only the REALM check can refuse it.
            w.AddMessageIntegrity(StunCredentials.LongTermKey("bob", "natkit.test", "pw"));
        });

        Assert.Equal(401, ErrorCode(Run(h, Signed("natkit.tes")).Reply));
        Assert.Equal(401, ErrorCode(Run(h, Signed("natkit.test.")).Reply));
        Assert.Equal(0, ErrorCode(Run(h, Signed("natkit.test")).Reply));
    }

    [Fact]
    public void Rfc8489_S14_4_LongTerm_UserHashInsteadOfUsername_IsAccepted()
    {
        var h = Handler(new StunServerOptions
        {
            Users = new Dictionary<string, string> { ["bob"] = "pw" },
            Realm = "natkit.test",
        });
        var nonce = ChallengeNonce(h);
        var key = StunCredentials.LongTermKey("bob", "natkit.test", "pw");
        var req = Request((ref StunMessageWriter w) =>
        {
            w.Add(StunAttributeType.UserHash, StunCredentials.UserHash("bob", "natkit.test"));
            w.AddString(StunAttributeType.Realm, "natkit.test");
            w.AddString(StunAttributeType.Nonce, nonce);
            w.AddMessageIntegrity(key);
        });
        Assert.True(StunMessageReader.TryParse(Run(h, req).Reply, out var r));
        Assert.Equal(StunClass.SuccessResponse, r.Class);
    }

    [Fact]
    public void Rfc8489_S12_2_ClassicRfc3489Request_GetsMappedAddressAndCookieEcho()
    {
        var req = Request();
        req[4] = 0x12; // not the magic cookie: a classic client
        var (_, reply) = Run(Handler(rfc5780: true), req);
        Assert.Equal(req.AsSpan(4, 16).ToArray(), reply.AsSpan(4, 16).ToArray());
        Assert.True(StunMessageReader.Parse(reply, out var r, allowRfc3489: true) == StunParseStatus.Ok);
        Assert.True(r.TryGetAddress(StunAttributeType.MappedAddress, out var mapped));
        Assert.Equal(Client, mapped.ToEndPoint());
        Assert.True(r.TryGetAddress(StunAttributeType.ChangedAddress, out var changed));
        Assert.Equal(FourSockets[3], changed.ToEndPoint());
    }

    [Fact]
    public void RandomAndMutatedInput_NeverThrows_AndValidRequestsStillAnswered()
    {
        var h = Handler(new StunServerOptions
        {
            AlternateAddress = IPAddress.Parse("127.0.0.2"),
            Users = new Dictionary<string, string> { ["u"] = "p" },
            Realm = "r",
            RateLimitPerSecond = 0,
        }, rfc5780: true);
        var gen = from m in StunCodecTests.MessageGen
                  from flips in Gen.ListOf(Gen.Zip(Gen.Choose(0, 1000), ArbMap.Default.GeneratorFor<byte>()))
                  from random in Gen.ArrayOf(ArbMap.Default.GeneratorFor<byte>())
                  select (m with { Class = StunClass.Request }, flips, random);
        Prop.ForAll(gen.ToArbitrary(), t =>
        {
            var bytes = t.Item1.ToArray();
            foreach (var (pos, value) in t.flips)
            {
                bytes[pos % bytes.Length] = value;
            }

            Run(h, bytes);
            Run(h, t.random);
            Run(h, bytes, transport: StunTransport.Tcp);
            return true;
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(1500));
        Assert.Equal(401, ErrorCode(Run(h, Request()).Reply));
    }

    /// <summary>The NONCE of the 401 a request without credentials gets.</summary>
    private static string ChallengeNonce(StunRequestHandler h)
    {
        Assert.True(StunMessageReader.TryParse(Run(h, Request()).Reply, out var challenge));
        Assert.True(challenge.TryGet(StunAttributeType.Nonce, out var nonce));
        return Encoding.UTF8.GetString(nonce);
    }

    private static int ErrorCode(byte[] reply)
    {
        Assert.True(StunMessageReader.TryParse(reply, out var r));
        return r.TryGetErrorCode(out var code, out _) ? code : 0;
    }
}
