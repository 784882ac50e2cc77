using System.Net;
using NatKit.Lab;
using NatKit.Nat;
using NatKit.Net;
using NatKit.Packets;
using NatKit.PortMapping.NatPmp;
using NatKit.PortMapping.Pcp;

namespace NatKit.PortMapping.Tests;

/// <summary>Announcements after a restart (RFC 6886 section 3.2.1, RFC 6887 section 14.1.3), sent by a lab router
/// over the lab's multicast in virtual time, and the clients that renew on them (RFC 6886 section 3.7, RFC 6887
/// section 8.5).</summary>
public sealed class AnnouncementTests
{
    private static readonly IPEndPoint Gateway = new(IPAddress.Parse("192.168.1.1"), 5351);
    private static readonly IPAddress Group = IPAddress.Parse("224.0.0.1");

    private sealed record Lab(VirtualNetwork Network, LabRouter Router, PortMappingHandler Handler, PortMappingAnnouncer Announcer,
        LabHost Inside, LabHost Outside);

    private static Lab Build(NatPolicy policy)
    {
        var lab = new VirtualNetwork(seed: 5);
        var internet = lab.AddSegment("internet");
        var home = lab.AddSegment("home", "192.168.1.0/24");
        var router = lab.AddRouter("nat", policy, home, "192.168.1.1", internet, "198.51.100.1");
        var handler = new PortMappingHandler(router.Engine, router.NowMs);
        router.ServeUdp(PortMappingHandler.Port, handler.Handle);
        var announcer = new PortMappingAnnouncer(handler, f => ValueTask.FromResult(f(router.NowMs)), router.SendInsideUdp, lab.TimeProvider);
        var outside = lab.AddHost("outside", internet, "203.0.113.100");
        var inside = lab.AddHost("inside", home, "192.168.1.10");
        return new(lab, router, handler, announcer, inside, outside);
    }

    private static async Task<IMulticastDatagramSocket> ListenAsync(LabHost host, string address)
    {
        var socket = await host.BindMulticastUdpAsync(new IPEndPoint(IPAddress.Any, 5350));
        socket.JoinGroup(Group, IPAddress.Parse(address));
        return socket;
    }

    [Fact]
    public void Rfc6886_3_2_1_StartUp_SendsTenAnnouncements_DoublingFrom250ms_WithTheEpochAndAddress_OnTheLanOnly()
    {
        var lab = Build(NatPresets.PortRestrictedCone);
        var (natPmp, pcp, outsideGot) = lab.Network.Run(async () =>
        {
            await using var inside = await ListenAsync(lab.Inside, "192.168.1.10");
            await using var outside = await ListenAsync(lab.Outside, "203.0.113.100");
            var start = lab.Network.TimeProvider.GetTimestamp();
            _ = lab.Announcer.Start();
            var natPmpSeen = new List<(double Ms, uint Epoch, IPAddress? Address)>();
            var pcpSeen = new List<(double Ms, uint Epoch)>();
            var buffer = new byte[1100];
            while (natPmpSeen.Count + pcpSeen.Count < 20)
            {
                var got = await inside.ReceiveMessageFromAsync(buffer);
                Assert.Equal(new IPEndPoint(IPAddress.Parse("192.168.1.1"), 5351), got.RemoteEndPoint);
                Assert.Equal(Group, got.Destination);
                var ms = lab.Network.TimeProvider.GetElapsedTime(start).TotalMilliseconds;
                Assert.True(PortMappingAnnouncement.TryParse(buffer.AsSpan(0, got.Length), out var a));
                if (buffer[0] == 0)
                {
                    Assert.Equal(12, got.Length);
                    natPmpSeen.Add((ms, a.Epoch, a.ExternalAddress));
                }
                else
                {
                    Assert.Equal(24, got.Length);
                    pcpSeen.Add((ms, a.Epoch));
                }
            }

            using var quiet = new CancellationTokenSource(TimeSpan.FromMinutes(5), lab.Network.TimeProvider);
            var outsideCount = 0;
            try
            {
                while (true)
                {
                    await outside.ReceiveMessageFromAsync(buffer, quiet.Token);
                    outsideCount++;
                }
            }
            catch (OperationCanceledException)
            {
            }

            return (natPmpSeen, pcpSeen, outsideCount);
        });

        // At once, then 250, 500, 1000 ... ms apart: sent at 0, 0.25, 0.75, 1.75, 3.75 ... 127.75 s.
        double[] sentAt = [0, 250, 750, 1750, 3750, 7750, 15750, 31750, 63750, 127750];
        Assert.Equal(10, natPmp.Count);
        Assert.Equal(10, pcp.Count);
        var delay = natPmp[0].Ms; // the LAN link's own delay
        for (var i = 0; i < 10; i++)
        {
            Assert.Equal(sentAt[i] + delay, natPmp[i].Ms, 3);
            Assert.Equal(sentAt[i] + delay, pcp[i].Ms, 3);
            Assert.Equal((uint)(sentAt[i] / 1000), natPmp[i].Epoch); // epoch seconds since the server started
            Assert.Equal((uint)(sentAt[i] / 1000), pcp[i].Epoch);
            Assert.Equal(IPAddress.Parse("198.51.100.1"), natPmp[i].Address);
        }

        Assert.Equal(0, outsideGot);
        Assert.Equal(20, lab.Announcer.Sent);
    }

    [Fact]
    public void OnlyTheOfferedProtocols_AreAnnounced()
    {
        var lab = Build(NatPresets.FullCone with { ServeNatPmp = false });
        var firsts = lab.Network.Run(async () =>
        {
            await using var inside = await ListenAsync(lab.Inside, "192.168.1.10");
            await lab.Announcer.Start();
            var versions = new List<byte>();
            var buffer = new byte[1100];
            using var quiet = new CancellationTokenSource(TimeSpan.FromSeconds(1), lab.Network.TimeProvider);
            try
            {
                while (true)
                {
                    await inside.ReceiveMessageFromAsync(buffer, quiet.Token);
                    versions.Add(buffer[0]);
                }
            }
            catch (OperationCanceledException)
            {
            }

            return versions;
        });
        Assert.Equal(Enumerable.Repeat(Pcp.Pcp.Version2, 10), firsts);
    }

    [Theory]
    [InlineData(PortMappingProtocol.Pcp)]
    [InlineData(PortMappingProtocol.NatPmp)]
    public void Rfc6886_3_7_AClient_RenewsAtOnce_WhenTheAnnouncedEpochGoesBack(PortMappingProtocol protocol)
    {
        var lab = Build(NatPresets.PortRestrictedCone);
        var (lostBeforeAnnouncement, back, restarts, epoch, renewedWithinSeconds) = lab.Network.Run(async () =>
        {
            _ = lab.Announcer.Start();
            var lease = await new PortMapper(lab.Inside, Gateway).MapAsync(IpProtocol.Udp, 41000, TimeSpan.FromHours(2), only: protocol);
            await Task.Delay(TimeSpan.FromMinutes(10), lab.Network.TimeProvider);

            // The router loses its state (a reboot): the mapping is gone, and without a word the lease would not
            // renew for another 50 minutes.
            var r = lab.Router;
            r.Engine.Unmap(IpProtocol.Udp, new NatEndpoint(Ipv4Address.Parse("192.168.1.10"), 41000), r.NowMs);
            var lost = r.Engine.ListMappings(r.NowMs).Count == 0;
            var before = lab.Network.TimeProvider.GetTimestamp();
            await lab.Announcer.RestartAsync();
            while (r.Engine.ListMappings(r.NowMs).Count == 0)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(100), lab.Network.TimeProvider);
            }

            var took = lab.Network.TimeProvider.GetElapsedTime(before);
            var mapping = r.Engine.ListMappings(r.NowMs)[0];
            Assert.Equal(41000, mapping.Internal.Port);
            // the lease holds what the restarted router granted (the old port may still be cooling down there)
            Assert.Equal(mapping.External.Port, lease!.External.Port);
            var result = (lost, mapping.Internal.Port, lease.AnnouncedRestarts, lease.Grant.Epoch, took.TotalSeconds);
            await lease.DisposeAsync();
            return result;
        });
        Assert.True(lostBeforeAnnouncement);
        Assert.Equal(41000, back);
        Assert.Equal(1, restarts); // the later nine announcements agree with the new epoch
        Assert.True(epoch < 5, $"the renewal's epoch {epoch} is the new server's");
        Assert.True(renewedWithinSeconds < 2, $"renewed {renewedWithinSeconds} s after the announcement");
    }

    [Fact]
    public void AnnouncementsThatAgreeWithTheEpoch_DoNotMakeAClientRenew()
    {
        var lab = Build(NatPresets.PortRestrictedCone);
        var (restarts, ownRequests) = lab.Network.Run(async () =>
        {
            var lease = await new PortMapper(lab.Inside, Gateway).MapAsync(IpProtocol.Udp, 41000, TimeSpan.FromHours(2));
            var requests = lab.Handler.Counters.Requests;
            await Task.Delay(TimeSpan.FromMinutes(10), lab.Network.TimeProvider);
            await lab.Announcer.Start(); // e.g. a second start-up round: same epoch line, nothing lost
            var result = (lease!.AnnouncedRestarts, lab.Handler.Counters.Requests - requests);
            await lease.DisposeAsync();
            return result;
        });
        Assert.Equal(0, restarts);
        Assert.Equal(0, ownRequests);
    }

    [Fact]
    public void SaysRenew_OnAnEpochThatWentBack_OrAnotherAddress_NotOnAConsistentOne()
    {
        var external = IPAddress.Parse("198.51.100.1");
        // granted at epoch 100, 600 s ago: the gateway's epoch should be near 700 (at least 100 + 525 - 2)
        Assert.False(new PortMappingAnnouncement(700, external).SaysRenew(100, TimeSpan.FromSeconds(600), external));
        Assert.False(new PortMappingAnnouncement(624, null).SaysRenew(100, TimeSpan.FromSeconds(600), external));
        Assert.True(new PortMappingAnnouncement(622, null).SaysRenew(100, TimeSpan.FromSeconds(600), external));
        Assert.True(new PortMappingAnnouncement(3, external).SaysRenew(100, TimeSpan.FromSeconds(600), external));
        Assert.True(new PortMappingAnnouncement(0, external).SaysRenew(1, TimeSpan.FromSeconds(1), external)); // went back, however soon
        Assert.False(new PortMappingAnnouncement(1, external).SaysRenew(1, TimeSpan.FromSeconds(1), external));
        Assert.True(new PortMappingAnnouncement(700, IPAddress.Parse("198.51.100.2")).SaysRenew(100, TimeSpan.FromSeconds(600), external));
    }

    [Fact]
    public void Announcement_TryParse_TakesOnlySuccessfulAnnouncements_AndNeverThrows()
    {
        var b = new byte[64];
        var n = NatPmpResponse.WriteExternalAddress(b, NatPmpResult.Success, 42, Ipv4Address.Parse("198.51.100.7"));
        Assert.True(PortMappingAnnouncement.TryParse(b.AsSpan(0, n), out var a));
        Assert.Equal(new PortMappingAnnouncement(42, IPAddress.Parse("198.51.100.7")), a);
        n = NatPmpResponse.WriteExternalAddress(b, NatPmpResult.NetworkFailure, 42, Ipv4Address.Parse("198.51.100.7"));
        Assert.False(PortMappingAnnouncement.TryParse(b.AsSpan(0, n), out _));
        n = PcpResponse.WriteHeader(b, (byte)PcpOpcode.Announce, PcpResult.Success, 0, 9);
        Assert.True(PortMappingAnnouncement.TryParse(b.AsSpan(0, n), out a));
        Assert.Equal(new PortMappingAnnouncement(9, null), a);
        n = PcpResponse.WriteHeader(b, (byte)PcpOpcode.Map, PcpResult.Success, 0, 9);
        Assert.False(PortMappingAnnouncement.TryParse(b.AsSpan(0, n), out _));
        var random = new Random(7);
        for (var i = 0; i < 2000; i++)
        {
            var bytes = new byte[random.Next(0, 40)];
            random.NextBytes(bytes);
            PortMappingAnnouncement.TryParse(bytes, out _);
        }
    }
}
