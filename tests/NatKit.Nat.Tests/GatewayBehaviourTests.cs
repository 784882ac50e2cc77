using NatKit.Packets;
using static NatKit.Nat.Tests.NatHarness;

namespace NatKit.Nat.Tests;

/// <summary>RFC 6888 limits and logging, static forwards, DMZ, TTL, IPv6, and who may use the engine how.</summary>
public sealed class GatewayBehaviourTests
{
    private const string Host = "192.168.1.10:4000";

    private sealed class Recorder : INatObserver
    {
        public List<NatMappingEvent> Created { get; } = [];
        public List<NatMappingEvent> Removed { get; } = [];

        public void MappingCreated(in NatMappingEvent e) => Created.Add(e);

        public void MappingRemoved(in NatMappingEvent e) => Removed.Add(e);
    }

    [Fact]
    public void Rfc6888_Req4_PerHostMappingLimit()
    {
        using var h = new NatHarness(NatPresets.RfcRecommended with { MaxMappingsPerHost = 2 });
        Assert.True(h.Out("192.168.1.10:1", "198.51.100.1:1000").Forwarded);
        Assert.True(h.Out("192.168.1.10:2", "198.51.100.1:1000").Forwarded);
        Assert.Equal(NatDropReason.HostLimit, h.Out("192.168.1.10:3", "198.51.100.1:1000").Verdict.Reason);
        Assert.True(h.Out("192.168.1.11:3", "198.51.100.1:1000").Forwarded); // another host is not limited
        Assert.True(h.Out("192.168.1.10:1", "198.51.100.9:1").Forwarded); // an existing mapping (EIM) still works
    }

    [Fact]
    public void Rfc6888_Req8_FreedPortHoldDown()
    {
        using var h = new NatHarness(NatPresets.FullCone with { PortHoldDown = TimeSpan.FromSeconds(120) });
        Assert.Equal(4000, h.Out(Host, "198.51.100.1:1000").Source.Port);
        h.Advance(TimeSpan.FromSeconds(301)); // mapping expires, port 4000 held down
        Assert.Equal(0, h.Nat.MappingCount);
        Assert.NotEqual(4000, h.Out("192.168.1.11:4000", "198.51.100.1:1000").Source.Port);
        h.Advance(TimeSpan.FromSeconds(120));
        Assert.Equal(4000, h.Out("192.168.1.12:4000", "198.51.100.1:1000").Source.Port);
    }

    [Fact]
    public void Rfc6888_Req12_MappingEvents_CarryNoDestination()
    {
        var recorder = new Recorder();
        using var h = new NatHarness(NatPresets.FullCone);
        h.Nat.Observer = recorder;
        h.Out(Host, "198.51.100.1:1000");
        h.Out(Host, "198.51.100.2:1000"); // same mapping (EIM): no second event
        var created = Assert.Single(recorder.Created);
        Assert.Equal(new NatMappingEvent(IpProtocol.Udp, Ep(Host), Ep("203.0.113.1:4000"), 0), created);
        h.Advance(TimeSpan.FromSeconds(301));
        var removed = Assert.Single(recorder.Removed);
        Assert.Equal(created with { Time = 301_000 }, removed);
    }

    [Fact]
    public void StaticForward_AdmitsAnyRemote_EvenWithPortDependentFiltering()
    {
        using var h = new NatHarness(NatPresets.Symmetric, tweak: c => c with
        {
            StaticForwards = [new StaticForward(IpProtocol.Tcp, 8080, Ipv4Address.Parse("192.168.1.20"), 80)],
        });
        var seen = h.Tcp(NatDirection.Inbound, "198.51.100.7:5555", "203.0.113.1:8080", TcpFlags.Syn);
        Assert.Equal(NatAction.ForwardInside, seen.Verdict.Action);
        Assert.Equal(Ep("192.168.1.20:80"), seen.Destination);
        var answer = h.Tcp(NatDirection.Outbound, "192.168.1.20:80", "198.51.100.7:5555", TcpFlags.Syn | TcpFlags.Ack);
        Assert.Equal(Ep("203.0.113.1:8080"), answer.Source);
        AssertChecksums(answer.Bytes);
        h.Advance(TimeSpan.FromHours(3));
        Assert.Equal(1, h.Nat.MappingCount); // static mappings never expire
    }

    [Fact]
    public void Dmz_ReceivesUnsolicitedInbound_OnTheSamePort()
    {
        using var h = new NatHarness(NatPresets.PortRestrictedCone, tweak: c => c with { DmzHost = Ipv4Address.Parse("192.168.1.50") });
        var seen = h.In("198.51.100.7:5555", "203.0.113.1:7000");
        Assert.Equal(Ep("192.168.1.50:7000"), seen.Destination);
        var reply = h.Out("192.168.1.50:7000", "198.51.100.7:5555");
        Assert.Equal(Ep("203.0.113.1:7000"), reply.Source);
    }

    [Fact]
    public void Dmz_SameRemoteOnTwoExternalAddresses_IsRefusedNotConfused()
    {
        using var h = new NatHarness(NatPresets.FullCone, externals: 2, tweak: c => c with { DmzHost = Ipv4Address.Parse("192.168.1.50") });
        Assert.True(h.In("198.51.100.7:5555", "203.0.113.1:7000").Forwarded);
        Assert.Equal(NatDropReason.SessionConflict, h.In("198.51.100.7:5555", "203.0.113.2:7000").Verdict.Reason);
        Assert.Equal(Ep("203.0.113.1:7000"), h.Out("192.168.1.50:7000", "198.51.100.7:5555").Source);
        Assert.Null(h.Nat.CheckInvariants());
    }

    [Fact]
    public void NoDmz_UnsolicitedInboundIsDropped()
    {
        using var h = new NatHarness(NatPresets.FullCone);
        Assert.Equal(NatDropReason.NoMapping, h.In("198.51.100.7:5555", "203.0.113.1:7000").Verdict.Reason);
        Assert.Equal(NatDropReason.NotForUs, h.In("198.51.100.7:5555", "203.0.113.99:7000").Verdict.Reason);
        Assert.Equal(NatDropReason.SourceNotInside, h.Out("10.9.9.9:1", "198.51.100.7:5555").Verdict.Reason);
    }

    [Theory]
    [InlineData(NatDirection.Outbound)]
    [InlineData(NatDirection.Inbound)]
    public void Ttl_IsDecremented_AndTimeExceededSentWhenItRunsOut(NatDirection direction)
    {
        using var h = new NatHarness(NatPresets.FullCone);
        var ext = h.Out(Host, "198.51.100.1:1000").Source.ToString();
        Seen Send(byte ttl) => direction == NatDirection.Outbound
            ? h.Udp(direction, Host, "198.51.100.1:1000", ttl: ttl)
            : h.Udp(direction, "198.51.100.1:1000", ext, ttl: ttl);
        var ok = Send(2);
        Assert.True(ok.Forwarded);
        Assert.True(Ipv4Packet.TryParse(ok.Bytes, out var ip));
        Assert.Equal(1, ip.Ttl);
        var dead = Send(1);
        Assert.Equal(NatDropReason.TtlExpired, dead.Verdict.Reason);
        var (bytes, side) = Assert.Single(h.Sink.Sent);
        Assert.Equal(direction == NatDirection.Outbound ? NatSide.Inside : NatSide.Outside, side);
        Assert.True(Ipv4Packet.TryParse(bytes, out var err));
        Assert.Equal(direction == NatDirection.Outbound ? Ipv4Address.Parse("192.168.1.1") : Ext1, err.Source);
        Assert.True(IcmpV4Message.TryParse(err.Payload, out var icmp));
        Assert.Equal(IcmpV4Type.TimeExceeded, icmp.Type);
        AssertChecksums(bytes);
    }

    [Theory]
    [InlineData(Ipv6Handling.Drop)]
    [InlineData(Ipv6Handling.PassThrough)]
    public void Ipv6_IsRecognised_AndHandledByTheStatedRule(Ipv6Handling rule)
    {
        using var h = new NatHarness(NatPresets.FullCone, tweak: c => c with { Ipv6 = rule });
        var packet = new byte[48];
        packet[0] = 0x60;
        var length = packet.Length;
        var v = h.Nat.Process(packet, ref length, NatDirection.Outbound, 0, null);
        if (rule == Ipv6Handling.Drop) Assert.Equal(NatVerdict.Drop(NatDropReason.Ipv6NotTranslated), v);
        else Assert.Equal(NatVerdict.Outside, v);
    }

    [Fact]
    public void Config_Validation_NamesTheBadField()
    {
        var config = new NatConfig { ExternalAddresses = [] };
        Assert.StartsWith("ExternalAddresses:", Assert.Single(config.Validate()), StringComparison.Ordinal);
        var bad = new NatConfig
        {
            ExternalAddresses = [Ext1],
            OutsideMtu = 20,
            Policy = NatPresets.RfcRecommended with { PortRangeStart = 5000, PortRangeEnd = 4000 },
        };
        var errors = bad.Validate();
        Assert.Contains(errors, e => e.StartsWith("OutsideMtu:", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("Policy.PortRangeEnd:", StringComparison.Ordinal));
        Assert.StartsWith("InitialFlowCapacity:", Assert.Single((new NatConfig { ExternalAddresses = [Ext1], MaxFlows = 100, InitialFlowCapacity = 200 }).Validate()), StringComparison.Ordinal);
        Assert.StartsWith("Policy.SharePortsAcrossDestinations:", Assert.Single((new NatConfig
        {
            ExternalAddresses = [Ext1],
            Policy = NatPresets.FullCone with { SharePortsAcrossDestinations = true },
        }).Validate()), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(null)]
    [InlineData(16)]
    public void TableFull_DropsNewFlows_KeepsOldOnes(int? initial)
    {
        using var h = new NatHarness(NatPresets.FullCone, tweak: c => c with { MaxFlows = 16, InitialFlowCapacity = initial });
        for (var i = 0; i < 16; i++) Assert.True(h.Out($"192.168.1.10:{1000 + i}", "198.51.100.1:1").Forwarded);
        Assert.Equal(NatDropReason.TableFull, h.Out("192.168.1.10:2000", "198.51.100.1:1").Verdict.Reason);
        Assert.True(h.Out("192.168.1.10:1000", "198.51.100.1:1").Forwarded);
    }

    [Fact]
    public void Timers_TwoHoursOfVirtualTime_KeepaliveHoldsTheMapping_SilenceLosesIt()
    {
        using var h = new NatHarness(NatPresets.FullCone);
        var ext = h.Out(Host, "198.51.100.1:1000").Source;
        h.Out("192.168.1.11:4000", "198.51.100.1:1000"); // a second flow that falls silent
        for (var t = 0; t < 2 * 3600; t += 10)
        {
            h.Advance(TimeSpan.FromSeconds(10));
            if (t % 240 == 0) Assert.Equal(ext, h.Out(Host, "198.51.100.1:1000").Source);
        }

        Assert.Equal(1, h.Nat.SessionCount);
        Assert.Equal(ext, h.Out(Host, "198.51.100.1:1000").Source);
    }

    [Fact]
    public void Rfc1812_BadHeaderChecksum_IsDropped()
    {
        using var h = new NatHarness(NatPresets.FullCone);
        var packet = BuildUdp(Host, "198.51.100.1:1000");
        packet[10] ^= 0x40;
        Assert.Equal(NatDropReason.BadHeaderChecksum, h.Run(packet, NatDirection.Outbound).Verdict.Reason);
        Assert.Equal(0, h.Nat.SessionCount);
    }

    [Fact]
    public void Metrics_ArePublishedUnderStableNames()
    {
        using var h = new NatHarness(NatPresets.FullCone);
        h.Out(Host, "198.51.100.1:1000");
        h.In("198.51.100.9:1", "203.0.113.1:9");
        var seen = new Dictionary<string, long>();
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter == h.Nat.Meter && instrument.Meter.Name == "NatKit.Nat") l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            var name = instrument.Name;
            foreach (var tag in tags) name += $"{{{tag.Key}={tag.Value}}}";
            seen[name] = value;
        });
        listener.SetMeasurementEventCallback<int>((instrument, value, _, _) => seen[instrument.Name] = value);
        listener.Start();
        listener.RecordObservableInstruments();
        Assert.Equal(1, seen["natkit.nat.packets.outbound"]);
        Assert.Equal(1, seen["natkit.nat.packets.inbound"]);
        Assert.Equal(1, seen["natkit.nat.packets.dropped{reason=NoMapping}"]);
        Assert.Equal(1, seen["natkit.nat.mappings.created"]);
        Assert.Equal(1, seen["natkit.nat.sessions.active"]);
    }

    [Fact]
    public void SameSeedSamePackets_SameExternalEndpoints()
    {
        static List<NatEndpoint> Run()
        {
            using var h = new NatHarness(NatPresets.Symmetric with { Pooling = AddressPooling.Paired }, externals: 4);
            var seen = new List<NatEndpoint>();
            for (var i = 0; i < 50; i++) seen.Add(h.Out($"192.168.1.{2 + (i % 7)}:{5000 + i}", $"198.51.100.{1 + (i % 3)}:443").Source);
            return seen;
        }

        Assert.Equal(Run(), Run()); // the table's secret hash key changes nothing observable
    }

    [Fact]
    public void Snapshot_ListsLiveSessions()
    {
        using var h = new NatHarness(NatPresets.FullCone);
        h.Out(Host, "198.51.100.1:1000");
        h.Tcp(NatDirection.Outbound, Host, "198.51.100.1:80", TcpFlags.Syn);
        var flows = h.Nat.SnapshotFlows();
        Assert.Equal(2, flows.Count);
        Assert.Contains(flows, f => f.Protocol == IpProtocol.Tcp && f.TcpState == NatTcpState.Opening && f.ExpiresAt == 240_000);
        Assert.Contains(flows, f => f.Protocol == IpProtocol.Udp && f.Remote == Ep("198.51.100.1:1000") && f.ExpiresAt == 300_000);
    }
}
