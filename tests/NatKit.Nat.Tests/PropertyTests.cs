using FsCheck;
using FsCheck.Fluent;
using NatKit.Packets;
using static NatKit.Nat.Tests.NatHarness;

namespace NatKit.Nat.Tests;

/// <summary>Properties: no bytes make the engine throw or corrupt its state; incremental checksums equal full
/// recomputation on translated packets.</summary>
public sealed class PropertyTests
{
    private static readonly Config Quick = Config.QuickThrowOnFailure.WithMaxTest(300);

    [Fact]
    public void RandomBytes_NeverThrow_AndAValidFlowStillTranslates()
    {
        foreach (var preset in NatPresets.All)
        {
            using var h = new NatHarness(preset.Policy, externals: 2, tweak: c => c with { DmzHost = Ipv4Address.Parse("192.168.1.99"), OutsideMtu = 300 });
            var ext = h.Out("192.168.1.10:4000", "198.51.100.1:1000").Source;
            Prop.ForAll(ArbMap.Default.ArbFor<byte[]>(), ArbMap.Default.ArbFor<bool>(), (bytes, outbound) =>
            {
                var buffer = bytes.ToArray();
                var length = buffer.Length;
                h.Nat.Process(buffer, ref length, outbound ? NatDirection.Outbound : NatDirection.Inbound, h.Now, h.Sink);
                return length <= buffer.Length;
            }).Check(Quick);
            Assert.Equal(ext, h.Out("192.168.1.10:4000", "198.51.100.1:1000").Source);
            Assert.Null(h.Nat.CheckInvariants());
        }
    }

    [Fact]
    public void MutatedPackets_NeverThrow_AndAValidFlowStillTranslates()
    {
        using var h = new NatHarness(NatPresets.RfcRecommended with { UnsolicitedSyn = UnsolicitedSynBehavior.HoldThenPortUnreachable, Filtering = FilteringBehavior.EndpointIndependent },
            tweak: c => c with { OutsideMtu = 200, InsideMtu = 200 });
        var ext = h.Out("192.168.1.10:4000", "198.51.100.1:1000").Source;
        var seeds = new List<byte[]>
        {
            BuildUdp("192.168.1.10:4000", "198.51.100.1:1000", payload: 300),
            BuildUdp("198.51.100.1:1000", ext.ToString(), payload: 30),
            BuildTcp("192.168.1.10:5000", "198.51.100.1:80", TcpFlags.Syn),
            BuildTcp("198.51.100.1:80", ext.ToString(), TcpFlags.Syn),
            BuildEcho("192.168.1.10", "198.51.100.1", 3),
            Rfc4787ConformanceTests.BuildError(BuildUdp(ext.ToString(), "198.51.100.1:1000"), "198.51.100.254", IcmpV4Type.DestinationUnreachable, 3),
            Rfc4787ConformanceTests.Split(BuildUdp("192.168.1.10:4000", "198.51.100.1:1000", payload: 100, id: 4), 48).Second,
        };
        var gen = from seed in Gen.Elements(seeds.ToArray())
                  from edits in Gen.ArrayOf(Gen.Zip(Gen.Choose(0, 400), ArbMap.Default.GeneratorFor<byte>()))
                  from cut in Gen.Choose(0, 450)
                  from outbound in ArbMap.Default.GeneratorFor<bool>()
                  from fixHeader in ArbMap.Default.GeneratorFor<bool>()
                  select (seed, edits, cut, outbound, fixHeader);
        Prop.ForAll(gen.ToArbitrary(), t =>
        {
            var buffer = t.seed.ToArray();
            foreach (var (at, value) in t.edits)
            {
                if (at < buffer.Length) buffer[at] = value;
            }

            var length = Math.Min(buffer.Length, t.cut);
            if (t.fixHeader && Ipv4Packet.TryParseQuoted(buffer.AsSpan(0, length), out var ip))
            {
                ip.FillHeaderChecksum(); // reach past the header check half of the time
            }

            h.Nat.Process(buffer, ref length, t.outbound ? NatDirection.Outbound : NatDirection.Inbound, h.Now, h.Sink);
            h.AdvanceMs(50);
            Assert.Null(h.Nat.CheckInvariants());
        }).Check(Quick);
        h.Advance(TimeSpan.FromSeconds(20));
        var again = h.Out("192.168.1.10:4000", "198.51.100.1:1000");
        Assert.True(again.Forwarded);
        AssertChecksums(again.Bytes);
    }

    [Fact]
    public void IncrementalChecksums_EqualFullRecomputation_OnTranslatedPackets()
    {
        using var h = new NatHarness(NatPresets.Symmetric with { PortParity = false }, externals: 3, tweak: c => c with { MaxFlows = 100_000 });
        var gen = from host in Gen.Choose(2, 250)
                  from sport in Gen.Choose(1, 65535)
                  from remote in Gen.Choose(1, 250)
                  from dport in Gen.Choose(1, 65535)
                  from payload in Gen.Choose(0, 64)
                  from tcp in ArbMap.Default.GeneratorFor<bool>()
                  select (host, sport, remote, dport, payload, tcp);
        Prop.ForAll(gen.ToArbitrary(), t =>
        {
            var from = $"192.168.1.{t.host}:{t.sport}";
            var to = $"198.51.100.{t.remote}:{t.dport}";
            var packet = t.tcp ? BuildTcp(from, to, TcpFlags.Syn, t.payload, seq: (uint)t.sport * 7919) : BuildUdp(from, to, t.payload);
            var seen = h.Run(packet, NatDirection.Outbound);
            if (!seen.Forwarded) return;
            AssertChecksums(seen.Bytes);
            var back = t.tcp ? BuildTcp(to, seen.Source.ToString(), TcpFlags.Syn | TcpFlags.Ack, t.payload) : BuildUdp(to, seen.Source.ToString(), t.payload);
            var reply = h.Run(back, NatDirection.Inbound);
            Assert.Equal(Ep(from), reply.Destination);
            AssertChecksums(reply.Bytes);
        }).Check(Quick);
        Assert.Null(h.Nat.CheckInvariants());
    }

    [Fact]
    public void Churn_CreateRefreshExpireEvict_KeepsTheTablesConsistent()
    {
        foreach (var policy in new[]
                 {
                     NatPresets.RfcRecommended, NatPresets.Symmetric, NatPresets.LinuxMasquerade,
                     NatPresets.FullCone with { PortAssignment = PortAssignment.Overloading, Hairpinning = HairpinBehavior.InternalSource },
                     NatPresets.RestrictedCone with { Mapping = MappingBehavior.AddressDependent, PortAssignment = PortAssignment.Sequential, Hairpinning = HairpinBehavior.ExternalSource },
                 })
        {
            using var h = new NatHarness(policy with { PortRangeStart = 40000, PortRangeEnd = 40063, PortParity = false }, externals: 2,
                tweak: c => c with
                {
                    MaxFlows = 64,
                    DmzHost = Ipv4Address.Parse("192.168.1.99"),
                    StaticForwards = [new StaticForward(IpProtocol.Udp, 40001, Ipv4Address.Parse("192.168.1.3"), 40001)],
                });
            var gen = from kind in Gen.Choose(0, 6)
                      from host in Gen.Choose(2, 6)
                      from port in Gen.Choose(40000, 40007)
                      from remote in Gen.Choose(1, 3)
                      from rport in Gen.Choose(1, 3)
                      from wait in Gen.Choose(0, 200)
                      select (kind, host, port, remote, rport, wait);
            Prop.ForAll(gen.ToArbitrary(), t =>
            {
                var inside = $"192.168.1.{t.host}:{t.port}";
                var remote = $"198.51.100.{t.remote}:{t.rport}";
                switch (t.kind)
                {
                    case 0: h.Out(inside, remote); break;
                    case 1: h.In(remote, $"203.0.113.{1 + (t.host % 2)}:{t.port}"); break;
                    case 2: h.Tcp(NatDirection.Outbound, inside, remote, TcpFlags.Syn); break;
                    case 3: h.Tcp(NatDirection.Inbound, remote, $"203.0.113.1:{t.port}", TcpFlags.Fin | TcpFlags.Ack); break;
                    case 4: h.Echo(NatDirection.Outbound, $"192.168.1.{t.host}", $"198.51.100.{t.remote}", (ushort)t.port); break;
                    case 5: h.Out(inside, $"203.0.113.{t.remote % 2 + 1}:{40000 + t.rport}"); break; // hairpin
                    default: h.Advance(TimeSpan.FromSeconds(t.wait)); break;
                }

                Assert.Null(h.Nat.CheckInvariants());
            }).Check(Config.QuickThrowOnFailure.WithMaxTest(500));
        }
    }
}

/// <summary>RFC 768/1624 at the edge where a chained update goes wrong: a UDP checksum whose address-only patch
/// would come out 0 must not be read as "no checksum" by the port patch that follows.</summary>
public sealed class UdpChecksumEdgeTests
{
    [Theory]
    [InlineData(4000)] // port kept: only the address changes
    [InlineData(4001)] // port changed too (parity keeps odd ports odd; the preset may still move it)
    public void Rfc768_UdpChecksum_WhoseAddressOnlyPatchIsZero_StaysAValidChecksum(int sourcePort)
    {
        using var h = new NatHarness(NatPresets.FullCone);
        var inside = Ipv4Address.Parse("192.168.1.10");
        var remote = Ipv4Address.Parse("198.51.100.1");

        // Search the 2-byte payload for a packet whose checksum, patched for the address alone, is 0.
        byte[]? packet = null;
        for (var w = 0; w <= 0xFFFF && packet is null; w++)
        {
            var buffer = new byte[20 + 8 + 2];
            var n = PacketBuilder.WriteIpv4Udp(buffer, new Ipv4Header(inside, remote), (ushort)sourcePort, 1000,
                [(byte)(w >> 8), (byte)w]);
            Assert.True(Ipv4Packet.TryParse(buffer.AsSpan(0, n), out var ip));
            Assert.True(UdpDatagram.TryParse(ip.Payload, out var udp));
            if (Checksum.Update(udp.Checksum, inside, NatHarness.Ext1) == 0)
            {
                packet = buffer[..n];
            }
        }

        Assert.NotNull(packet);
        var seen = h.Run(packet, NatDirection.Outbound);

        Assert.True(seen.Forwarded);
        Assert.True(Ipv4Packet.TryParse(seen.Bytes, out var outIp));
        Assert.True(UdpDatagram.TryParse(outIp.Payload, out var outUdp));
        Assert.NotEqual(0, outUdp.Checksum); // 0 would mean "no checksum": protection silently lost
        Assert.True(outUdp.IsChecksumValid(outIp.Source, outIp.Destination));
    }
}
