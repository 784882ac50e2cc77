using NatKit.Packets;
using static NatKit.Nat.Tests.NatHarness;

namespace NatKit.Nat.Tests;

/// <summary>RFC 4787 (UDP), one row per requirement and knob value.</summary>
public sealed class Rfc4787ConformanceTests
{
    private const string Host = "192.168.1.10:4000";
    private const string Host2 = "192.168.1.11:4000";

    [Theory]
    [InlineData(MappingBehavior.EndpointIndependent)]
    [InlineData(MappingBehavior.AddressDependent)]
    [InlineData(MappingBehavior.AddressAndPortDependent)]
    public void Rfc4787_Req1_Mapping(MappingBehavior mapping)
    {
        using var h = new NatHarness(NatPresets.RfcRecommended with { Mapping = mapping });
        var a = h.Out(Host, "198.51.100.1:1000").Source;
        var b = h.Out(Host, "198.51.100.1:2000").Source;
        var c = h.Out(Host, "198.51.100.2:1000").Source;
        Assert.Equal(Ext1, a.Address);
        Assert.Equal(mapping != MappingBehavior.AddressAndPortDependent, a == b);
        Assert.Equal(mapping == MappingBehavior.EndpointIndependent, a == c);
    }

    [Theory]
    [InlineData(FilteringBehavior.EndpointIndependent, true, true)]
    [InlineData(FilteringBehavior.AddressDependent, true, false)]
    [InlineData(FilteringBehavior.AddressAndPortDependent, false, false)]
    public void Rfc4787_Req8_Filtering(FilteringBehavior filtering, bool otherPortAllowed, bool otherAddressAllowed)
    {
        using var h = new NatHarness(NatPresets.RfcRecommended with { Filtering = filtering });
        var ext = h.Out(Host, "198.51.100.1:1000").Source.ToString();
        Assert.Equal(NatAction.ForwardInside, h.In("198.51.100.1:1000", ext).Verdict.Action);
        var otherAddress = h.In("198.51.100.2:1000", ext);
        var otherPort = h.In("198.51.100.1:2000", ext);
        Assert.Equal(otherAddressAllowed, otherAddress.Forwarded);
        Assert.Equal(otherPortAllowed, otherPort.Forwarded);
        if (!otherPortAllowed) Assert.Equal(NatDropReason.Filtered, otherPort.Verdict.Reason);
        if (otherPort.Forwarded) Assert.Equal(Ep(Host), otherPort.Destination);
    }

    [Fact]
    public void Rfc4787_Req3_PortAssignment_Preserving_KeepsPortUnlessItCollides()
    {
        using var h = new NatHarness(NatPresets.RfcRecommended);
        Assert.Equal(4000, h.Out(Host, "198.51.100.1:1000").Source.Port);
        var second = h.Out(Host2, "198.51.100.1:1000").Source.Port;
        Assert.NotEqual(4000, second);
        Assert.Equal(0, second & 1); // REQ-4 parity kept on the fallback
    }

    [Fact]
    public void Rfc4787_Req3_PortAssignment_Random_DoesNotTryToPreserve()
    {
        using var h = new NatHarness(NatPresets.RfcRecommended with { PortAssignment = PortAssignment.Random, PortParity = false });
        var ports = new HashSet<int>();
        var kept = 0;
        for (var i = 0; i < 20; i++)
        {
            var p = h.Out($"192.168.1.10:{40000 + i}", "198.51.100.1:1000").Source.Port;
            ports.Add(p);
            if (p == 40000 + i) kept++;
            Assert.InRange(p, 1024, 65535);
        }

        Assert.Equal(20, ports.Count);
        Assert.True(kept < 3);
    }

    [Fact]
    public void Rfc4787_Req3_PortAssignment_Overloading_EvictsTheOlderMapping()
    {
        using var h = new NatHarness(NatPresets.FullCone with { PortAssignment = PortAssignment.Overloading });
        Assert.Equal(4000, h.Out(Host, "198.51.100.1:1000").Source.Port);
        Assert.Equal(4000, h.Out(Host2, "198.51.100.2:1000").Source.Port);
        var reply = h.In("198.51.100.1:1000", "203.0.113.1:4000");
        Assert.Equal(Ep(Host2), reply.Destination); // the first host's mapping is gone
    }

    [Fact]
    public void Rfc4787_Req3_PortAssignment_Sequential_HandsOutConsecutivePorts()
    {
        using var h = new NatHarness(NatPresets.RfcRecommended with { PortAssignment = PortAssignment.Sequential, PortParity = false, PortRangeStart = 20000 });
        var a = h.Out("192.168.1.10:5", "198.51.100.1:1000").Source.Port;
        var b = h.Out("192.168.1.10:6", "198.51.100.1:1000").Source.Port;
        var c = h.Out("192.168.1.11:5", "198.51.100.1:1000").Source.Port;
        Assert.Equal(20000, a);
        Assert.Equal(20001, b);
        Assert.Equal(20002, c);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Rfc4787_Req4_PortParity(bool parity)
    {
        using var h = new NatHarness(NatPresets.RfcRecommended with { PortAssignment = PortAssignment.Random, PortParity = parity });
        var mismatches = 0;
        for (var i = 0; i < 40; i++)
        {
            var inside = 30001 + i;
            var p = h.Out($"192.168.1.10:{inside}", "198.51.100.1:1000").Source.Port;
            if ((p & 1) != (inside & 1)) mismatches++;
        }

        if (parity) Assert.Equal(0, mismatches);
        else Assert.True(mismatches > 5);
    }

    [Theory]
    [InlineData(AddressPooling.Paired)]
    [InlineData(AddressPooling.Arbitrary)]
    [InlineData(AddressPooling.SoftPaired)]
    public void Rfc4787_Req2_Pooling(AddressPooling pooling)
    {
        using var h = new NatHarness(NatPresets.RfcRecommended with { Pooling = pooling }, externals: 2);
        var addresses = new HashSet<Ipv4Address>();
        for (var i = 0; i < 6; i++) addresses.Add(h.Out($"192.168.1.10:{5000 + i}", "198.51.100.1:1000").Source.Address);
        Assert.Equal(pooling == AddressPooling.Arbitrary ? 2 : 1, addresses.Count);
    }

    [Fact]
    public void Rfc4787_Req2_Pooling_Paired_DropsWhenThePairedAddressIsFull()
    {
        using var h = new NatHarness(NatPresets.RfcRecommended with { Pooling = AddressPooling.Paired, PortParity = false, PortRangeStart = 20000, PortRangeEnd = 20001 }, externals: 2);
        var first = h.Out("192.168.1.10:5000", "198.51.100.1:1000").Source.Address;
        Assert.Equal(first, h.Out("192.168.1.10:5001", "198.51.100.1:1000").Source.Address);
        Assert.Equal(NatDropReason.PortsExhausted, h.Out("192.168.1.10:5002", "198.51.100.1:1000").Verdict.Reason);
    }

    [Fact]
    public void Rfc4787_Req2_Pooling_SoftPaired_FallsBackToAnotherAddress()
    {
        using var h = new NatHarness(NatPresets.RfcRecommended with { Pooling = AddressPooling.SoftPaired, PortParity = false, PortRangeStart = 20000, PortRangeEnd = 20001 }, externals: 2);
        var first = h.Out("192.168.1.10:5000", "198.51.100.1:1000").Source.Address;
        h.Out("192.168.1.10:5001", "198.51.100.1:1000");
        var third = h.Out("192.168.1.10:5002", "198.51.100.1:1000");
        Assert.True(third.Forwarded);
        Assert.NotEqual(first, third.Source.Address);
    }

    [Fact]
    public void Rfc4787_Req5_UdpTimer_Default300s()
    {
        using var h = new NatHarness(NatPresets.FullCone);
        var ext = h.Out(Host, "198.51.100.1:1000").Source.ToString();
        h.Advance(TimeSpan.FromSeconds(299));
        Assert.True(h.In("198.51.100.1:1000", ext).Forwarded); // inbound does not refresh (outbound refresh)
        h.Advance(TimeSpan.FromSeconds(1.5));
        Assert.Equal(NatDropReason.NoMapping, h.In("198.51.100.1:1000", ext).Verdict.Reason);
        Assert.Equal(0, h.Nat.SessionCount);
    }

    [Fact]
    public void Rfc4787_Req5_UdpTimerBelow120s_IsRejectedUnlessForced()
    {
        var policy = NatPresets.RfcRecommended with { UdpTimeout = TimeSpan.FromSeconds(60) };
        var errors = policy.Validate();
        Assert.Single(errors);
        Assert.StartsWith("UdpTimeout:", errors[0], StringComparison.Ordinal);
        Assert.Empty((policy with { AllowShortUdpTimeout = true }).Validate());
        var e = Assert.Throws<ArgumentException>(() => new NatHarness(policy));
        Assert.Contains("Policy.UdpTimeout", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(RefreshDirection.Outbound, true, false)]
    [InlineData(RefreshDirection.Inbound, false, true)]
    [InlineData(RefreshDirection.Both, true, true)]
    public void Rfc4787_Req6_Refresh(RefreshDirection refresh, bool outboundRefreshes, bool inboundRefreshes)
    {
        foreach (var outbound in new[] { true, false })
        {
            using var h = new NatHarness(NatPresets.FullCone with { Refresh = refresh });
            var ext = h.Out(Host, "198.51.100.1:1000").Source.ToString();
            for (var i = 0; i < 5; i++)
            {
                h.Advance(TimeSpan.FromSeconds(100));
                if (outbound) h.Out(Host, "198.51.100.1:1000");
                else h.In("198.51.100.1:1000", ext);
            }

            // 500 s after creation: the first session is alive only if the direction used refreshes.
            var alive = h.Nat.SessionCount == 1 && h.Nat.Counters.SessionsCreated == 1;
            Assert.Equal(outbound ? outboundRefreshes : inboundRefreshes, alive);
        }
    }

    [Theory]
    [InlineData(HairpinBehavior.None)]
    [InlineData(HairpinBehavior.InternalSource)]
    [InlineData(HairpinBehavior.ExternalSource)]
    public void Rfc4787_Req9_Hairpinning(HairpinBehavior hairpin)
    {
        using var h = new NatHarness(NatPresets.FullCone with { Hairpinning = hairpin });
        var ext1 = h.Out(Host, "198.51.100.1:1000").Source;
        var ext2 = h.Out("192.168.1.11:6000", "198.51.100.1:1000").Source;
        var seen = h.Out(Host, ext2.ToString());
        if (hairpin == HairpinBehavior.None)
        {
            Assert.Equal(NatVerdict.Drop(NatDropReason.HairpinDisabled), seen.Verdict);
            return;
        }

        Assert.Equal(NatAction.ForwardInside, seen.Verdict.Action);
        Assert.Equal(Ep("192.168.1.11:6000"), seen.Destination);
        Assert.Equal(hairpin == HairpinBehavior.ExternalSource ? ext1 : Ep(Host), seen.Source);
        AssertChecksums(seen.Bytes);
        if (hairpin == HairpinBehavior.ExternalSource)
        {
            // The answer hairpins back to the first host, from the second's external endpoint.
            var back = h.Out("192.168.1.11:6000", ext1.ToString());
            Assert.Equal(Ep(Host), back.Destination);
            Assert.Equal(ext2, back.Source);
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Rfc4787_Req12_IcmpErrorTranslation(bool translate)
    {
        using var h = new NatHarness(NatPresets.FullCone with { TranslateIcmpErrors = translate });
        var sent = h.Out(Host, "198.51.100.1:1000");
        var error = BuildError(sent.Bytes, "198.51.100.254", IcmpV4Type.DestinationUnreachable, 3);
        var seen = h.Run(error, NatDirection.Inbound);
        if (!translate)
        {
            Assert.Equal(NatDropReason.IcmpErrorsDisabled, seen.Verdict.Reason);
            return;
        }

        Assert.Equal(NatAction.ForwardInside, seen.Verdict.Action);
        Assert.Equal(Ep(Host).Address, seen.Destination.Address);
    }

    [Fact]
    public void Rfc4787_Req13_DontFragmentOverMtu_SendsFragmentationNeeded()
    {
        using var h = new NatHarness(NatPresets.FullCone, tweak: c => c with { OutsideMtu = 576 });
        var seen = h.Udp(NatDirection.Outbound, Host, "198.51.100.1:1000", payload: 1000, df: true);
        Assert.Equal(NatDropReason.FragmentationNeeded, seen.Verdict.Reason);
        var (bytes, side) = Assert.Single(h.Sink.Sent);
        Assert.Equal(NatSide.Inside, side);
        Assert.True(Ipv4Packet.TryParse(bytes, out var ip));
        Assert.Equal(Ep(Host).Address, ip.Destination);
        Assert.True(IcmpV4Message.TryParse(ip.Payload, out var icmp));
        Assert.Equal(IcmpV4Type.DestinationUnreachable, icmp.Type);
        Assert.Equal(4, icmp.Code);
        Assert.Equal(576, icmp.NextHopMtu);
        AssertChecksums(bytes);
        Assert.Equal(0, h.Nat.SessionCount); // no mapping for a packet that was not forwarded
    }

    [Fact]
    public void Rfc4787_Req13_OverMtuWithoutDf_IsFragmented()
    {
        using var h = new NatHarness(NatPresets.FullCone, tweak: c => c with { OutsideMtu = 576 });
        var seen = h.Udp(NatDirection.Outbound, Host, "198.51.100.1:1000", payload: 1400);
        Assert.Equal(NatAction.Consumed, seen.Verdict.Action);
        Assert.Equal(3, h.Sink.Sent.Count);
        var total = 0;
        foreach (var (bytes, side) in h.Sink.Sent)
        {
            Assert.Equal(NatSide.Outside, side);
            Assert.True(bytes.Length <= 576);
            Assert.True(Ipv4Packet.TryParse(bytes, out var ip));
            Assert.True(ip.IsHeaderChecksumValid);
            Assert.Equal(Ext1, ip.Source);
            Assert.Equal(total, ip.FragmentOffset);
            total += ip.Payload.Length;
        }

        Assert.Equal(8 + 1400, total);
    }

    [Fact]
    public void Rfc4787_Req14_FragmentsOutOfOrder_AreHeldUntilTheFirstArrives()
    {
        using var h = new NatHarness(NatPresets.FullCone);
        var whole = BuildUdp(Host, "198.51.100.1:1000", payload: 1200, id: 77);
        var (first, second) = Split(whole, 600);
        var early = h.Run(second, NatDirection.Outbound);
        Assert.Equal(NatAction.Consumed, early.Verdict.Action);
        Assert.Empty(h.Sink.Sent);
        var head = h.Run(first, NatDirection.Outbound);
        Assert.Equal(NatAction.ForwardOutside, head.Verdict.Action);
        Assert.Equal(Ext1, head.Source.Address);
        var (released, side) = Assert.Single(h.Sink.Sent);
        Assert.Equal(NatSide.Outside, side);
        Assert.Equal(Ext1, Source(released).Address);
        Assert.True(ReassembledChecksumValid(head.Bytes, released)); // reassembled datagram's UDP checksum holds
    }

    [Fact]
    public void Rfc4787_Req14_FragmentsInOrder_FollowTheFirst_BothDirections()
    {
        using var h = new NatHarness(NatPresets.FullCone);
        var ext = h.Out(Host, "198.51.100.1:1000").Source;
        var whole = BuildUdp("198.51.100.1:1000", ext.ToString(), payload: 1200, id: 9);
        var (first, second) = Split(whole, 600);
        var a = h.Run(first, NatDirection.Inbound);
        var b = h.Run(second, NatDirection.Inbound);
        Assert.Equal(NatAction.ForwardInside, a.Verdict.Action);
        Assert.Equal(NatAction.ForwardInside, b.Verdict.Action);
        Assert.Equal(Ep(Host), a.Destination);
        Assert.Equal(Ep(Host).Address, b.Destination.Address);
        Assert.True(ReassembledChecksumValid(a.Bytes, b.Bytes));
    }

    [Fact]
    public void Rfc4787_Req14_HeldFragments_AreBoundedAndExpire()
    {
        using var h = new NatHarness(NatPresets.FullCone, tweak: c => c with { MaxHeldFragments = 2 });
        for (var i = 0; i < 2; i++)
        {
            var (_, tail) = Split(BuildUdp(Host, "198.51.100.1:1000", payload: 1200, id: (ushort)i), 600);
            Assert.Equal(NatAction.Consumed, h.Run(tail, NatDirection.Outbound).Verdict.Action);
        }

        var (_, third) = Split(BuildUdp(Host, "198.51.100.1:1000", payload: 1200, id: 5), 600);
        Assert.Equal(NatDropReason.FragmentDropped, h.Run(third, NatDirection.Outbound).Verdict.Reason);
        h.Advance(TimeSpan.FromSeconds(16));
        Assert.Equal(NatAction.Consumed, h.Run(third, NatDirection.Outbound).Verdict.Action); // room again
        Assert.Equal(3, h.Nat.DropCount(NatDropReason.FragmentDropped)); // one refused, two expired
    }

    // ---- helpers ----

    internal static byte[] BuildError(byte[] quoted, string from, IcmpV4Type type, byte code)
    {
        Assert.True(Ipv4Packet.TryParse(quoted, out var ip));
        var buffer = new byte[600];
        var n = PacketBuilder.WriteIpv4IcmpError(buffer, new Ipv4Header(Ipv4Address.Parse(from), ip.Source), type, code, 0, quoted);
        return buffer[..n];
    }

    /// <summary>Splits an unfragmented datagram into two fragments at <paramref name="at"/> payload bytes.</summary>
    internal static (byte[] First, byte[] Second) Split(byte[] whole, int at)
    {
        Assert.True(Ipv4Packet.TryParse(whole, out var ip));
        var hl = ip.HeaderLength;
        var payload = ip.Payload.ToArray();
        var header = ip.Header.ToArray();
        byte[] Make(int offset, int length, bool more)
        {
            var b = new byte[hl + length];
            header.CopyTo(b, 0);
            payload.AsSpan(offset, length).CopyTo(b.AsSpan(hl));
            Assert.True(Ipv4Packet.TryParseQuoted(b, out var f));
            f.TotalLength = (ushort)b.Length;
            f.FlagsAndFragmentOffset = (ushort)((offset / 8) | (more ? 0x2000 : 0));
            f.FillHeaderChecksum();
            return b;
        }

        return (Make(0, at, true), Make(at, payload.Length - at, false));
    }

    /// <summary>Puts two fragments' payloads back together and checks the UDP checksum by full recomputation.</summary>
    private static bool ReassembledChecksumValid(byte[] first, byte[] second)
    {
        Assert.True(Ipv4Packet.TryParse(first, out var a));
        Assert.True(Ipv4Packet.TryParse(second, out var b));
        Assert.Equal(a.Source, b.Source);
        Assert.Equal(a.Destination, b.Destination);
        byte[] udpBytes = [.. a.Payload, .. b.Payload];
        Assert.True(UdpDatagram.TryParse(udpBytes, out var udp));
        return udp.IsChecksumValid(a.Source, a.Destination);
    }
}
