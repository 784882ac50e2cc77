using NatKit.Packets;
using static NatKit.Nat.Tests.NatHarness;

namespace NatKit.Nat.Tests;

/// <summary>RFC 5382 and RFC 7857 TCP tracking.</summary>
public sealed class TcpStateTests
{
    private const string Host = "192.168.1.10:40000";
    private const string Server = "198.51.100.1:443";

    private static NatTcpState State(NatHarness h) => Assert.Single(h.Nat.SnapshotFlows()).TcpState;

    private static string Open(NatHarness h)
    {
        var ext = h.Tcp(NatDirection.Outbound, Host, Server, TcpFlags.Syn).Source.ToString();
        Assert.Equal(NatAction.ForwardInside, h.Tcp(NatDirection.Inbound, Server, ext, TcpFlags.Syn | TcpFlags.Ack).Verdict.Action);
        h.Tcp(NatDirection.Outbound, Host, Server, TcpFlags.Ack);
        return ext;
    }

    [Fact]
    public void Rfc5382_Handshake_ReachesEstablished_WithTheEstablishedTimer()
    {
        using var h = new NatHarness(NatPresets.RfcRecommended);
        var ext = Open(h);
        Assert.Equal(NatTcpState.Established, State(h));
        h.Advance(TimeSpan.FromSeconds(7439));
        Assert.Equal(NatAction.ForwardInside, h.Tcp(NatDirection.Inbound, Server, ext, TcpFlags.Ack).Verdict.Action);
        h.Advance(TimeSpan.FromSeconds(2)); // RFC 5382 REQ-5: 2 h 4 min idle, counted from the last outbound
        Assert.Equal(0, h.Nat.SessionCount);
    }

    [Fact]
    public void Rfc5382_Req5_PartiallyOpen_UsesTheTransitoryTimer()
    {
        using var h = new NatHarness(NatPresets.RfcRecommended);
        h.Tcp(NatDirection.Outbound, Host, Server, TcpFlags.Syn);
        Assert.Equal(NatTcpState.Opening, State(h));
        h.Advance(TimeSpan.FromSeconds(239));
        Assert.Equal(1, h.Nat.SessionCount);
        h.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal(0, h.Nat.SessionCount);
    }

    [Fact]
    public void Rfc5382_Req2_SimultaneousOpen()
    {
        using var h = new NatHarness(NatPresets.PortRestrictedCone);
        var ext = h.Tcp(NatDirection.Outbound, Host, Server, TcpFlags.Syn).Source.ToString();
        var theirSyn = h.Tcp(NatDirection.Inbound, Server, ext, TcpFlags.Syn);
        Assert.Equal(NatAction.ForwardInside, theirSyn.Verdict.Action);
        Assert.Equal(Ep(Host), theirSyn.Destination);
        h.Tcp(NatDirection.Outbound, Host, Server, TcpFlags.Syn | TcpFlags.Ack);
        Assert.Equal(NatTcpState.Established, State(h));
    }

    [Fact]
    public void Rfc5382_HalfClose_KeepsTheEstablishedTimer_FinBothWaysIsTransitory()
    {
        using var h = new NatHarness(NatPresets.RfcRecommended);
        var ext = Open(h);
        h.Tcp(NatDirection.Outbound, Host, Server, TcpFlags.Fin | TcpFlags.Ack);
        Assert.Equal(NatTcpState.HalfClosed, State(h));
        Assert.Equal(h.Now + 7_440_000, Assert.Single(h.Nat.SnapshotFlows()).ExpiresAt);
        Assert.True(h.Tcp(NatDirection.Inbound, Server, ext, TcpFlags.Ack).Forwarded); // data still flows in
        h.Tcp(NatDirection.Inbound, Server, ext, TcpFlags.Fin | TcpFlags.Ack);
        Assert.Equal(NatTcpState.Closing, State(h));
        h.Tcp(NatDirection.Outbound, Host, Server, TcpFlags.Ack);
        h.Advance(TimeSpan.FromSeconds(241));
        Assert.Equal(0, h.Nat.SessionCount);
    }

    [Fact]
    public void Rfc5382_CloseAfterLongEstablishedLife_ExpiresOnTheTransitoryTimer()
    {
        using var h = new NatHarness(NatPresets.RfcRecommended);
        var ext = Open(h);
        for (var i = 0; i < 10; i++)
        {
            h.Advance(TimeSpan.FromSeconds(1000));
            h.Tcp(NatDirection.Outbound, Host, Server, TcpFlags.Ack);
        }

        h.Tcp(NatDirection.Outbound, Host, Server, TcpFlags.Fin | TcpFlags.Ack);
        h.Tcp(NatDirection.Inbound, Server, ext, TcpFlags.Fin | TcpFlags.Ack);
        h.Advance(TimeSpan.FromSeconds(239));
        Assert.Equal(1, h.Nat.SessionCount);
        h.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal(0, h.Nat.SessionCount);
    }

    [Fact]
    public void Rfc7857_Rst_KeepsTheSessionForTheTransitoryTime()
    {
        using var h = new NatHarness(NatPresets.RfcRecommended);
        var ext = Open(h);
        Assert.True(h.Tcp(NatDirection.Inbound, Server, ext, TcpFlags.Rst).Forwarded);
        Assert.Equal(NatTcpState.Closing, State(h));
        h.Advance(TimeSpan.FromSeconds(200));
        Assert.True(h.Tcp(NatDirection.Outbound, Host, Server, TcpFlags.Rst).Forwarded); // still translated
        h.Advance(TimeSpan.FromSeconds(241));
        Assert.Equal(0, h.Nat.SessionCount);
    }

    [Fact]
    public void Rfc5382_ReopenAfterClose_StartsANewConnection()
    {
        using var h = new NatHarness(NatPresets.RfcRecommended);
        var ext = Open(h);
        h.Tcp(NatDirection.Inbound, Server, ext, TcpFlags.Rst);
        h.Tcp(NatDirection.Outbound, Host, Server, TcpFlags.Syn);
        Assert.Equal(NatTcpState.Opening, State(h));
        h.Tcp(NatDirection.Inbound, Server, ext, TcpFlags.Syn | TcpFlags.Ack);
        Assert.Equal(NatTcpState.Established, State(h));
    }

    [Fact]
    public void Rfc5382_Req4_UnsolicitedSyn_Drop()
    {
        using var h = new NatHarness(NatPresets.RfcRecommended);
        var seen = h.Tcp(NatDirection.Inbound, Server, "203.0.113.1:5000", TcpFlags.Syn);
        Assert.Equal(NatVerdict.Drop(NatDropReason.UnsolicitedSyn), seen.Verdict);
        h.Advance(TimeSpan.FromSeconds(10));
        Assert.Empty(h.Sink.Sent);
    }

    [Fact]
    public void Rfc5382_Req4_UnsolicitedSyn_Hold_AnsweredWithPortUnreachableAfter6s()
    {
        using var h = new NatHarness(NatPresets.RfcRecommended with { UnsolicitedSyn = UnsolicitedSynBehavior.HoldThenPortUnreachable });
        var seen = h.Tcp(NatDirection.Inbound, Server, "203.0.113.1:5000", TcpFlags.Syn);
        Assert.Equal(NatAction.Consumed, seen.Verdict.Action);
        h.AdvanceMs(5999);
        Assert.Empty(h.Sink.Sent);
        h.AdvanceMs(1);
        var (bytes, side) = Assert.Single(h.Sink.Sent);
        Assert.Equal(NatSide.Outside, side);
        Assert.True(Ipv4Packet.TryParse(bytes, out var ip));
        Assert.Equal(Ep(Server).Address, ip.Destination);
        Assert.True(IcmpV4Message.TryParse(ip.Payload, out var icmp));
        Assert.Equal((IcmpV4Type.DestinationUnreachable, (byte)3), (icmp.Type, icmp.Code));
        AssertChecksums(bytes);
    }

    [Fact]
    public void Rfc5382_Req4_UnsolicitedSyn_Hold_SilentlyDroppedWhenAnOutboundSynFollows()
    {
        using var h = new NatHarness(NatPresets.RfcRecommended with { UnsolicitedSyn = UnsolicitedSynBehavior.HoldThenPortUnreachable });
        h.Tcp(NatDirection.Inbound, Server, "203.0.113.1:40000", TcpFlags.Syn);
        var ours = h.Tcp(NatDirection.Outbound, Host, Server, TcpFlags.Syn);
        Assert.Equal(Ep("203.0.113.1:40000"), ours.Source);
        h.Advance(TimeSpan.FromSeconds(10));
        Assert.Empty(h.Sink.Sent);
    }

    [Fact]
    public void Rfc5382_InboundNonSynWithoutSession_IsDropped_AndOutboundRstCreatesNothing()
    {
        using var h = new NatHarness(NatPresets.FullCone);
        h.Udp(NatDirection.Outbound, Host, Server); // UDP mapping on the same port does not admit TCP
        Assert.False(h.Tcp(NatDirection.Inbound, Server, "203.0.113.1:40000", TcpFlags.Ack).Forwarded);
        Assert.Equal(NatDropReason.NoSession, h.Tcp(NatDirection.Outbound, Host, "198.51.100.9:1", TcpFlags.Rst).Verdict.Reason);
        Assert.Equal(1, h.Nat.SessionCount);
    }

    [Fact]
    public void Rfc5382_Tcp_ChecksumsStayValid()
    {
        using var h = new NatHarness(NatPresets.Symmetric);
        var syn = h.Tcp(NatDirection.Outbound, Host, Server, TcpFlags.Syn);
        AssertChecksums(syn.Bytes);
        var synAck = h.Tcp(NatDirection.Inbound, Server, syn.Source.ToString(), TcpFlags.Syn | TcpFlags.Ack);
        AssertChecksums(synAck.Bytes);
        Assert.Equal(Ep(Host), synAck.Destination);
    }
}
