using System.Buffers.Binary;
using System.Net;
using FsCheck;
using FsCheck.Fluent;

namespace NatKit.Utp.Tests;

public sealed class DatagramClassifierTests
{
    private static readonly IPEndPoint Peer = new(IPAddress.Parse("198.51.100.7"), 40000);
    private static readonly IPEndPoint Turn = new(IPAddress.Parse("203.0.113.1"), 3478);

    private static byte[] Utp(UtpPacketType type, ushort id = 0x1234)
    {
        var p = new byte[UtpHeader.Size];
        UtpHeader.Write(p, type, 0, id, 1000, 0, 65536, 1, 0);
        return p;
    }

    private static byte[] StunBindingRequest()
    {
        var p = new byte[20 + 8];
        BinaryPrimitives.WriteUInt16BigEndian(p, 0x0001);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(2), 8);
        BinaryPrimitives.WriteUInt32BigEndian(p.AsSpan(4), DatagramClassifier.StunMagicCookie);
        return p;
    }

    /// <summary>ChannelData (RFC 8656 section 12.4): channel number 0x4000-0x7FFF, length, data.</summary>
    private static byte[] ChannelData(ushort channel, int length)
    {
        var p = new byte[4 + length];
        BinaryPrimitives.WriteUInt16BigEndian(p, channel);
        BinaryPrimitives.WriteUInt16BigEndian(p.AsSpan(2), (ushort)length);
        return p;
    }

    [Theory]
    [InlineData(UtpPacketType.Syn)]
    [InlineData(UtpPacketType.Data)]
    [InlineData(UtpPacketType.State)]
    [InlineData(UtpPacketType.Fin)]
    [InlineData(UtpPacketType.Reset)]
    public void UtpPackets_FromAPeer_AreUtp(UtpPacketType type)
    {
        Assert.Equal(DatagramKind.Utp, new DatagramClassifier().Classify(Utp(type), Peer));
    }

    [Fact]
    public void UtpSyn_0x41_FromARegisteredTurnServer_IsTurnTraffic_NotUtp()
    {
        var c = new DatagramClassifier();
        var syn = Utp(UtpPacketType.Syn);
        Assert.Equal(0x41, syn[0]);
        Assert.Equal(DatagramKind.Utp, c.Classify(syn, Turn));
        c.AddTurnServer(Turn);
        Assert.Equal(DatagramKind.TurnServer, c.Classify(syn, Turn));
        Assert.Equal(DatagramKind.Utp, c.Classify(syn, Peer));
        c.RemoveTurnServer(Turn);
        Assert.Equal(DatagramKind.Utp, c.Classify(syn, Turn));
    }

    [Fact]
    public void ChannelData_0x4100_LooksLikeAUtpSyn_SoOnlyTheSourceTellsThemApart()
    {
        // Channel 0x4100 with 16 bytes of data is 20 bytes starting 0x41 0x00: a well-formed uTP SYN header.
        var channelData = ChannelData(0x4100, 16);
        Assert.True(UtpHeader.TryParse(channelData, out _));
        var c = new DatagramClassifier();
        c.AddTurnServer(Turn);
        Assert.Equal(DatagramKind.TurnServer, c.Classify(channelData, Turn));
    }

    [Fact]
    public void ChannelData_FromTurnServer_IsTurnTraffic_ForEveryChannelFirstByte()
    {
        var c = new DatagramClassifier();
        c.AddTurnServer(Turn);
        for (var first = 0x40; first <= 0x7F; first++)
        {
            Assert.Equal(DatagramKind.TurnServer, c.Classify(ChannelData((ushort)(first << 8), 32), Turn));
        }
    }

    [Fact]
    public void Stun_ByMagicCookieAndLength_IsStun_FromAnySource()
    {
        var c = new DatagramClassifier();
        Assert.Equal(DatagramKind.Stun, c.Classify(StunBindingRequest(), Peer));
        var response = StunBindingRequest();
        response[0] = 0x01; // 0x0101 Binding success: the same first byte as a uTP DATA packet
        response[1] = 0x01;
        Assert.Equal(DatagramKind.Stun, c.Classify(response, Peer));
    }

    [Fact]
    public void UtpData_WhoseTimestampEqualsTheCookie_StaysUtp_UnlessTheLengthAlsoMatches()
    {
        var p = new byte[UtpHeader.Size + 100];
        UtpHeader.Write(p, UtpPacketType.Data, 0, 0x0001, DatagramClassifier.StunMagicCookie, 0, 0, 1, 0);
        Assert.Equal(DatagramKind.Utp, new DatagramClassifier().Classify(p, Peer));
    }

    [Fact]
    public void Garbage_AndHolePunchProbes_AreOther()
    {
        var c = new DatagramClassifier();
        Assert.Equal(DatagramKind.Other, c.Classify("natkit-punch"u8, Peer));
        Assert.Equal(DatagramKind.Other, c.Classify([], Peer));
        Assert.Equal(DatagramKind.Other, c.Classify(new byte[40], Peer)); // version 0
    }

    [Fact]
    public void Fuzz_Classify_NeverThrows_AndAgreesWithTheParsers()
    {
        var c = new DatagramClassifier();
        var prop = Prop.ForAll(ArbMap.Default.ArbFor<byte[]>(), bytes =>
        {
            var kind = c.Classify(bytes, Peer);
            return kind switch
            {
                DatagramKind.Stun => DatagramClassifier.IsStun(bytes),
                DatagramKind.Utp => UtpHeader.TryParse(bytes, out _) && !DatagramClassifier.IsStun(bytes),
                DatagramKind.Other => !UtpHeader.TryParse(bytes, out _) && !DatagramClassifier.IsStun(bytes),
                _ => false,
            };
        });
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(2000), prop);
    }
}
