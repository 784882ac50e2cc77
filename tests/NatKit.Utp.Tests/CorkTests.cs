using System.Net;
using NatKit.Lab;
using NatKit.Net;

namespace NatKit.Utp.Tests;

/// <summary>
/// <see cref="UtpStream.Cork"/>: writes coalesce into full datagrams, the remainder leaves the moment the burst ends
/// (<see cref="UtpStream.Uncork"/>), at most a tick after the last write if nobody uncorks, and before the FIN of a
/// shutdown. In the lab, on its virtual clock, with every datagram the client's socket sends recorded.
/// </summary>
public sealed class CorkTests
{
    private const int BobPort = 6881;
    private const int Mss = 1400 - UtpHeader.Size;

    private static readonly LinkProfile Link = new() { Latency = TimeSpan.FromMilliseconds(10) };

    private static async Task<(UtpSocket A, UtpSocket B, UtpStream Client, UtpStream Server, RecordingSocket Sent)>
        ConnectAsync(VirtualNetwork lab, LabHost alice, LabHost bob)
    {
        var options = new UtpOptions { Random = lab.Random };
        var sent = new RecordingSocket(await alice.BindUdpAsync(new IPEndPoint(alice.Address, 0)), lab);
        var a = new UtpSocket(sent, lab.TimeProvider, options);
        var b = await UtpSocket.BindAsync(bob, new IPEndPoint(bob.Address, BobPort), options);
        var accept = b.AcceptAsync();
        var client = await a.ConnectAsync(new IPEndPoint(bob.Address, BobPort));
        var server = await accept;
        return (a, b, client, server, sent);
    }

    private static (VirtualNetwork Lab, LabHost Alice, LabHost Bob) Topology(int seed)
    {
        var lab = new VirtualNetwork(seed);
        var internet = lab.AddSegment("internet");
        var alice = lab.AddHost("alice", internet, "198.51.100.10");
        var bob = lab.AddHost("bob", internet, "203.0.113.20");
        alice.Link = Link;
        bob.Link = Link;
        return (lab, alice, bob);
    }

    [Fact]
    public void Corked_ShortWrites_LeaveInFullDatagrams_AndTheRemainderAtUncork_WithTheirBoundariesIntact()
    {
        var (lab, alice, bob) = Topology(seed: 3);
        var data = TestData.Generate(10 * 1_000, 5);

        var (sizes, got) = lab.Run(async () =>
        {
            var (a, b, client, server, sent) = await ConnectAsync(lab, alice, bob);
            await using (a)
            await using (b)
            {
                var reading = TestData.ReadToEndAsync(server, CancellationToken.None);
                client.Cork();
                await TestData.WriteChunkedAsync(client, data, 1_000, CancellationToken.None); // ten 1000-byte "records"
                client.Uncork();
                client.ShutdownWrite();
                var bytes = await reading;
                return (sent.DataPayloads(), bytes);
            }
        });

        Assert.Equal(TestData.Sha256(data), TestData.Sha256(got));
        // 10,000 bytes: seven full datagrams and one of the 340 left, not ten (or more) short ones.
        Assert.Equal([Mss, Mss, Mss, Mss, Mss, Mss, Mss, data.Length - (7 * Mss)], sizes);
    }

    [Fact]
    public void Uncork_SendsTheHeldRemainder_AtOnce_NotAtTheNextTick()
    {
        var (lab, alice, bob) = Topology(seed: 4);

        var (heldWhileCorked, sentAtUncork, got) = lab.Run(async () =>
        {
            var (a, b, client, server, sent) = await ConnectAsync(lab, alice, bob);
            await using (a)
            await using (b)
            {
                client.Cork();
                await client.WriteAsync(new byte[500]);
                var held = sent.DataPayloads().Count == 0;
                var before = lab.Now;
                client.Uncork();
                var atOnce = sent.DataPayloads().Count == 1 && lab.Now == before;
                var buffer = new byte[1000];
                var n = await server.ReadAsync(buffer);
                return (held, atOnce, n);
            }
        });

        Assert.True(heldWhileCorked, "a short write must wait while corked");
        Assert.True(sentAtUncork, "uncorking must send the remainder in the same instant");
        Assert.Equal(500, got);
    }

    [Fact]
    public void Corked_WithoutUncork_TheRemainderLeavesWithinATickOfTheLastWrite()
    {
        var (lab, alice, bob) = Topology(seed: 5);
        var tick = UtpOptions.Default.TickInterval;

        var (heldAtFirst, sentAfter, got) = lab.Run(async () =>
        {
            var (a, b, client, server, sent) = await ConnectAsync(lab, alice, bob);
            await using (a)
            await using (b)
            {
                client.Cork();
                await client.WriteAsync(new byte[500]);
                var written = lab.Now;
                var held = sent.DataPayloads().Count == 0;
                var reading = server.ReadAsync(new byte[1000]).AsTask();
                await Task.Delay(2 * tick, lab.TimeProvider);
                return (held, sent.FirstDataSentAt - written, await reading);
            }
        });

        Assert.True(heldAtFirst);
        Assert.InRange(sentAfter, tick, 2 * tick); // the deadline is one tick; the timer that sees it, the next tick
        Assert.Equal(500, got);
    }

    [Fact]
    public void Corked_ShutdownWrite_SendsTheHeldBytes_ThenTheFin_AtOnce()
    {
        var (lab, alice, bob) = Topology(seed: 6);
        var data = TestData.Generate(500, 9);

        var (held, sentAtShutdown, order, got) = lab.Run(async () =>
        {
            var (a, b, client, server, sent) = await ConnectAsync(lab, alice, bob);
            await using (a)
            await using (b)
            {
                var reading = TestData.ReadToEndAsync(server, CancellationToken.None);
                client.Cork();
                await client.WriteAsync(data);
                var wasHeld = sent.DataPayloads().Count == 0;
                var at = lab.Now;
                client.ShutdownWrite(); // no Uncork: the shutdown itself sends what is held, then the FIN
                var atOnce = sent.FirstDataSentAt == at && sent.FinSentAt == at;
                return (wasHeld, atOnce, sent.Types(), await reading);
            }
        });

        Assert.True(held);
        Assert.True(sentAtShutdown, "the held bytes and the FIN must leave at the shutdown, not a tick later");
        Assert.Equal([UtpPacketType.Data, UtpPacketType.Fin], order);
        Assert.Equal(TestData.Sha256(data), TestData.Sha256(got));
    }

    /// <summary>A socket that records what uTP sends through it (the DATA packets' payload sizes and the time of
    /// the first one).</summary>
    private sealed class RecordingSocket(IDatagramSocket inner, VirtualNetwork lab) : IDatagramSocket
    {
        private readonly List<int> _payloads = [];
        private readonly List<UtpPacketType> _types = [];

        public TimeSpan FinSentAt { get; private set; } = TimeSpan.MaxValue;

        public List<UtpPacketType> Types()
        {
            lock (_payloads)
            {
                return [.. _types];
            }
        }

        public TimeSpan FirstDataSentAt { get; private set; } = TimeSpan.MaxValue;

        public IPEndPoint LocalEndPoint => inner.LocalEndPoint;

        public List<int> DataPayloads()
        {
            lock (_payloads)
            {
                return [.. _payloads];
            }
        }

        public ValueTask<int> SendToAsync(ReadOnlyMemory<byte> datagram, IPEndPoint remoteEndPoint,
            CancellationToken cancellationToken = default)
        {
            if (UtpHeader.TryParse(datagram.Span, out var header) && header.Type == UtpPacketType.Fin)
            {
                lock (_payloads)
                {
                    FinSentAt = FinSentAt == TimeSpan.MaxValue ? lab.Now : FinSentAt;
                    _types.Add(header.Type);
                }
            }
            else if (header.Type == UtpPacketType.Data && header.Payload.Length > 0)
            {
                lock (_payloads)
                {
                    _types.Add(header.Type);
                    if (_payloads.Count == 0)
                    {
                        FirstDataSentAt = lab.Now;
                    }

                    _payloads.Add(header.Payload.Length);
                }
            }

            return inner.SendToAsync(datagram, remoteEndPoint, cancellationToken);
        }

        public ValueTask<ReceivedDatagram> ReceiveFromAsync(Memory<byte> buffer,
            CancellationToken cancellationToken = default) => inner.ReceiveFromAsync(buffer, cancellationToken);

        public ValueTask DisposeAsync() => inner.DisposeAsync();

        public void Dispose() => inner.Dispose();
    }
}
