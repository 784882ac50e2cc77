using System.Net;
using NatKit.Lab;
using NatKit.Nat;
using NatKit.Net;
using NatKit.PortMapping.Upnp;

namespace NatKit.PortMapping.Tests.Upnp;

/// <summary>UDA 2.0 section 1.3.2: a multicast M-SEARCH is answered after a random wait up to MX (at most 5 s), a
/// unicast one at once; in the lab's virtual time, with the IGD's random source seeded.</summary>
public sealed class UpnpSsdpTimingTests
{
    private const int Seed = 11;

    /// <summary>An M-SEARCH with any MX (the writer keeps to UDA's 1-5; other control points send more).</summary>
    private static byte[] Search(string target, int mx) =>
        System.Text.Encoding.ASCII.GetBytes(System.Text.Encoding.ASCII.GetString(SsdpMessage.Search(target, 5))
            .Replace("MX: 5\r\n", $"MX: {mx}\r\n", StringComparison.Ordinal));

    [Fact]
    public void Uda_1_3_2_MulticastSearch_WaitsARandomPartOfMx_CappedAt5s_UnicastIsAnsweredAtOnce()
    {
        var lab = new VirtualNetwork(seed: 5);
        var internet = lab.AddSegment("internet");
        var home = lab.AddSegment("home", "192.168.1.0/24");
        var router = lab.AddRouter("nat-a", NatPresets.Symmetric with { ServeUpnp = true }, home, "192.168.1.1", internet, ["198.51.100.1"]);
        var alice = lab.AddHost("alice", home, "192.168.1.10");
        long Now() => lab.Scheduler.NowTicks / TimeSpan.TicksPerMillisecond;
        var (unicast, mx3, mx120, answered) = lab.Run(async () =>
        {
            await using var igd = await UpnpServer.StartAsync(router.Services, router.InsideAddress.ToIPAddress(),
                new UpnpControlHandler(router.Engine, Now()), f => ValueTask.FromResult(f(Now())),
                new UpnpServerOptions { HttpPort = 5000, Random = new Random(Seed) });
            await using var socket = await alice.BindMulticastUdpAsync(new IPEndPoint(alice.Address, 0));
            socket.SetMulticastSend(alice.Address, timeToLive: 2);
            var buffer = new byte[2048];

            async Task<double> AskAsync(int mx, IPAddress to)
            {
                var sent = lab.TimeProvider.GetTimestamp();
                await socket.SendToAsync(Search(UpnpDeviceDescription.InternetGatewayDevice2, mx), new IPEndPoint(to, SsdpMessage.Port));
                var got = await socket.ReceiveFromAsync(buffer);
                Assert.True(SsdpMessage.TryParse(buffer.AsSpan(0, got.Length), out var answer));
                Assert.Equal(SsdpKind.Response, answer.Kind);
                return lab.TimeProvider.GetElapsedTime(sent).TotalMilliseconds;
            }

            var u = await AskAsync(3, router.InsideAddress.ToIPAddress()); // the round trip, nothing added
            var m3 = await AskAsync(3, SsdpMessage.Group);
            var m120 = await AskAsync(120, SsdpMessage.Group);
            return (u, m3, m120, igd.SearchesAnswered);
        });

        var draws = new Random(Seed);
        var wait3 = Math.Floor(draws.NextDouble() * 3000);
        var wait5 = Math.Floor(draws.NextDouble() * 5000); // MX 120 is taken as 5
        Assert.Equal(unicast + wait3, mx3, 3);
        Assert.Equal(unicast + wait5, mx120, 3);
        Assert.True(wait3 > 0 && wait5 > 0);
        Assert.True(unicast < 100, $"a unicast search took {unicast} ms");
        Assert.Equal(3, answered);
    }

    [Fact]
    public void AnswerDelay_IsZeroForUnicast_AndWithinMxForMulticast()
    {
        Assert.True(SsdpMessage.TryParse(Search(SsdpMessage.All, 2), out var mx2));
        Assert.True(SsdpMessage.TryParse(Search(SsdpMessage.All, 60), out var mx60));
        Assert.Equal(60, mx60.MaxWait);
        var random = new Random(3);
        Assert.Equal(TimeSpan.Zero, UpnpSsdpResponder.AnswerDelay(mx2, multicast: false, random));
        for (var i = 0; i < 1000; i++)
        {
            var d = UpnpSsdpResponder.AnswerDelay(mx2, multicast: true, random);
            Assert.InRange(d, TimeSpan.Zero, TimeSpan.FromMilliseconds(1999));
            var capped = UpnpSsdpResponder.AnswerDelay(mx60, multicast: true, random);
            Assert.InRange(capped, TimeSpan.Zero, TimeSpan.FromMilliseconds(4999));
        }
    }
}
