using System.Net;
using System.Net.Sockets;
using NatKit.Lab;
using NatKit.Net;

namespace NatKit.Utp.Tests;

/// <summary>
/// uTP inside NatKit.Lab where only the lab can go: real impaired links (latency, loss, reordering) and virtual time,
/// so a dead-peer bound of 20 seconds is checked to the tick in milliseconds of wall time. What runs on both networks
/// is Shared/UtpContract.cs.
/// </summary>
public sealed class LabTests
{
    private const int BobPort = 6881;

    private static (VirtualNetwork Lab, LabHost Alice, LabHost Bob, LabHost Mallory) Topology(int seed,
        LinkProfile link)
    {
        var lab = new VirtualNetwork(seed);
        var internet = lab.AddSegment("internet");
        var alice = lab.AddHost("alice", internet, "198.51.100.10");
        var bob = lab.AddHost("bob", internet, "203.0.113.20");
        var mallory = lab.AddHost("mallory", internet, "192.0.2.66");
        alice.Link = link;
        bob.Link = link;
        return (lab, alice, bob, mallory);
    }

    private static async Task<(UtpSocket A, UtpSocket B, UtpStream Client, UtpStream Server)> ConnectAsync(
        VirtualNetwork lab, LabHost alice, LabHost bob)
    {
        var options = new UtpOptions { Random = lab.Random };
        var a = await UtpSocket.BindAsync(alice, new IPEndPoint(alice.Address, 0), options);
        var b = await UtpSocket.BindAsync(bob, new IPEndPoint(bob.Address, BobPort), options);
        var accept = b.AcceptAsync();
        var client = await a.ConnectAsync(new IPEndPoint(bob.Address, BobPort));
        var server = await accept;
        return (a, b, client, server);
    }

    [Fact]
    public void Transfer_With5PercentLoss_Reordering_And100msRtt_ArrivesIntact()
    {
        // Each hop crosses both hosts' links: 25 + 25 ms one way (100 ms RTT); 2.5% loss per link is about 5%
        // per direction; 5% of packets are held back 15 ms, so later ones overtake them.
        var link = new LinkProfile
        {
            Latency = TimeSpan.FromMilliseconds(25),
            Loss = 0.025,
            Reorder = 0.05,
            ReorderDelay = TimeSpan.FromMilliseconds(15),
        };
        var (lab, alice, bob, _) = Topology(seed: 5, link);
        var up = TestData.Generate(1_000_000, 21);
        var down = TestData.Generate(300_000, 22);

        var (gotUp, gotDown, retransmits) = lab.Run(async () =>
        {
            var (a, b, client, server) = await ConnectAsync(lab, alice, bob);
            await using (a)
            await using (b)
            {
                var readServer = TestData.ReadToEndAsync(server, CancellationToken.None);
                var readClient = TestData.ReadToEndAsync(client, CancellationToken.None);
                await TestData.WriteChunkedAsync(client, up, 64 * 1024, CancellationToken.None);
                client.ShutdownWrite();
                await TestData.WriteChunkedAsync(server, down, 64 * 1024, CancellationToken.None);
                server.ShutdownWrite();
                var u = await readServer;
                var d = await readClient;
                return (u, d, (Total: client.Statistics.Retransmissions, Fast: client.Statistics.FastRetransmissions));
            }
        });

        Assert.Equal(TestData.Sha256(up), TestData.Sha256(gotUp));
        Assert.Equal(TestData.Sha256(down), TestData.Sha256(gotDown));
        Assert.True(lab.Stats.Lost > 0, "the link must have lost packets");
        Assert.True(retransmits.Total > 0, "losses must have been repaired by retransmission");
        Assert.True(retransmits.Fast > 0, "most repairs come from selective or duplicate ACKs, not timeouts");
    }

    [Fact]
    public void FlowControl_ASlowReader_StopsTheSender_AtItsReceiveWindow_ThenEverythingArrives()
    {
        var (lab, alice, bob, _) = Topology(seed: 11, new LinkProfile { Latency = TimeSpan.FromMilliseconds(10) });
        var options = new UtpOptions { Random = lab.Random, ReceiveBufferSize = 64 * 1024, SendBufferSize = 64 * 1024 };
        var data = TestData.Generate(1_000_000, 41);

        var (peerWindow, inFlight, got) = lab.Run(async () =>
        {
            await using var a = await UtpSocket.BindAsync(alice, new IPEndPoint(alice.Address, 0), options);
            await using var b = await UtpSocket.BindAsync(bob, new IPEndPoint(bob.Address, BobPort), options);
            var accept = b.AcceptAsync();
            await using var client = await a.ConnectAsync(new IPEndPoint(bob.Address, BobPort));
            await using var server = await accept;
            var writing = TestData.WriteChunkedAsync(client, data, 16 * 1024, CancellationToken.None);
            await Task.Delay(TimeSpan.FromSeconds(5), lab.TimeProvider); // nobody reads
            var stalled = client.Statistics;
            var reading = TestData.ReadToEndAsync(server, CancellationToken.None);
            await writing;
            client.ShutdownWrite();
            return (stalled.PeerWindow, stalled.BytesInFlight, await reading);
        });

        Assert.InRange(peerWindow, 0, options.MaxDatagramSize - UtpHeader.Size - 1); // not even one more packet fits
        Assert.Equal(0, inFlight);
        Assert.Equal(TestData.Sha256(data), TestData.Sha256(got));
    }

    [Fact]
    public void Ledbat_OneWayDelayAboveTheTarget_ShrinksTheWindow()
    {
        var (lab, alice, bob, _) = Topology(seed: 12, new LinkProfile { Latency = TimeSpan.FromMilliseconds(5) });
        var (before, after, queuing) = lab.Run(async () =>
        {
            var (a, b, client, server) = await ConnectAsync(lab, alice, bob);
            await using (a)
            await using (b)
            {
                var reading = TestData.ReadToEndAsync(server, CancellationToken.None);
                var chunk = new byte[64 * 1024];
                var deadline = lab.Now + TimeSpan.FromSeconds(1);
                while (lab.Now < deadline)
                {
                    await client.WriteAsync(chunk);
                }

                var open = client.Statistics.CongestionWindow;
                // The path's one-way delay grows by 300 ms (a queue building somewhere): three times the target.
                alice.Link = new LinkProfile { Latency = TimeSpan.FromMilliseconds(305) };
                deadline = lab.Now + TimeSpan.FromSeconds(8);
                while (lab.Now < deadline)
                {
                    await client.WriteAsync(chunk);
                }

                var squeezed = client.Statistics;
                client.ShutdownWrite();
                await reading;
                return (open, squeezed.CongestionWindow, squeezed.QueuingDelay);
            }
        });

        Assert.InRange(queuing, TimeSpan.FromMilliseconds(250), TimeSpan.FromMilliseconds(350));
        Assert.True(after < before / 4, $"cwnd {before} -> {after}: LEDBAT must back off when delay exceeds 100 ms");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void DeadPeer_IsDetected_WithinDeadPeerTimeoutPlusOneTick_InVirtualTime(bool dataInFlight)
    {
        var link = new LinkProfile { Latency = TimeSpan.FromMilliseconds(20) };
        var (lab, alice, bob, _) = Topology(seed: 7, link);
        var options = UtpOptions.Default;

        var (error, detectedAfter) = lab.Run(async () =>
        {
            var (a, b, client, server) = await ConnectAsync(lab, alice, bob);
            await using (a)
            await using (b)
            {
                await client.WriteAsync(new byte[10_000]);
                await client.FlushAsync(); // an ACK just arrived: the peer was last heard now
                var cut = lab.Now;
                bob.Link = new LinkProfile { Loss = 1.0 }; // bob vanishes: no FIN, no RESET, nothing
                if (dataInFlight)
                {
                    await client.WriteAsync(new byte[100_000]);
                }

                try
                {
                    _ = await client.ReadAsync(new byte[16]);
                    return ((NetworkException?)null, TimeSpan.Zero);
                }
                catch (NetworkException e)
                {
                    return (e, lab.Now - cut);
                }
            }
        });

        Assert.NotNull(error);
        Assert.Equal(SocketError.TimedOut, error.Error);
        Assert.InRange(detectedAfter, options.DeadPeerTimeout, options.DeadPeerTimeout + options.TickInterval);
    }

    [Fact]
    public void IdleConnection_ToALivePeer_SurvivesAnHour_OnKeepAliveProbesAlone()
    {
        var (lab, alice, bob, _) = Topology(seed: 10, new LinkProfile { Latency = TimeSpan.FromMilliseconds(40) });

        var (connectionsA, connectionsB, delivered, echoed) = lab.Run(async () =>
        {
            var (a, b, client, server) = await ConnectAsync(lab, alice, bob);
            await using (a)
            await using (b)
            {
                var before = lab.Stats.Delivered;
                await Task.Delay(TimeSpan.FromHours(1), lab.TimeProvider);
                var probes = lab.Stats.Delivered - before;
                await client.WriteAsync("still there?"u8.ToArray());
                var buffer = new byte[12];
                await server.ReadExactlyAsync(buffer);
                return (a.ConnectionCount, b.ConnectionCount, probes, buffer);
            }
        });

        Assert.Equal(1, connectionsA);
        Assert.Equal(1, connectionsB);
        Assert.Equal("still there?"u8.ToArray(), echoed);
        var interval = UtpOptions.Default.KeepAliveInterval;
        // a probe and its answer per interval, give or take which side probes first
        Assert.InRange(delivered, (long)(TimeSpan.FromHours(1) / interval), (long)(4 * TimeSpan.FromHours(1) / interval));
    }

    [Fact]
    public void Connect_ToAHostThatNeverAnswers_FailsAtTheSynBound_InVirtualTime()
    {
        var (lab, alice, bob, _) = Topology(seed: 8, new LinkProfile { Latency = TimeSpan.FromMilliseconds(10) });
        var options = new UtpOptions { Random = lab.Random };

        var (error, after) = lab.Run(async () =>
        {
            await using var a = await UtpSocket.BindAsync(alice, new IPEndPoint(alice.Address, 0), options);
            using var silent = await bob.BindUdpAsync(new IPEndPoint(bob.Address, BobPort)); // bound, never answers
            var start = lab.Now;
            try
            {
                await a.ConnectAsync(new IPEndPoint(bob.Address, BobPort));
                return ((NetworkException?)null, TimeSpan.Zero);
            }
            catch (NetworkException e)
            {
                return (e, lab.Now - start);
            }
        });

        Assert.NotNull(error);
        Assert.Equal(SocketError.TimedOut, error.Error);
        Assert.InRange(after, options.ConnectTimeoutBound, options.ConnectTimeoutBound + options.TickInterval);
    }
}
