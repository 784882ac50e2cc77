using System.Net;
using NatKit.Lab;
using NatKit.Net;

namespace NatKit.Utp.Tests;

/// <summary>
/// What the sender takes for a lost packet, in the lab, on its virtual clock. The probe timeout (nothing acknowledged
/// for about two round trips): a peer that is only slow (its process not scheduled for a while, everything still
/// queued for it) costs one probe packet, not a resent flight and a halved window; a tail that is really lost is
/// still repaired well before the RTO. Duplicate ACKs: a window update is not one.
/// </summary>
public sealed class LossDetectionTests
{
    private const int BobPort = 6881;

    private static (VirtualNetwork Lab, LabHost Alice, LabHost Bob) Topology(int seed)
    {
        var lab = new VirtualNetwork(seed);
        var internet = lab.AddSegment("internet");
        var alice = lab.AddHost("alice", internet, "198.51.100.10");
        var bob = lab.AddHost("bob", internet, "203.0.113.20");
        alice.Link = new LinkProfile { Latency = TimeSpan.FromMilliseconds(5) };
        bob.Link = new LinkProfile { Latency = TimeSpan.FromMilliseconds(5) };
        return (lab, alice, bob);
    }

    private static async Task<Pair> ConnectAsync(VirtualNetwork lab, LabHost alice, LabHost bob, UtpOptions options,
        IDatagramSocket? bobSocket = null)
    {
        var a = await UtpSocket.BindAsync(alice, new IPEndPoint(alice.Address, 0), options);
        var b = bobSocket is null
            ? await UtpSocket.BindAsync(bob, new IPEndPoint(bob.Address, BobPort), options)
            : new UtpSocket(bobSocket, lab.TimeProvider, options);
        var accept = b.AcceptAsync();
        var client = await a.ConnectAsync(new IPEndPoint(bob.Address, BobPort));
        return new Pair(a, b, client, await accept);
    }

    private sealed record Pair(UtpSocket A, UtpSocket B, UtpStream Client, UtpStream Server) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await Client.DisposeAsync();
            await Server.DisposeAsync();
            await A.DisposeAsync();
            await B.DisposeAsync();
        }
    }

    [Fact]
    public void APeerThatStallsPastTheProbeTime_CostsOneProbe_NotTheFlight()
    {
        var (lab, alice, bob) = Topology(seed: 12);
        var options = new UtpOptions { Random = lab.Random };
        var warm = TestData.Generate(300_000, 1);
        var data = TestData.Generate(400_000, 2);

        var (resent, got, stalled) = lab.Run(async () =>
        {
            var bobSocket = new StallingSocket(await bob.BindUdpAsync(new IPEndPoint(bob.Address, BobPort)), lab);
            await using var pair = await ConnectAsync(lab, alice, bob, options, bobSocket);
            var (client, server) = (pair.Client, pair.Server);
            var reading = TestData.ReadToEndAsync(server, CancellationToken.None);
            await client.WriteAsync(warm);
            await client.FlushAsync(); // the RTT is known (20 ms), the window open
            var before = client.Statistics.Retransmissions;
            var rtt = client.Statistics.SmoothedRtt;

            var writing = client.WriteAsync(data).AsTask();
            await Task.Delay(TimeSpan.FromMilliseconds(3), lab.TimeProvider);
            // Bob's process stops reading its socket 3.5 round trips, past the probe time (2 RTT + 4 RTTVAR) but short of twice it: the flight waits in his queue, unlost.
            bobSocket.StallNext = 3.5 * rtt;
            await writing;
            client.ShutdownWrite();
            var bytes = await reading;
            return (client.Statistics.Retransmissions - before, bytes, bobSocket.Stalled);
        });

        Assert.True(stalled, "the receiver must have stalled");
        Assert.Equal(TestData.Sha256([.. TestData.Generate(300_000, 1), .. data]), TestData.Sha256(got));
        Assert.Equal(1, resent); // the probe; the old rule resent every packet in flight
    }

    [Fact]
    public void ALostTail_IsRepairedByProbes_WellBeforeTheRto()
    {
        var (lab, alice, bob) = Topology(seed: 13);
        var options = new UtpOptions { Random = lab.Random };
        var data = TestData.Generate(20_000, 3);

        var (elapsed, got) = lab.Run(async () =>
        {
            await using var pair = await ConnectAsync(lab, alice, bob, options);
            var (client, server) = (pair.Client, pair.Server);
            await client.WriteAsync(TestData.Generate(200_000, 4));
            var buffer = new byte[200_000];
            var read = 0;
            while (read < buffer.Length)
            {
                read += await server.ReadAsync(buffer.AsMemory(read));
            }

            await client.FlushAsync();
            var start = lab.Now;
            bob.Link = new LinkProfile { Latency = TimeSpan.FromMilliseconds(5), Loss = 1.0 };
            await client.WriteAsync(data); // every packet of this burst is lost on the way in...
            await Task.Delay(TimeSpan.FromMilliseconds(12), lab.TimeProvider);
            bob.Link = new LinkProfile { Latency = TimeSpan.FromMilliseconds(5) }; // ...the path is back
            client.ShutdownWrite();
            var bytes = await TestData.ReadToEndAsync(server, CancellationToken.None);
            return (lab.Now - start, bytes);
        });

        Assert.Equal(TestData.Sha256(data), TestData.Sha256(got));
        Assert.True(elapsed < UtpOptions.Default.MinRetransmitTimeout,
            $"a lost tail is repaired by the probes, not the RTO: {elapsed}");
    }

    [Fact]
    public void WindowUpdates_FromAReaderCatchingUp_AreNotDuplicateAcks_NoPacketIsResent()
    {
        var (lab, alice, bob) = Topology(seed: 14);
        var options = new UtpOptions { Random = lab.Random, ReceiveBufferSize = 64 * 1024 };
        var data = TestData.Generate(1_000_000, 5);

        var (resent, got) = lab.Run(async () =>
        {
            await using var pair = await ConnectAsync(lab, alice, bob, options);
            var (client, server) = (pair.Client, pair.Server);
            var writing = TestData.WriteChunkedAsync(client, data, 64 * 1024, CancellationToken.None);
            using var received = new MemoryStream();
            var buffer = new byte[4096];
            while (true)
            {
                // A reader that pauses and then catches up in small reads: each quarter of the window it frees is
                // a window update carrying the same ack_nr while the sender's next packets are on their way.
                await Task.Delay(TimeSpan.FromMilliseconds(30), lab.TimeProvider);
                int n;
                do
                {
                    n = await server.ReadAsync(buffer);
                    received.Write(buffer, 0, n);
                }
                while (n == buffer.Length && received.Length < data.Length);

                if (received.Length >= data.Length)
                {
                    break;
                }
            }

            await writing;
            return (client.Statistics.Retransmissions, received.ToArray());
        });

        Assert.Equal(TestData.Sha256(data), TestData.Sha256(got));
        Assert.Equal(0, resent); // a lossless link: anything resent was a window update taken for a duplicate ACK
    }

    /// <summary>A socket whose owner stops reading it for a while (its process not scheduled): what arrives
    /// meanwhile waits in the socket's queue.</summary>
    private sealed class StallingSocket(IDatagramSocket inner, VirtualNetwork lab) : IDatagramSocket
    {
        public TimeSpan StallNext { get; set; }

        public bool Stalled { get; private set; }

        public IPEndPoint LocalEndPoint => inner.LocalEndPoint;

        public ValueTask<int> SendToAsync(ReadOnlyMemory<byte> datagram, IPEndPoint remoteEndPoint,
            CancellationToken cancellationToken = default) =>
            inner.SendToAsync(datagram, remoteEndPoint, cancellationToken);

        public ValueTask<ReceivedDatagram> ReceiveFromAsync(Memory<byte> buffer,
            CancellationToken cancellationToken = default)
        {
            if (StallNext > TimeSpan.Zero)
            {
                var stall = StallNext;
                StallNext = TimeSpan.Zero;
                return StallThenReceiveAsync(stall, buffer, cancellationToken);
            }

            return inner.ReceiveFromAsync(buffer, cancellationToken);
        }

        private async ValueTask<ReceivedDatagram> StallThenReceiveAsync(TimeSpan stall, Memory<byte> buffer,
            CancellationToken cancellationToken)
        {
            await Task.Delay(stall, lab.TimeProvider);
            Stalled = true;
            return await inner.ReceiveFromAsync(buffer, cancellationToken);
        }

        public ValueTask DisposeAsync() => inner.DisposeAsync();

        public void Dispose() => inner.Dispose();
    }
}
