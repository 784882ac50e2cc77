using System.Net;
using FsCheck;
using FsCheck.Fluent;
using NatKit.Lab.Internal;
using NatKit.Nat;
using static NatKit.Lab.Tests.LabFixture;

namespace NatKit.Lab.Tests;

/// <summary>Hosts and routers take whatever bytes arrive on a link: random and mutated packets must never throw
/// out of the lab, and the packet pool must get every buffer back.</summary>
public sealed class UntrustedPacketTests
{
    private static (VirtualNetwork Lab, List<byte[]> Valid, int Held) Setup()
    {
        var lab = TwoHomes(NatPresets.RfcRecommended, NatPresets.Symmetric);
        using var pcap = new MemoryStream();
        using var lan = new MemoryStream();
        using (lab.Capture(lab.Segment("internet"), pcap))
        using (lab.Capture(lab.Segment("home-a"), lan))
        {
            lab.Run(async () =>
            {
                var s = await Bind(lab.Host("server"), Server1, 3478);
                var a = await Bind(lab.Host("alice"), 40000);
                await a.SendToAsync(new byte[40], new IPEndPoint(Server1, 3478));
                await a.SendToAsync(new byte[40], new IPEndPoint(Server1, 9));
                var got = await ReceiveOrTimeout(s, lab.TimeProvider, TimeSpan.FromSeconds(1));
                await s.SendToAsync(new byte[10], got!.Value.From);
                await using var l = await lab.Host("server").ListenTcpAsync(new IPEndPoint(Server1, 80));
                var acc = l.AcceptAsync();
                await using var c = await lab.Host("alice").ConnectTcpAsync(new IPEndPoint(Server1, 80));
                await c.Stream.WriteAsync(new byte[100]);
                await Task.Delay(TimeSpan.FromSeconds(1), lab.TimeProvider);
            });
        }

        lab.Advance(TimeSpan.FromMinutes(10));

        // Datagrams nobody read stay queued on their sockets: that many buffers are legitimately out.
        return (lab, [.. PcapReader.Read(pcap.ToArray()), .. PcapReader.Read(lan.ToArray())], lab.Pool.Outstanding);
    }

    private static void Inject(VirtualNetwork lab, byte[] bytes)
    {
        var nodes = new LabInterface[]
        {
            lab.Router("nat-a").Inside, lab.Router("nat-a").Outside, lab.Router("nat-b").Outside,
            lab.Host("alice").Interface, lab.Host("server").Interface,
        };
        foreach (var iface in nodes)
        {
            iface.Node.Receive(iface, lab.Pool.Copy(bytes));
        }

        lab.Advance(TimeSpan.FromMilliseconds(50));
    }

    [Fact]
    public void RandomBytes_NeverThrow_AndEveryBufferReturnsToThePool()
    {
        var (lab, _, held) = Setup();
        Prop.ForAll(Gen.ArrayOf(ArbMap.Default.GeneratorFor<byte>()).ToArbitrary(), bytes =>
        {
            Inject(lab, bytes);
            return true;
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(300));
        lab.Advance(TimeSpan.FromMinutes(10));
        Assert.InRange(lab.Pool.Outstanding, 0, held + LabUdpSocket.ReceiveQueueLimit);
        Assert.True(lab.Pool.Outstanding <= held + 64, $"{lab.Pool.Outstanding} buffers out, {held} before");
    }

    [Fact]
    public void MutatedValidPackets_NeverThrow_AndEveryBufferReturnsToThePool()
    {
        var (lab, valid, held) = Setup();
        Assert.NotEmpty(valid);
        var rng = new Random(17);
        for (var i = 0; i < 3000; i++)
        {
            var p = (byte[])valid[rng.Next(valid.Count)].Clone();
            for (var k = rng.Next(1, 4); k > 0; k--)
            {
                p[rng.Next(p.Length)] = (byte)rng.Next(256);
            }

            if (rng.Next(4) == 0)
            {
                p = p[..rng.Next(p.Length)];
            }

            Inject(lab, p);
        }

        lab.Advance(TimeSpan.FromMinutes(10));
        Assert.InRange(lab.Pool.Outstanding, 0, held + LabUdpSocket.ReceiveQueueLimit);
        Assert.True(lab.Pool.Outstanding <= held + 64, $"{lab.Pool.Outstanding} buffers out, {held} before");
    }
}
