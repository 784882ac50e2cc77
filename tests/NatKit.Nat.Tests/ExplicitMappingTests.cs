using NatKit.Packets;
using static NatKit.Nat.Tests.NatHarness;

namespace NatKit.Nat.Tests;

/// <summary>The engine's runtime mapping API (<see cref="IMappingTable"/>): what NAT-PMP, PCP and UPnP servers use.</summary>
public sealed class ExplicitMappingTests
{
    private const string Host = "192.168.1.10:4000";
    private const string Remote = "198.51.100.7:5000";

    private static MappingRequest Udp(string inside, ushort external = 0, int seconds = 3600, bool exact = false) =>
        new(IpProtocol.Udp, Ep(inside), external, TimeSpan.FromSeconds(seconds)) { RequireExternalPort = exact };

    [Fact]
    public void ExplicitMapping_AdmitsAnyRemote_EvenWithPortDependentFiltering()
    {
        using var h = new NatHarness(NatPresets.Symmetric);
        var r = h.Nat.Map(Udp(Host, 6000), h.Now);
        Assert.Equal(MappingStatus.Created, r.Status);
        Assert.Equal(Ep("203.0.113.1:6000"), r.Mapping.External);
        var seen = h.In(Remote, "203.0.113.1:6000");
        Assert.True(seen.Forwarded);
        Assert.Equal(Ep(Host), seen.Destination);
        Assert.Null(h.Nat.CheckInvariants());
    }

    [Fact]
    public void ExplicitMapping_OutboundTrafficLeavesThroughIt_EvenWithSymmetricMapping()
    {
        using var h = new NatHarness(NatPresets.Symmetric);
        h.Nat.Map(Udp(Host, 6000), h.Now);
        Assert.Equal(Ep("203.0.113.1:6000"), h.Out(Host, Remote).Source);
        Assert.Equal(Ep("203.0.113.1:6000"), h.Out(Host, "198.51.100.8:1").Source);
    }

    [Fact]
    public void Map_SameEndpointTwice_RefreshesAndKeepsTheExternalPort()
    {
        using var h = new NatHarness(NatPresets.FullCone);
        var first = h.Nat.Map(Udp(Host, 6000, 100), h.Now);
        h.Advance(TimeSpan.FromSeconds(50));
        var second = h.Nat.Map(Udp(Host, 7000, 100), h.Now);
        Assert.Equal(MappingStatus.Refreshed, second.Status);
        Assert.Equal(first.Mapping.External, second.Mapping.External);
        Assert.Equal(h.Now + 100_000, second.Mapping.ExpiresAt);
        Assert.Equal(1, h.Nat.ExplicitMappingCount);
    }

    [Fact]
    public void Map_ExistingDynamicMapping_BecomesExplicit_WithItsPort()
    {
        using var h = new NatHarness(NatPresets.TailscaleEasy);
        var used = h.Out(Host, Remote).Source;
        var r = h.Nat.Map(Udp(Host, 6000), h.Now);
        Assert.Equal(MappingStatus.Created, r.Status);
        Assert.Equal(used, r.Mapping.External);
        Assert.True(h.In("198.51.100.99:1", used.ToString()).Forwarded); // now reachable from anyone
        Assert.Equal(1, h.Nat.MappingCount);
    }

    [Fact]
    public void Map_PortTakenByDynamicMapping_GivesAnotherPort_OrFailsWhenExact()
    {
        using var h = new NatHarness(NatPresets.FullCone);
        Assert.Equal(6000, h.Out("192.168.1.11:6000", Remote).Source.Port);
        var any = h.Nat.Map(Udp(Host, 6000), h.Now);
        Assert.Equal(MappingStatus.Created, any.Status);
        Assert.NotEqual(6000, any.Mapping.External.Port);
        Assert.Equal(MappingStatus.PortUnavailable, h.Nat.Map(Udp("192.168.1.12:1", 6000, exact: true), h.Now).Status);
    }

    [Fact]
    public void DynamicMappings_NeverTakeAnExplicitPort()
    {
        using var h = new NatHarness(NatPresets.FullCone);
        h.Nat.Map(Udp(Host, 6000), h.Now);
        Assert.NotEqual(6000, h.Out("192.168.1.11:6000", Remote).Source.Port); // port preservation yields
        using var overloading = new NatHarness(NatPresets.FullCone with { PortAssignment = PortAssignment.Overloading });
        overloading.Nat.Map(Udp(Host, 6000), overloading.Now);
        Assert.Equal(NatDropReason.PortsExhausted, overloading.Out("192.168.1.11:6000", Remote).Verdict.Reason); // never evicted
        Assert.True(overloading.In(Remote, "203.0.113.1:6000").Forwarded);
    }

    [Fact]
    public void Lifetime_IsCappedByPolicy_AndTheMappingExpires()
    {
        using var h = new NatHarness(NatPresets.FullCone with { PortMappingMaxLifetime = TimeSpan.FromSeconds(600) });
        var r = h.Nat.Map(Udp(Host, 6000, 86400), h.Now);
        Assert.Equal(600u, r.Mapping.SecondsLeft(h.Now));
        h.Advance(TimeSpan.FromSeconds(599));
        Assert.True(h.In(Remote, "203.0.113.1:6000").Forwarded);
        h.Advance(TimeSpan.FromSeconds(302)); // the explicit lifetime and the session it admitted both ran out
        Assert.Empty(h.Nat.ListMappings(h.Now));
        Assert.Equal(NatDropReason.NoMapping, h.In(Remote, "203.0.113.1:6000").Verdict.Reason);
        Assert.Equal(0, h.Nat.MappingCount);
        Assert.Null(h.Nat.CheckInvariants());
    }

    [Fact]
    public void Expiry_WithoutAnyTraffic_IsSeenByTheNextInboundPacket()
    {
        using var h = new NatHarness(NatPresets.PortRestrictedCone);
        h.Nat.Map(Udp(Host, 6000, 120), h.Now);
        h.AdvanceMs(120_000); // no tick needed: the packet's own time expires it
        Assert.Equal(NatDropReason.NoMapping, h.In(Remote, "203.0.113.1:6000").Verdict.Reason);
    }

    [Fact]
    public void Unmap_RemovesTheMapping_AndFreesThePortForOthers()
    {
        using var h = new NatHarness(NatPresets.Symmetric with { PortHoldDown = TimeSpan.Zero });
        h.Nat.Map(Udp(Host, 6000), h.Now);
        Assert.True(h.In(Remote, "203.0.113.1:6000").Forwarded);
        Assert.True(h.Nat.Unmap(IpProtocol.Udp, Ep(Host), h.Now));
        Assert.False(h.Nat.Unmap(IpProtocol.Udp, Ep(Host), h.Now));
        Assert.False(h.In(Remote, "203.0.113.1:6000").Forwarded);
        Assert.Equal(0, h.Nat.MappingCount);
        Assert.Equal(MappingStatus.Created, h.Nat.Map(Udp("192.168.1.11:1", 6000, exact: true), h.Now).Status);
        Assert.Null(h.Nat.CheckInvariants());
    }

    [Fact]
    public void Unmap_EndpointIndependentMappingInUse_FallsBackToTheDynamicMapping()
    {
        using var h = new NatHarness(NatPresets.PortRestrictedCone);
        h.Nat.Map(Udp(Host, 6000), h.Now);
        h.Out(Host, Remote);
        Assert.True(h.Nat.Unmap(IpProtocol.Udp, Ep(Host), h.Now));
        Assert.True(h.In(Remote, "203.0.113.1:6000").Forwarded); // its session lives on
        Assert.Equal(NatDropReason.Filtered, h.In("198.51.100.99:1", "203.0.113.1:6000").Verdict.Reason); // filtering again
        Assert.Equal(6000, h.Out(Host, "198.51.100.8:1").Source.Port);
    }

    [Fact]
    public void Rfc6888_Req4_PerHostQuota_HoldsUnderAFlood()
    {
        using var h = new NatHarness(NatPresets.FullCone with { MaxPortMappingsPerHost = 5 });
        var created = 0;
        for (var port = 1; port <= 1000; port++)
        {
            var r = h.Nat.Map(Udp($"192.168.1.10:{port}"), h.Now);
            if (r.Succeeded) created++;
            else Assert.Equal(MappingStatus.QuotaExceeded, r.Status);
        }

        Assert.Equal(5, created);
        Assert.Equal(MappingStatus.Created, h.Nat.Map(Udp("192.168.1.11:1"), h.Now).Status); // others are not limited
        Assert.Equal(MappingStatus.Refreshed, h.Nat.Map(Udp("192.168.1.10:1"), h.Now).Status); // refreshing needs no quota
        h.Nat.Unmap(IpProtocol.Udp, Ep("192.168.1.10:1"), h.Now);
        Assert.Equal(MappingStatus.Created, h.Nat.Map(Udp("192.168.1.10:999"), h.Now).Status);
    }

    [Fact]
    public void Rfc6888_Req4_ExplicitMappingsCountTowardTheGeneralLimit()
    {
        using var h = new NatHarness(NatPresets.FullCone with { MaxMappingsPerHost = 2 });
        Assert.True(h.Nat.Map(Udp("192.168.1.10:1"), h.Now).Succeeded);
        Assert.True(h.Nat.Map(Udp("192.168.1.10:2"), h.Now).Succeeded);
        Assert.Equal(MappingStatus.QuotaExceeded, h.Nat.Map(Udp("192.168.1.10:3"), h.Now).Status);
        Assert.Equal(NatDropReason.HostLimit, h.Out("192.168.1.10:3", Remote).Verdict.Reason);
    }

    [Fact]
    public void Map_RefusesOutsideAddresses_BadPorts_AndOtherProtocols()
    {
        using var h = new NatHarness(NatPresets.FullCone);
        Assert.Equal(MappingStatus.NotInside, h.Nat.Map(Udp("10.9.9.9:1"), h.Now).Status);
        Assert.Equal(MappingStatus.NotInside, h.Nat.Map(Udp("192.168.1.10:0"), h.Now).Status);
        Assert.Equal(MappingStatus.UnsupportedProtocol, h.Nat.Map(new MappingRequest(IpProtocol.Icmp, Ep(Host), 0, TimeSpan.FromHours(1)), h.Now).Status);
    }

    [Fact]
    public void Map_StaticForwardEndpoint_IsRefused()
    {
        using var h = new NatHarness(NatPresets.FullCone, tweak: c => c with { StaticForwards = [new StaticForward(IpProtocol.Udp, 8080, Ep(Host).Address, 4000)] });
        Assert.Equal(MappingStatus.PortUnavailable, h.Nat.Map(Udp(Host), h.Now).Status);
        Assert.Equal(MappingStatus.PortUnavailable, h.Nat.Map(Udp("192.168.1.11:1", 8080, exact: true), h.Now).Status);
    }

    [Fact]
    public void PortsOutsideThePolicyRange_AreNotHandedOut()
    {
        using var h = new NatHarness(NatPresets.FullCone with { PortRangeStart = 20000, PortRangeEnd = 20003, PortParity = false, PortHoldDown = TimeSpan.Zero });
        Assert.Equal(MappingStatus.PortUnavailable, h.Nat.Map(Udp("192.168.1.10:80", 80, exact: true), h.Now).Status);
        for (var i = 0; i < 4; i++) Assert.InRange(h.Nat.Map(Udp($"192.168.1.10:{i + 1}", 80), h.Now).Mapping.External.Port, 20000, 20003);
        Assert.Equal(MappingStatus.NoResources, h.Nat.Map(Udp("192.168.1.11:1"), h.Now).Status);
    }

    [Fact]
    public void ForgetHost_RemovesIdleExplicitMappingsToo()
    {
        using var h = new NatHarness(NatPresets.FullCone);
        h.Nat.Map(Udp(Host, 6000), h.Now);
        h.Nat.ForgetHost(Ep(Host).Address);
        Assert.Empty(h.Nat.ListMappings(h.Now));
        Assert.Equal(0, h.Nat.MappingCount);
    }

    [Fact]
    public void Observer_SeesExplicitMappingsComeAndGo()
    {
        var events = new List<string>();
        using var h = new NatHarness(NatPresets.FullCone);
        h.Nat.Observer = new Log(events);
        h.Nat.Map(Udp(Host, 6000, 200), h.Now);
        h.Advance(TimeSpan.FromSeconds(201));
        Assert.Equal(["+192.168.1.10:4000>203.0.113.1:6000", "-192.168.1.10:4000>203.0.113.1:6000"], events);
    }

    [Fact]
    public void Policy_ValidatesThePortMappingKnobs()
    {
        Assert.Contains((NatPresets.RfcRecommended with { PortMappingMaxLifetime = TimeSpan.Zero }).Validate(), e => e.StartsWith("PortMappingMaxLifetime", StringComparison.Ordinal));
        Assert.Contains((NatPresets.RfcRecommended with { PortMappingMinLifetime = TimeSpan.FromDays(2) }).Validate(), e => e.StartsWith("PortMappingMinLifetime", StringComparison.Ordinal));
        Assert.Contains((NatPresets.RfcRecommended with { MaxPortMappingsPerHost = -1 }).Validate(), e => e.StartsWith("MaxPortMappingsPerHost", StringComparison.Ordinal));
    }

    private sealed class Log(List<string> events) : INatObserver
    {
        public void MappingCreated(in NatMappingEvent e) => events.Add($"+{e.Internal}>{e.External}");

        public void MappingRemoved(in NatMappingEvent e) => events.Add($"-{e.Internal}>{e.External}");
    }
}

/// <summary>RFC 6887 section 13.3 FILTER, as the engine enforces it.</summary>
public sealed class ExplicitMappingFilterTests
{
    [Fact]
    public void Rfc6887_Filter_OnlyListedRemotesReachTheMapping()
    {
        using var h = new NatHarness(NatPresets.FullCone);
        var filters = new[] { new MappingFilter(Ipv4Prefix.Parse("198.51.100.0/24"), 53) };
        var r = h.Nat.Map(new MappingRequest(IpProtocol.Udp, Ep("192.168.1.10:4000"), 6000, TimeSpan.FromHours(1)) { Filters = filters }, h.Now);
        Assert.Equal(MappingStatus.Created, r.Status);
        Assert.True(h.In("198.51.100.7:53", "203.0.113.1:6000").Forwarded);
        Assert.Equal(NatDropReason.Filtered, h.In("198.51.100.7:54", "203.0.113.1:6000").Verdict.Reason);
        Assert.Equal(NatDropReason.Filtered, h.In("192.0.2.7:53", "203.0.113.1:6000").Verdict.Reason);
        // a refresh without filters lifts them
        h.Nat.Map(new MappingRequest(IpProtocol.Udp, Ep("192.168.1.10:4000"), 6000, TimeSpan.FromHours(1)), h.Now);
        Assert.True(h.In("192.0.2.7:53", "203.0.113.1:6000").Forwarded);
    }

    [Fact]
    public void Rfc6887_Filter_TooMany_AreRefused()
    {
        using var h = new NatHarness(NatPresets.FullCone);
        var filters = Enumerable.Range(0, 9).Select(i => new MappingFilter(Ipv4Prefix.Parse($"198.51.100.{i}/32"), 0)).ToArray();
        Assert.Equal(MappingStatus.TooManyFilters,
            h.Nat.Map(new MappingRequest(IpProtocol.Udp, Ep("192.168.1.10:4000"), 0, TimeSpan.FromHours(1)) { Filters = filters }, h.Now).Status);
    }

    [Fact]
    public void TryGetMapping_SeesLiveMappingsOnly()
    {
        using var h = new NatHarness(NatPresets.FullCone);
        h.Nat.Map(new MappingRequest(IpProtocol.Tcp, Ep("192.168.1.10:4000"), 0, TimeSpan.FromSeconds(200)), h.Now);
        Assert.True(h.Nat.TryGetMapping(IpProtocol.Tcp, Ep("192.168.1.10:4000"), h.Now, out var m));
        Assert.Equal(IpProtocol.Tcp, m.Protocol);
        Assert.False(h.Nat.TryGetMapping(IpProtocol.Udp, Ep("192.168.1.10:4000"), h.Now, out _));
        Assert.False(h.Nat.TryGetMapping(IpProtocol.Tcp, Ep("192.168.1.10:4000"), h.Now + 200_000, out _));
    }
}
