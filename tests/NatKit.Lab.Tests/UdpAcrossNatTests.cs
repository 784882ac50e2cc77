using System.Net;
using System.Text;
using NatKit.Lab.Scheduling;
using NatKit.Nat;
using NatKit.Packets;
using static NatKit.Lab.Tests.LabFixture;

namespace NatKit.Lab.Tests;

public sealed class UdpAcrossNatTests
{
    [Fact]
    public void Rfc4787_Req1_FullConeAndSymmetric_TranslateAsTheirPoliciesSay()
    {
        var lab = TwoHomes(NatPresets.FullCone, NatPresets.Symmetric);
        var natA = lab.Router("nat-a");
        var natB = lab.Router("nat-b");
        lab.Run(async () =>
        {
            var server = lab.Host("server");
            var s1 = await Bind(server, Server1, 3478);
            var s2 = await Bind(server, Server2, 3478);
            var alice = await Bind(lab.Host("alice"), 40000);
            var bob = await Bind(lab.Host("bob"), 40000);

            // Each client sends to both server addresses; the server sees the translated sources.
            await alice.SendToAsync("a1"u8.ToArray(), new IPEndPoint(Server1, 3478));
            await alice.SendToAsync("a2"u8.ToArray(), new IPEndPoint(Server2, 3478));
            await bob.SendToAsync("b1"u8.ToArray(), new IPEndPoint(Server1, 3478));
            await bob.SendToAsync("b2"u8.ToArray(), new IPEndPoint(Server2, 3478));
            var seenBy1 = new[] { (await ReceiveOrTimeout(s1, lab.TimeProvider, TimeSpan.FromSeconds(1)))!.Value, (await ReceiveOrTimeout(s1, lab.TimeProvider, TimeSpan.FromSeconds(1)))!.Value };
            var seenBy2 = new[] { (await ReceiveOrTimeout(s2, lab.TimeProvider, TimeSpan.FromSeconds(1)))!.Value, (await ReceiveOrTimeout(s2, lab.TimeProvider, TimeSpan.FromSeconds(1)))!.Value };
            var a1 = seenBy1.Single(x => x.Data[0] == 'a').From;
            var a2 = seenBy2.Single(x => x.Data[0] == 'a').From;
            var b1 = seenBy1.Single(x => x.Data[0] == 'b').From;
            var b2 = seenBy2.Single(x => x.Data[0] == 'b').From;

            // Full cone: one endpoint-independent mapping on the NAT's address, source port preserved.
            Assert.Equal(new IPEndPoint(IPAddress.Parse("198.51.100.1"), 40000), a1);
            Assert.Equal(a1, a2);

            // Symmetric: a mapping per destination, random ports, on the NAT's address.
            Assert.Equal(IPAddress.Parse("198.51.100.2"), b1.Address);
            Assert.Equal(IPAddress.Parse("198.51.100.2"), b2.Address);
            Assert.NotEqual(b1.Port, b2.Port);

            // Each translation is the one the engine recorded.
            var inA = new NatEndpoint(Ipv4Address.Parse("192.168.1.10"), 40000);
            Assert.Equal(a1.Port, natA.Engine.FindExternal(IpProtocol.Udp, inA, new(Ipv4Address.Parse("203.0.113.100"), 3478))!.Value.Port);
            var inB = new NatEndpoint(Ipv4Address.Parse("10.0.0.10"), 40000);
            Assert.Equal(b2.Port, natB.Engine.FindExternal(IpProtocol.Udp, inB, new(Ipv4Address.Parse("203.0.113.101"), 3478))!.Value.Port);

            // Filtering (REQ-8): full cone lets the other server address in; symmetric does not.
            await s2.SendToAsync("x"u8.ToArray(), a1);
            await s2.SendToAsync("y"u8.ToArray(), b1);
            var atAlice = await ReceiveOrTimeout(alice, lab.TimeProvider, TimeSpan.FromSeconds(1));
            var atBob = await ReceiveOrTimeout(bob, lab.TimeProvider, TimeSpan.FromSeconds(1));
            Assert.Equal("x", Encoding.ASCII.GetString(atAlice!.Value.Data));
            Assert.Equal(new IPEndPoint(Server2, 3478), atAlice.Value.From);
            Assert.Null(atBob);
            Assert.Equal(1, natB.Engine.DropCount(NatDropReason.Filtered));

            // The answer from the address bob did send to gets through.
            await s1.SendToAsync("z"u8.ToArray(), b1);
            var answer = await ReceiveOrTimeout(bob, lab.TimeProvider, TimeSpan.FromSeconds(1));
            Assert.Equal(new IPEndPoint(Server1, 3478), answer!.Value.From);
        });
    }

    [Fact]
    public void DoubleNat_EachRouterTranslates_AndRepliesFindTheirWayBack()
    {
        var lab = new VirtualNetwork(7);
        var internet = lab.AddSegment("internet");
        var carrier = lab.AddSegment("carrier", "100.64.0.0/10");
        var home = lab.AddSegment("home", "192.168.1.0/24");
        var cgnat = lab.AddRouter("cgnat", NatPresets.TailscaleEasy, carrier, "100.64.0.1", internet, "198.51.100.9");
        var homeNat = lab.AddRouter("home-nat", NatPresets.PortRestrictedCone, home, "192.168.1.1", carrier, "100.64.0.2");
        var server = lab.AddHost("server", internet, "203.0.113.100");
        var alice = lab.AddHost("alice", home, "192.168.1.10");
        var (seen, reply) = lab.Run(async () =>
        {
            var s = await Bind(server, 3478);
            var a = await Bind(alice, 50000);
            await a.SendToAsync("hi"u8.ToArray(), new IPEndPoint(Server1, 3478));
            var got = (await ReceiveOrTimeout(s, lab.TimeProvider, TimeSpan.FromSeconds(1)))!.Value;
            await s.SendToAsync("back"u8.ToArray(), got.From);
            var back = await ReceiveOrTimeout(a, lab.TimeProvider, TimeSpan.FromSeconds(1));
            return (got.From, back);
        });

        // Home NAT: 192.168.1.10:50000 -> 100.64.0.2:50000 (port preserved); CGNAT ("easy"): a random port in
        // 32768-65535 on its public address.
        var remote = new NatEndpoint(Ipv4Address.Parse("203.0.113.100"), 3478);
        var first = homeNat.Engine.FindExternal(IpProtocol.Udp, new(Ipv4Address.Parse("192.168.1.10"), 50000), remote)!.Value;
        Assert.Equal(new NatEndpoint(Ipv4Address.Parse("100.64.0.2"), 50000), first);
        var second = cgnat.Engine.FindExternal(IpProtocol.Udp, first, remote)!.Value;
        Assert.Equal(Ipv4Address.Parse("198.51.100.9"), second.Address);
        Assert.InRange(second.Port, 32768, 65535);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("198.51.100.9"), second.Port), seen);
        Assert.Equal(new IPEndPoint(Server1, 3478), reply!.Value.From);
    }

    [Fact]
    public void Rfc4787_Req9_Hairpinning_ExternalSource_IsObservableBetweenTwoHostsBehindOneNat()
    {
        // Endpoint-independent filtering, so the filter does not hide the hairpin (with ADF, alan would first
        // have to send to alice's mapped address).
        var lab = TwoHomes(NatPresets.RfcRecommended with { Filtering = FilteringBehavior.EndpointIndependent },
            NatPresets.FullCone);
        var from = lab.Run(async () =>
        {
            var s = await Bind(lab.Host("server"), Server1, 3478);
            var alice = await Bind(lab.Host("alice"), 40000);
            var alan = await Bind(lab.Host("alan"), 40001);
            await alan.SendToAsync("x"u8.ToArray(), new IPEndPoint(Server1, 3478));
            var alanOutside = (await ReceiveOrTimeout(s, lab.TimeProvider, TimeSpan.FromSeconds(1)))!.Value.From;
            await alice.SendToAsync("hairpin"u8.ToArray(), alanOutside);
            return (await ReceiveOrTimeout(alan, lab.TimeProvider, TimeSpan.FromSeconds(1)))!.Value.From;
        });

        // External source: alan sees alice's mapped address, not her LAN address.
        Assert.Equal(IPAddress.Parse("198.51.100.1"), from.Address);
    }

    [Fact]
    public void Rfc4787_Req9_NoHairpinning_DropsTheHairpinAttempt()
    {
        var lab = TwoHomes(NatPresets.FullCone, NatPresets.FullCone);
        var got = lab.Run(async () =>
        {
            var s = await Bind(lab.Host("server"), Server1, 3478);
            var alice = await Bind(lab.Host("alice"), 40000);
            var alan = await Bind(lab.Host("alan"), 40001);
            await alan.SendToAsync("x"u8.ToArray(), new IPEndPoint(Server1, 3478));
            var alanOutside = (await ReceiveOrTimeout(s, lab.TimeProvider, TimeSpan.FromSeconds(1)))!.Value.From;
            await alice.SendToAsync("hairpin"u8.ToArray(), alanOutside);
            return await ReceiveOrTimeout(alan, lab.TimeProvider, TimeSpan.FromSeconds(1));
        });
        Assert.Null(got);
        Assert.Equal(1, lab.Router("nat-a").Engine.DropCount(NatDropReason.HairpinDisabled));
    }

    [Fact]
    public void Rfc4787_Req5_MappingsExpireOnSchedule_OverTwoHoursOfVirtualTime()
    {
        // RFC recommended: UDP mappings live 300 s after the last outbound packet (REQ-5, REQ-6 outbound refresh).
        var lab = TwoHomes(NatPresets.RfcRecommended, NatPresets.RfcRecommended);
        var log = new MappingLog();
        var nat = lab.Router("nat-a");
        nat.Engine.Observer = log;
        var (before, after) = lab.Run(async () =>
        {
            var s = await Bind(lab.Host("server"), Server1, 3478);
            var alice = await Bind(lab.Host("alice"), 40000);

            // Keepalives every 60 s for one hour hold the mapping ...
            for (var i = 0; i <= 60; i++)
            {
                await alice.SendToAsync("k"u8.ToArray(), new IPEndPoint(Server1, 3478));
                await Task.Delay(TimeSpan.FromSeconds(60), lab.TimeProvider);
            }

            var mapped = (await ReceiveOrTimeout(s, lab.TimeProvider, TimeSpan.Zero))!.Value.From;

            // ... then silence for the rest of the two hours.
            await Task.Delay(TimeSpan.FromHours(2) - lab.Now, lab.TimeProvider);
            await s.SendToAsync("late"u8.ToArray(), mapped);
            var late = await ReceiveOrTimeout(alice, lab.TimeProvider, TimeSpan.FromSeconds(5));
            return (mapped, late);
        });

        Assert.Equal(TimeSpan.FromHours(2) + TimeSpan.FromSeconds(5), lab.Now);
        var created = Assert.Single(log.Events, e => e.Created);
        var removed = Assert.Single(log.Events, e => !e.Created);
        Assert.Equal(before.Port, removed.Event.External.Port);

        // Last keepalive at 3600 s; expiry 300 s later, seen within one router tick.
        Assert.Equal(0, created.Event.Time);
        Assert.InRange(removed.Event.Time, 3900_000, 3901_000);
        Assert.Null(after);
        Assert.Equal(0, nat.Engine.MappingCount);
    }

    [Fact]
    public void ClosedPort_AnswersIcmpPortUnreachable_AndTheNatTranslatesIt()
    {
        var lab = TwoHomes(NatPresets.RfcRecommended, NatPresets.RfcRecommended);
        var alice = lab.Host("alice");
        using var pcap = new MemoryStream();
        using (lab.Capture(alice, pcap))
        {
            lab.Run(async () =>
            {
                var a = await Bind(alice, 40000);
                await a.SendToAsync("x"u8.ToArray(), new IPEndPoint(Server1, 9));
                await Task.Delay(TimeSpan.FromSeconds(1), lab.TimeProvider);
            });
        }

        // Out: the datagram; in: ICMP port unreachable, translated back to alice's LAN address.
        var packets = PcapReader.Read(pcap.ToArray());
        Assert.Equal(2, packets.Count);
        Assert.True(Ipv4Packet.TryParse(packets[1], out var icmp));
        Assert.Equal(IpProtocol.Icmp, icmp.Protocol);
        Assert.Equal(Ipv4Address.Parse("192.168.1.10"), icmp.Destination);
    }

    [Fact]
    public void Deadlock_ReceiveWithNoSender_FailsFastWithAClearMessage()
    {
        var lab = TwoHomes(NatPresets.FullCone, NatPresets.FullCone);
        var e = Assert.Throws<LabRunException>(() => lab.Run(async () =>
        {
            var a = await Bind(lab.Host("alice"), 40000);
            await a.SendToAsync("x"u8.ToArray(), new IPEndPoint(Server1, 3478));
            await a.ReceiveFromAsync(new byte[100]);
        }));
        Assert.Equal(LabRunFailure.Deadlock, e.Failure);
        Assert.Contains("deadlock", e.Message, StringComparison.Ordinal);

        // The router's housekeeping ticks do not hide the deadlock: it is found at once, not when the mapping expires.
        Assert.True(lab.Now < TimeSpan.FromSeconds(1));
    }

    [Fact]
    public void BindErrors_AreNetworkExceptions()
    {
        var lab = TwoHomes(NatPresets.FullCone, NatPresets.FullCone);
        lab.Run(async () =>
        {
            var alice = lab.Host("alice");
            await Bind(alice, 40000);
            var inUse = await Assert.ThrowsAsync<NatKit.Net.NetworkException>(() => Bind(alice, 40000));
            Assert.Equal(System.Net.Sockets.SocketError.AddressAlreadyInUse, inUse.Error);
            var notMine = await Assert.ThrowsAsync<NatKit.Net.NetworkException>(() => Bind(alice, Server1, 1));
            Assert.Equal(System.Net.Sockets.SocketError.AddressNotAvailable, notMine.Error);
            var e = await Bind(alice);
            Assert.InRange(e.LocalEndPoint.Port, LabHost.EphemeralPortFirst, LabHost.EphemeralPortLast);
        });
    }

    [Fact]
    public void SendTo_IPv4MappedIPv6_Arrives_AndPlainIPv6_IsAddressFamilyNotSupported()
    {
        var lab = TwoHomes(NatPresets.FullCone, NatPresets.FullCone);
        var got = lab.Run(async () =>
        {
            var server = await Bind(lab.Host("server"), 3478);
            var alice = await Bind(lab.Host("alice"));
            var v6 = await Assert.ThrowsAsync<NatKit.Net.NetworkException>(async () =>
                await alice.SendToAsync("x"u8.ToArray(), new IPEndPoint(IPAddress.Parse("2001:db8::1"), 3478)));
            Assert.Equal(System.Net.Sockets.SocketError.AddressFamilyNotSupported, v6.Error);
            await alice.SendToAsync("mapped"u8.ToArray(), new IPEndPoint(Server1.MapToIPv6(), 3478));
            return await ReceiveOrTimeout(server, lab.TimeProvider, TimeSpan.FromSeconds(1));
        });
        Assert.Equal("mapped"u8.ToArray(), got!.Value.Data);
    }
}
