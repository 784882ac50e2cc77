using System.Net;
using NatKit.Nat;
using NatKit.TestSupport;
using static NatKit.Lab.Tests.LabFixture;

namespace NatKit.Lab.Tests;

public sealed class PcapTests
{
    /// <summary>alice (behind nat-a) and bob (behind nat-b) each talk to the server; captures on home-a and the
    /// internet show the same flow before and after nat-a.</summary>
    private static (byte[] HomeA, byte[] Internet) Capture(int seed)
    {
        var lab = TwoHomes(NatPresets.Symmetric, NatPresets.FullCone, seed);
        lab.Host("alice").Link = new LinkProfile { Latency = TimeSpan.FromMilliseconds(3), Jitter = TimeSpan.FromMilliseconds(2), Loss = 0.1 };
        using var home = new MemoryStream();
        using var internet = new MemoryStream();
        using (lab.Capture(lab.Segment("home-a"), home))
        using (lab.Capture(lab.Segment("internet"), internet))
        {
            lab.Run(async () =>
            {
                var s = await Bind(lab.Host("server"), Server1, 3478);
                var alice = await Bind(lab.Host("alice"), 40000);
                var bob = await Bind(lab.Host("bob"));
                for (var i = 0; i < 20; i++)
                {
                    await alice.SendToAsync(new byte[] { (byte)i }, new IPEndPoint(Server1, 3478));
                    await bob.SendToAsync(new byte[] { (byte)i, 1 }, new IPEndPoint(Server1, 3478));
                    await Task.Delay(TimeSpan.FromMilliseconds(10), lab.TimeProvider);
                }

                while (await ReceiveOrTimeout(s, lab.TimeProvider, TimeSpan.FromSeconds(1)) is { } got)
                {
                    await s.SendToAsync(got.Data, got.From);
                }
            });
        }

        return (home.ToArray(), internet.ToArray());
    }

    [Fact]
    public void SameSeed_GivesByteIdenticalPcaps_AndAnotherSeedDoesNot()
    {
        var a = Capture(5);
        var b = Capture(5);
        var c = Capture(6);
        Assert.Equal(a.HomeA, b.HomeA);
        Assert.Equal(a.Internet, b.Internet);
        Assert.NotEqual(a.Internet, c.Internet);
        Assert.True(PcapReader.Read(a.Internet).Count > 40);
    }

    [Fact]
    public void Timestamps_ComeFromVirtualTime()
    {
        var (home, _) = Capture(5);
        var records = PcapReader.ReadWithTimes(home);
        var epoch = (long)(Scheduling.LabScheduler.DefaultEpoch - DateTimeOffset.UnixEpoch).TotalSeconds;

        // The first packet leaves at virtual time zero, the last well within the scenario's few seconds.
        Assert.Equal((epoch, 0L), (records[0].Seconds, records[0].Micros));
        Assert.InRange(records[^1].Seconds, epoch, epoch + 5);
    }

    [Fact]
    public void RouterLinkCaptures_ShowEachPacketBeforeAndAfterTranslation()
    {
        var lab = TwoHomes(NatPresets.FullCone, NatPresets.FullCone);
        var nat = lab.Router("nat-a");
        using var inside = new MemoryStream();
        using var outside = new MemoryStream();
        using (lab.Capture(nat, NatSide.Inside, inside))
        using (lab.Capture(nat, NatSide.Outside, outside))
        {
            lab.Run(async () =>
            {
                var s = await Bind(lab.Host("server"), Server1, 3478);
                var a = await Bind(lab.Host("alice"), 40000);
                await a.SendToAsync("ping"u8.ToArray(), new IPEndPoint(Server1, 3478));
                var got = await ReceiveOrTimeout(s, lab.TimeProvider, TimeSpan.FromSeconds(1));
                await s.SendToAsync("pong"u8.ToArray(), got!.Value.From);
                await ReceiveOrTimeout(a, lab.TimeProvider, TimeSpan.FromSeconds(1));
            });
        }

        // Inside: ping arriving from alice, pong leaving to alice. Outside: ping leaving from the NAT's
        // address, pong arriving to it. Same payloads, translated headers.
        var ins = PcapReader.Read(inside.ToArray()).Select(Describe).ToList();
        var outs = PcapReader.Read(outside.ToArray()).Select(Describe).ToList();
        Assert.Equal(["192.168.1.10:40000 > 203.0.113.100:3478 ping", "203.0.113.100:3478 > 192.168.1.10:40000 pong"], ins);
        Assert.Equal(["198.51.100.1:40000 > 203.0.113.100:3478 ping", "203.0.113.100:3478 > 198.51.100.1:40000 pong"], outs);

        static string Describe(byte[] p)
        {
            Assert.True(NatKit.Packets.Ipv4Packet.TryParse(p, out var ip));
            Assert.True(NatKit.Packets.UdpDatagram.TryParse(ip.Payload, out var udp));
            return $"{ip.Source}:{udp.SourcePort} > {ip.Destination}:{udp.DestinationPort} {System.Text.Encoding.ASCII.GetString(udp.Payload)}";
        }
    }

    [PeerFact("tshark")]
    public async Task Tshark_ReadsTheCapture_AndShowsAddressesBeforeAndAfterTheNat()
    {
        var (home, internet) = Capture(5);
        var dir = Directory.CreateTempSubdirectory("natkit-lab-pcap-");
        try
        {
            var homeFile = Path.Combine(dir.FullName, "home-a.pcap");
            var internetFile = Path.Combine(dir.FullName, "internet.pcap");
            await File.WriteAllBytesAsync(homeFile, home);
            await File.WriteAllBytesAsync(internetFile, internet);

            var inside = await Fields(homeFile, "udp.dstport == 3478");
            var outside = await Fields(internetFile, "udp.dstport == 3478 && ip.src == 198.51.100.1");

            // Before nat-a: alice's LAN address and port. After: nat-a's address, symmetric NAT's random port.
            Assert.NotEmpty(inside);
            Assert.All(inside, r => Assert.Equal(("192.168.1.10", "40000", "203.0.113.100"), (r[0], r[1], r[2])));
            Assert.NotEmpty(outside);
            Assert.All(outside, r => Assert.Equal("203.0.113.100", r[2]));
            Assert.All(outside, r => Assert.NotEqual("40000", r[1]));

            // And the reply path: server -> nat-a's mapping outside, -> alice's LAN address inside.
            var replies = await Fields(homeFile, "udp.srcport == 3478");
            Assert.All(replies, r => Assert.Equal(("203.0.113.100", "192.168.1.10"), (r[0], r[2])));
        }
        finally
        {
            dir.Delete(recursive: true);
        }

        static async Task<List<string[]>> Fields(string file, string filter)
        {
            var (code, output, errors) = await ExternalProcess.RunAsync("tshark",
                ["-r", file, "-n", "-Y", filter, "-T", "fields", "-e", "ip.src", "-e", "udp.srcport", "-e", "ip.dst",
                    "-e", "udp.dstport"], TimeSpan.FromSeconds(60));
            Assert.True(code == 0, $"tshark failed: {errors}");
            return output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(l => l.Split('\t')).ToList();
        }
    }
}
