using System.Net;
using static NatKit.Lab.Tests.LabFixture;

namespace NatKit.Lab.Tests;

/// <summary>Impairments measured over thousands of packets with a fixed seed: each must land near its setting.</summary>
public sealed class LinkImpairmentTests
{
    private const int Count = 4000;

    /// <summary>a sends Count numbered datagrams 1 ms apart to b on one flat segment; returns (number, arrival).</summary>
    private static List<(int Seq, TimeSpan At)> Send(LinkProfile link, int seed = 3)
    {
        var lab = new VirtualNetwork(seed);
        var net = lab.AddSegment("net", "10.1.0.0/16");
        var a = lab.AddHost("a", net, "10.1.0.1");
        var b = lab.AddHost("b", net, "10.1.0.2");
        a.Link = link;
        return lab.Run(async () =>
        {
            var sa = await Bind(a);
            var sb = await Bind(b, 9000);
            var arrivals = new List<(int, TimeSpan)>();
            async Task Receive()
            {
                while (await ReceiveOrTimeout(sb, lab.TimeProvider, TimeSpan.FromSeconds(2)) is { } got)
                {
                    arrivals.Add((BitConverter.ToInt32(got.Data), lab.Now));
                }
            }

            var receiver = Receive();
            for (var i = 0; i < Count; i++)
            {
                await sa.SendToAsync(BitConverter.GetBytes(i), new IPEndPoint(IPAddress.Parse("10.1.0.2"), 9000));
                await Task.Delay(TimeSpan.FromMilliseconds(1), lab.TimeProvider);
            }

            await receiver;
            return arrivals;
        });
    }

    [Fact]
    public void Loss_DropsAboutTheConfiguredShare()
    {
        var got = Send(new LinkProfile { Loss = 0.2 });
        Assert.InRange(got.Count, Count * 0.77, Count * 0.83);
    }

    [Fact]
    public void Duplicate_DeliversAboutTheConfiguredShareTwice()
    {
        var got = Send(new LinkProfile { Duplicate = 0.1 });
        var dups = got.Count - got.Select(g => g.Seq).Distinct().Count();
        Assert.Equal(Count, got.Select(g => g.Seq).Distinct().Count());
        Assert.InRange(dups, Count * 0.08, Count * 0.12);
    }

    [Fact]
    public void LatencyAndJitter_DelayEveryPacketWithinTheConfiguredWindow()
    {
        var got = Send(new LinkProfile { Latency = TimeSpan.FromMilliseconds(30), Jitter = TimeSpan.FromMilliseconds(10) });
        Assert.Equal(Count, got.Count);
        var delays = got.Select(g => (g.At - TimeSpan.FromMilliseconds(g.Seq)).TotalMilliseconds).ToList();
        Assert.All(delays, d => Assert.InRange(d, 30, 40));
        Assert.InRange(delays.Average(), 34, 36); // uniform jitter: mean latency + jitter/2
    }

    [Fact]
    public void Reorder_HoldsBackAboutTheConfiguredShare()
    {
        var got = Send(new LinkProfile { Reorder = 0.05, ReorderDelay = TimeSpan.FromMilliseconds(5) });
        Assert.Equal(Count, got.Count);
        var overtaken = 0;
        var highest = -1;
        foreach (var (seq, _) in got)
        {
            if (seq < highest) overtaken++;
            highest = Math.Max(highest, seq);
        }

        Assert.InRange(overtaken, Count * 0.035, Count * 0.065);
    }

    [Fact]
    public void NoImpairment_DeliversEverythingInOrderAtOnce()
    {
        var got = Send(LinkProfile.Perfect);
        Assert.Equal(Enumerable.Range(0, Count), got.Select(g => g.Seq));
        Assert.All(got, g => Assert.Equal(TimeSpan.FromMilliseconds(g.Seq), g.At));
    }

    [Fact]
    public void Mtu_SenderRefusesOversizedDatagrams_AndARouterAnswersFragmentationNeeded()
    {
        var lab = TwoHomes(Nat.NatPresets.FullCone, Nat.NatPresets.FullCone);
        lab.Host("alice").Link = new LinkProfile { Mtu = 600 };
        lab.Run(async () =>
        {
            var a = await Bind(lab.Host("alice"));
            var e = await Assert.ThrowsAsync<NatKit.Net.NetworkException>(async () =>
                await a.SendToAsync(new byte[1000], new IPEndPoint(Server1, 3478)));
            Assert.Equal(System.Net.Sockets.SocketError.MessageSize, e.Error);
        });

        // A router whose outside link is narrower than the LAN: a DF datagram that fits the LAN but not the
        // WAN is answered with ICMP Fragmentation Needed (RFC 1191), which the host receives.
        var lab2 = new VirtualNetwork(1);
        var internet = lab2.AddSegment("internet");
        var home = lab2.AddSegment("home", "192.168.1.0/24");
        var nat = lab2.AddRouter("nat", Nat.NatPresets.FullCone, home, "192.168.1.1", internet, ["198.51.100.1"],
            outsideLink: new LinkProfile { Mtu = 576 });
        var alice = lab2.AddHost("alice", home, "192.168.1.10");
        lab2.AddHost("server", internet, "203.0.113.100");
        lab2.Run(async () =>
        {
            var a = await Bind(alice);
            await a.SendToAsync(new byte[1000], new IPEndPoint(Server1, 3478));
            await Task.Delay(TimeSpan.FromSeconds(1), lab2.TimeProvider);
        });
        Assert.Equal(1, nat.Engine.DropCount(Nat.NatDropReason.FragmentationNeeded));
        Assert.Equal(1, alice.Discarded); // the ICMP error reached alice (and is not surfaced to UDP sockets)
    }
}
