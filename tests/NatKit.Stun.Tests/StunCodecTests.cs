using System.Net;
using FsCheck;
using FsCheck.Fluent;

namespace NatKit.Stun.Tests;

public class StunCodecTests
{
    private static readonly Config Quick = Config.QuickThrowOnFailure.WithMaxTest(500);

    [Theory]
    [InlineData(0x001, StunClass.Request, 0x0001)]
    [InlineData(0x001, StunClass.Indication, 0x0011)]
    [InlineData(0x001, StunClass.SuccessResponse, 0x0101)]
    [InlineData(0x001, StunClass.ErrorResponse, 0x0111)]
    [InlineData(0x003, StunClass.Request, 0x0003)] // TURN Allocate
    [InlineData(0x009, StunClass.ErrorResponse, 0x0119)] // TURN ChannelBind error
    [InlineData(0xFFF, StunClass.ErrorResponse, 0x3FFF)]
    public void Rfc8489_S5_MessageType_InterleavesMethodAndClass(int method, StunClass cls, int wire)
    {
        Assert.Equal((ushort)wire, StunMessageType.Encode((ushort)method, cls));
        Assert.Equal((ushort)method, StunMessageType.Method((ushort)wire));
        Assert.Equal(cls, StunMessageType.Class((ushort)wire));
    }

    [Fact]
    public void MessageType_RoundTrips_ForEveryMethodAndClass()
    {
        Prop.ForAll(Gen.Choose(0, 0xFFF).ToArbitrary(), Gen.Choose(0, 3).ToArbitrary(), (m, c) =>
        {
            var t = StunMessageType.Encode((ushort)m, (StunClass)c);
            return (t & 0xC000) == 0 && StunMessageType.Method(t) == m && StunMessageType.Class(t) == (StunClass)c;
        }).Check(Quick);
    }

    internal static Gen<StunMessage> MessageGen =>
        from method in Gen.Choose(0, 0xFFF)
        from cls in Gen.Choose(0, 3)
        from hi in ArbMap.Default.GeneratorFor<uint>()
        from lo in ArbMap.Default.GeneratorFor<ulong>()
        from attrs in Gen.ListOf(AttributeGen).Select(l => l.Take(12).ToList())
        select new StunMessage((ushort)method, (StunClass)cls, new StunTransactionId(hi, lo), attrs);

    // Any type except the three whose position and length the codec checks (they are tested separately).
    private static Gen<StunRawAttribute> AttributeGen =>
        from type in Gen.Choose(0, 0xFFFF).Where(t => t is not (StunAttributeType.MessageIntegrity
            or StunAttributeType.MessageIntegritySha256 or StunAttributeType.Fingerprint))
        from length in Gen.Choose(0, 40)
        from bytes in Gen.ArrayOf(ArbMap.Default.GeneratorFor<byte>(), length)
        select new StunRawAttribute((ushort)type, bytes);

    [Fact]
    public void ParseOfEmit_IsIdentity()
    {
        Prop.ForAll(MessageGen.ToArbitrary(), m =>
        {
            var bytes = m.ToArray();
            return StunMessage.Parse(bytes) == m;
        }).Check(Quick);
    }

    [Fact]
    public void XorAddress_RoundTrips_IPv4AndIPv6()
    {
        var gen = from v6 in ArbMap.Default.GeneratorFor<bool>()
                  from bytes in Gen.ArrayOf(ArbMap.Default.GeneratorFor<byte>(), 16)
                  from port in Gen.Choose(0, 65535)
                  from hi in ArbMap.Default.GeneratorFor<uint>()
                  from lo in ArbMap.Default.GeneratorFor<ulong>()
                  select (v6 ? new IPEndPoint(new IPAddress(bytes), port)
                      : new IPEndPoint(new IPAddress(bytes[..4]), port), new StunTransactionId(hi, lo));
        Prop.ForAll(gen.ToArbitrary(), t =>
        {
            var (ep, tid) = t;
            if (ep.Address.IsIPv4MappedToIPv6)
            {
                return true;
            }

            var buffer = new byte[128];
            var w = new StunMessageWriter(buffer, StunMethods.Binding, StunClass.SuccessResponse, tid);
            w.AddXorAddress(StunAttributeType.XorMappedAddress, StunAddress.FromEndPoint(ep));
            w.AddAddress(StunAttributeType.MappedAddress, StunAddress.FromEndPoint(ep));
            Assert.True(StunMessageReader.TryParse(buffer.AsSpan(0, w.Length), out var r));
            Assert.True(r.TryGetXorAddress(StunAttributeType.XorMappedAddress, out var x));
            Assert.True(r.TryGetAddress(StunAttributeType.MappedAddress, out var p));
            return x.ToEndPoint().Equals(ep) && p.ToEndPoint().Equals(ep);
        }).Check(Quick);
    }

    [Fact]
    public void RandomBytes_NeverThrow()
    {
        Prop.ForAll(Gen.ArrayOf(ArbMap.Default.GeneratorFor<byte>()).ToArbitrary(), bytes =>
        {
            ParseEverything(bytes);
            return true;
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(2000));
    }

    [Fact]
    public void MutatedMessages_NeverThrow()
    {
        var gen = from m in MessageGen
                  from flips in Gen.ListOf(Gen.Zip(Gen.Choose(0, 1000), ArbMap.Default.GeneratorFor<byte>()))
                  from cut in Gen.Choose(0, 8)
                  select (m, flips, cut);
        Prop.ForAll(gen.ToArbitrary(), t =>
        {
            var bytes = t.m.ToArray();
            foreach (var (pos, value) in t.flips)
            {
                bytes[pos % bytes.Length] = value;
            }

            ParseEverything(bytes);
            ParseEverything(bytes.AsSpan(0, Math.Max(0, bytes.Length - t.cut)));
            return true;
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(2000));
    }

    internal static void ParseEverything(ReadOnlySpan<byte> bytes)
    {
        StunFraming.Classify(bytes);
        StunFraming.TryGetFrameLength(bytes, out _);
        if (!StunMessageReader.TryParse(bytes, out var r))
        {
            return;
        }

        foreach (var a in r.Attributes)
        {
            _ = a.Value.Length;
        }

        r.TryGetAddress(StunAttributeType.MappedAddress, out _);
        r.TryGetXorAddress(StunAttributeType.XorMappedAddress, out _);
        r.TryGetErrorCode(out _, out _);
        r.TryGetChangeRequest(out _, out _);
        r.TryGetResponsePort(out _);
        r.TryGetPasswordAlgorithm(out _);
        r.IsFingerprintValid();
        r.VerifyMessageIntegrity([1, 2, 3]);
        r.VerifyMessageIntegritySha256([1, 2, 3]);
        Span<ushort> unknown = stackalloc ushort[8];
        r.FindUnknownComprehensionRequired(StunAttributeRegistry.Stun, unknown);
        StunMessage.Parse(bytes);
    }

    [Fact]
    public void Rfc8489_S14_5_AttributesAfterMessageIntegrity_AreIgnoredExceptSha256AndFingerprint()
    {
        var key = StunCredentials.ShortTermKey("pw");
        var buffer = new byte[256];
        var w = new StunMessageWriter(buffer, StunMethods.Binding, StunClass.Request, StunTransactionId.NewRandom());
        w.AddString(StunAttributeType.Username, "alice");
        w.AddMessageIntegrity(key);
        w.AddString(StunAttributeType.Realm, "sneaky");
        w.AddMessageIntegritySha256(key);
        w.AddString(StunAttributeType.Nonce, "sneaky");
        w.AddFingerprint();
        Assert.True(StunMessageReader.TryParse(buffer.AsSpan(0, w.Length), out var r));
        Assert.False(r.Contains(StunAttributeType.Realm));
        Assert.False(r.Contains(StunAttributeType.Nonce));
        Assert.True(r.Contains(StunAttributeType.Username));
        Assert.True(r.VerifyMessageIntegrity(key));
        Assert.True(r.VerifyMessageIntegritySha256(key));
        Assert.True(r.IsFingerprintValid());
    }

    [Fact]
    public void Rfc8489_S14_7_FingerprintMustBeLast()
    {
        var buffer = new byte[128];
        var w = new StunMessageWriter(buffer, StunMethods.Binding, StunClass.Request, StunTransactionId.NewRandom());
        w.AddFingerprint();
        w.AddString(StunAttributeType.Software, "x");
        Assert.Equal(StunParseStatus.FingerprintNotLast, StunMessageReader.Parse(buffer.AsSpan(0, w.Length), out _));
    }

    [Fact]
    public void Rfc8489_S14_7_CorruptedMessage_FailsFingerprint()
    {
        var bytes = (byte[])Rfc5769VectorTests.SampleIPv4Response.Clone();
        bytes[30] ^= 1;
        Assert.True(StunMessageReader.TryParse(bytes, out var r));
        Assert.False(r.IsFingerprintValid());
        Assert.False(r.VerifyMessageIntegrity(StunCredentials.ShortTermKey("VOkJxbRl1RmTxUk/WvJxBt")));
    }

    [Fact]
    public void Rfc8489_S14_6_TruncatedSha256Integrity_Verifies()
    {
        var key = StunCredentials.LongTermKey("u", "r", "p", StunPasswordAlgorithm.Sha256);
        var buffer = new byte[128];
        var w = new StunMessageWriter(buffer, StunMethods.Binding, StunClass.Request, StunTransactionId.NewRandom());
        w.AddMessageIntegritySha256(key, 16);
        Assert.True(StunMessageReader.TryParse(buffer.AsSpan(0, w.Length), out var r));
        Assert.True(r.VerifyMessageIntegritySha256(key));
        Assert.False(r.VerifyMessageIntegritySha256(StunCredentials.LongTermKey("u", "r", "q",
            StunPasswordAlgorithm.Sha256)));
    }

    [Fact]
    public void Rfc8489_S7_3_1_UnknownComprehensionRequired_AreReported_OptionalAreNot()
    {
        var buffer = new byte[128];
        var w = new StunMessageWriter(buffer, StunMethods.Binding, StunClass.Request, StunTransactionId.NewRandom());
        w.AddUInt32(0x7F01, 1);
        w.AddUInt32(0xC001, 1);
        w.AddUInt32(0x7F01, 2);
        w.AddUInt32(0x0019, 2); // TURN REQUESTED-TRANSPORT: unknown to plain STUN
        Assert.True(StunMessageReader.TryParse(buffer.AsSpan(0, w.Length), out var r));
        Span<ushort> unknown = stackalloc ushort[8];
        var n = r.FindUnknownComprehensionRequired(StunAttributeRegistry.Stun, unknown);
        Assert.Equal(new ushort[] { 0x7F01, 0x0019 }, unknown[..n].ToArray());
        n = r.FindUnknownComprehensionRequired(StunAttributeRegistry.Stun.With(0x0019), unknown);
        Assert.Equal(new ushort[] { 0x7F01 }, unknown[..n].ToArray());
    }

    [Theory]
    [InlineData(401)]
    [InlineData(420)]
    [InlineData(438)]
    [InlineData(300)]
    [InlineData(508)]
    public void Rfc8489_S14_8_ErrorCode_RoundTrips(int code)
    {
        var buffer = new byte[128];
        var w = new StunMessageWriter(buffer, StunMethods.Binding, StunClass.ErrorResponse, StunTransactionId.NewRandom());
        w.AddErrorCode(code);
        Assert.True(StunMessageReader.TryParse(buffer.AsSpan(0, w.Length), out var r));
        Assert.True(r.TryGetErrorCode(out var parsed, out var reason));
        Assert.Equal(code, parsed);
        Assert.Equal(StunErrorCode.Reason(code), System.Text.Encoding.UTF8.GetString(reason));
    }

    [Fact]
    public void Rfc5780_ChangeRequestResponsePortPadding_RoundTrip()
    {
        var buffer = new byte[256];
        var w = new StunMessageWriter(buffer, StunMethods.Binding, StunClass.Request, StunTransactionId.NewRandom());
        w.AddChangeRequest(changeAddress: true, changePort: false);
        w.AddResponsePort(40000);
        w.AddPadding(13);
        Assert.True(StunMessageReader.TryParse(buffer.AsSpan(0, w.Length), out var r));
        Assert.True(r.TryGetChangeRequest(out var a, out var p));
        Assert.True(a);
        Assert.False(p);
        Assert.True(r.TryGetResponsePort(out var port));
        Assert.Equal(40000, port);
        Assert.True(r.TryGet(StunAttributeType.Padding, out var pad));
        Assert.Equal(13, pad.Length);
    }

    [Theory]
    [InlineData("0001000c2112a442000000000000000000000000", StunParseStatus.BadLength)]
    [InlineData("c001000c2112a442000000000000000000000000", StunParseStatus.NotStun)]
    [InlineData("000100002112a443000000000000000000000000", StunParseStatus.NotStun)]
    [InlineData("000100042112a4420000000000000000000000000000000a", StunParseStatus.TruncatedAttribute)]
    [InlineData("00010002", StunParseStatus.TooShort)]
    [InlineData("000100082112a4420000000000000000000000008028000300000000", StunParseStatus.BadIntegrityLength)]
    public void Rfc8489_S6_3_MalformedHeaders_AreRejected(string hex, StunParseStatus expected) =>
        Assert.Equal(expected, StunMessageReader.Parse(Convert.FromHexString(hex), out _));

    [Theory]
    [InlineData("40000004deadbeef", StunPacketKind.ChannelData, 8)]
    [InlineData("7ffe0001aa000000", StunPacketKind.ChannelData, 8)]
    [InlineData("000100002112a442000000000000000000000000", StunPacketKind.Stun, 20)]
    [InlineData("8000000000000000", StunPacketKind.Unknown, -1)]
    [InlineData("3fff000400000000", StunPacketKind.Unknown, -1)]
    [InlineData("400000", StunPacketKind.Unknown, 0)]
    public void Rfc7983_Classifier_And_StreamFrameLength(string hex, StunPacketKind kind, int frame)
    {
        var bytes = Convert.FromHexString(hex);
        Assert.Equal(kind, StunFraming.Classify(bytes));
        var ok = StunFraming.TryGetFrameLength(bytes, out var length);
        Assert.Equal(frame >= 0, ok);
        if (ok)
        {
            Assert.Equal(frame, length);
        }
    }

    [Fact]
    public void LongTermKey_Md5_MatchesDefinition()
    {
        // MD5("user:realm:pass"), as RFC 8489 section 9.2.2 defines it.
        Assert.Equal("8493fbc53ba582fb4c044c456bdc40eb",
            Convert.ToHexStringLower(StunCredentials.LongTermKey("user", "realm", "pass")));
    }
}
