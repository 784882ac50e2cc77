using NatKit.Packets;
using static NatKit.Nat.Tests.NatHarness;

namespace NatKit.Nat.Tests;

/// <summary>RFC 5508: ICMP query mappings and ICMP error translation.</summary>
public sealed class IcmpTests
{
    private const string Host = "192.168.1.10:4000";

    [Fact]
    public void Rfc5508_Req1_EchoIdentifier_IsMappedLikeAPort()
    {
        using var h = new NatHarness(NatPresets.FullCone);
        var a = h.Echo(NatDirection.Outbound, "192.168.1.10", "198.51.100.1", 7);
        var b = h.Echo(NatDirection.Outbound, "192.168.1.11", "198.51.100.1", 7);
        Assert.Equal(Ext1, a.Source.Address);
        Assert.Equal(7, a.Source.Port);
        Assert.NotEqual(7, b.Source.Port); // same identifier from a second host gets another
        AssertChecksums(a.Bytes);
        var replyB = h.Echo(NatDirection.Inbound, "198.51.100.1", "203.0.113.1", b.Source.Port, reply: true);
        Assert.Equal(new NatEndpoint(Ipv4Address.Parse("192.168.1.11"), 7), replyB.Destination);
        AssertChecksums(replyB.Bytes);
    }

    [Fact]
    public void Rfc5508_Req1_EchoTimer_Is60s()
    {
        using var h = new NatHarness(NatPresets.FullCone);
        h.Echo(NatDirection.Outbound, "192.168.1.10", "198.51.100.1", 7);
        h.Advance(TimeSpan.FromSeconds(59));
        Assert.True(h.Echo(NatDirection.Inbound, "198.51.100.1", "203.0.113.1", 7, reply: true).Forwarded);
        h.Advance(TimeSpan.FromSeconds(2));
        Assert.False(h.Echo(NatDirection.Inbound, "198.51.100.1", "203.0.113.1", 7, reply: true).Forwarded);
    }

    [Theory]
    [InlineData(IcmpV4Type.DestinationUnreachable, 3)]
    [InlineData(IcmpV4Type.TimeExceeded, 0)]
    [InlineData(IcmpV4Type.DestinationUnreachable, 4)]
    public void Rfc5508_Req3_InboundError_RewritesEmbeddedHeaderAndChecksums(IcmpV4Type type, byte code)
    {
        using var h = new NatHarness(NatPresets.Symmetric);
        var sent = h.Out(Host, "198.51.100.1:1000");
        var error = Rfc4787ConformanceTests.BuildError(sent.Bytes, "198.51.100.254", type, code);
        var seen = h.Run(error, NatDirection.Inbound);
        Assert.Equal(NatAction.ForwardInside, seen.Verdict.Action);
        AssertChecksums(seen.Bytes); // full recomputation of outer, ICMP, quoted IP and quoted UDP checksums
        Assert.True(Ipv4Packet.TryParse(seen.Bytes, out var ip));
        Assert.Equal(Ep(Host).Address, ip.Destination);
        Assert.True(IcmpV4Message.TryParse(ip.Payload, out var icmp));
        Assert.True(icmp.TryGetQuotedPacket(out var inner));
        Assert.Equal(Ep(Host).Address, inner.Source);
        Assert.True(UdpDatagram.TryParse(inner.Payload, out var udp));
        Assert.Equal(Ep(Host).Port, udp.SourcePort);
        Assert.Equal(1000, udp.DestinationPort);
    }

    [Theory]
    [InlineData(IcmpV4Type.Redirect)]
    [InlineData(IcmpV4Type.SourceQuench)]
    public void RedirectAndSourceQuench_AreNotPassedOn(IcmpV4Type type)
    {
        using var h = new NatHarness(NatPresets.FullCone);
        var sent = h.Out(Host, "198.51.100.1:1000");
        var error = Rfc4787ConformanceTests.BuildError(sent.Bytes, "198.51.100.254", type, 0);
        Assert.Equal(NatDropReason.UnsupportedIcmp, h.Run(error, NatDirection.Inbound).Verdict.Reason);
    }

    [Fact]
    public void Rfc5508_Req4_OutboundError_RewritesEmbeddedDestination()
    {
        using var h = new NatHarness(NatPresets.FullCone);
        var ext = h.Out(Host, "198.51.100.1:1000").Source;
        var inbound = h.In("198.51.100.1:1000", ext.ToString());
        // The host answers the packet it received with Port Unreachable.
        var error = Rfc4787ConformanceTests.BuildError(inbound.Bytes, "192.168.1.10", IcmpV4Type.DestinationUnreachable, 3);
        var seen = h.Run(error, NatDirection.Outbound);
        Assert.Equal(NatAction.ForwardOutside, seen.Verdict.Action);
        AssertChecksums(seen.Bytes);
        Assert.True(Ipv4Packet.TryParse(seen.Bytes, out var ip));
        Assert.Equal(Ext1, ip.Source);
        Assert.Equal(Ep("198.51.100.1:1000").Address, ip.Destination);
        Assert.True(IcmpV4Message.TryParse(ip.Payload, out var icmp));
        Assert.True(icmp.TryGetQuotedPacket(out var inner));
        Assert.Equal(Ext1, inner.Destination);
        Assert.True(UdpDatagram.TryParse(inner.Payload, out var udp));
        Assert.Equal(ext.Port, udp.DestinationPort);
    }

    [Fact]
    public void Rfc5508_EchoQuotedInError_IsTranslated()
    {
        using var h = new NatHarness(NatPresets.FullCone);
        var ping = h.Echo(NatDirection.Outbound, "192.168.1.11", "198.51.100.1", 9);
        h.Echo(NatDirection.Outbound, "192.168.1.10", "198.51.100.1", 9); // takes another identifier
        var error = Rfc4787ConformanceTests.BuildError(ping.Bytes, "198.51.100.254", IcmpV4Type.TimeExceeded, 0);
        var seen = h.Run(error, NatDirection.Inbound);
        Assert.Equal(Ipv4Address.Parse("192.168.1.11"), seen.Destination.Address);
        AssertChecksums(seen.Bytes);
    }

    [Fact]
    public void Rfc5508_Req5_ErrorsNeverCreateRefreshOrRemoveSessions()
    {
        using var h = new NatHarness(NatPresets.FullCone);
        // No session: dropped, nothing created.
        var stray = Rfc4787ConformanceTests.BuildError(BuildUdp("203.0.113.1:9999", "198.51.100.1:1000"), "198.51.100.254", IcmpV4Type.DestinationUnreachable, 3);
        Assert.Equal(NatDropReason.IcmpErrorNoSession, h.Run(stray, NatDirection.Inbound).Verdict.Reason);
        Assert.Equal(0, h.Nat.SessionCount);

        var sent = h.Out(Host, "198.51.100.1:1000");
        var error = Rfc4787ConformanceTests.BuildError(sent.Bytes, "198.51.100.254", IcmpV4Type.DestinationUnreachable, 3);
        var deadline = Assert.Single(h.Nat.SnapshotFlows()).ExpiresAt;
        h.Advance(TimeSpan.FromSeconds(200));
        Assert.True(h.Run(error, NatDirection.Inbound).Forwarded);
        Assert.Equal(deadline, Assert.Single(h.Nat.SnapshotFlows()).ExpiresAt); // not refreshed, not removed
        h.Advance(TimeSpan.FromSeconds(101));
        Assert.Equal(0, h.Nat.SessionCount);
    }
}
