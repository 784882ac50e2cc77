using System.Buffers.Binary;
using System.Net;
using FsCheck;
using FsCheck.Fluent;
using NatKit.Net;
using NatKit.Stun;
using NatKit.Stun.Client;
using NatKit.Stun.Transactions;
using NatKit.Turn.Client;
using NatKit.Turn.Policy;
using NatKit.Turn.Server;
using NatKit.Utp;

namespace NatKit.Turn.Tests.SharedSocket;

/// <summary>Where a shared-socket test runs: a client, a server and a peer, each on a network with its address.</summary>
public sealed record StackNetworks(INetwork Client, IPAddress ClientAddress, INetwork Server, IPAddress ServerAddress,
    INetwork Peer, IPAddress PeerAddress, PeerPolicy RelayPolicy, Random? Random);

/// <summary>
/// The shared-socket stack's contract, written once and run on loopback and in the lab (the way the multiplexer's own
/// contract is): STUN Bindings, a TURN allocation and uTP streams, direct and over the relay, all on ONE client UDP
/// socket at once, each getting exactly its own traffic; and garbage or truncated STUN thrown at that socket never
/// disturbs a uTP transfer or a pending transaction.
/// </summary>
public abstract class SharedSocketStackContract
{
    /// <summary>Runs <paramref name="body"/> with the three networks (on the lab's loop, in virtual time, for the lab).</summary>
    protected abstract void Run(Func<StackNetworks, Task> body);

    /// <summary>The TURN server's UDP port (0 for any on loopback).</summary>
    protected abstract int ServerPort { get; }

    private static TurnServerOptions ServerOptions(StackNetworks n, int port) => new()
    {
        UdpListen = [new IPEndPoint(n.ServerAddress, port)],
        TcpListen = [],
        RelayAddress = n.ServerAddress,
        Users = new Dictionary<string, string> { ["a"] = "pa" },
        Policy = n.RelayPolicy,
        UnauthenticatedRequestsPerSecond = 0,
    };

    private static UtpOptions Utp(StackNetworks n) => new() { Random = n.Random, MaxDatagramSize = 1200 };

    [Fact]
    public void StunTurnAndUtp_OnOneSocketAtOnce_DirectAndOverTheRelay_EachGetTheirOwnTraffic()
    {
        Run(async n =>
        {
            await using var turnServer = await TurnServer.StartAsync(n.Server, ServerOptions(n, ServerPort));
            var server = turnServer.UdpEndPoints[0];
            await using var peerUtp = await UtpSocket.BindAsync(n.Peer, new IPEndPoint(n.PeerAddress, 0), Utp(n));
            await using var peerPlain = await n.Peer.BindUdpAsync(new IPEndPoint(n.PeerAddress, 0));

            await using var mux = new DatagramMultiplexer(
                await n.Client.BindUdpAsync(new IPEndPoint(n.ClientAddress, 0)));
            using var table = new StunTransactions(mux, n.Client.TimeProvider);
            using var rest = mux.CreateUnclaimedSocket();
            await using var utp = new UtpSocket(mux, n.Client.TimeProvider, Utp(n));

            // uTP, direct: a 200 kB round trip runs while everything else below happens on the same socket.
            var accept = peerUtp.AcceptAsync();
            await using var direct = await utp.ConnectAsync(peerUtp.LocalEndPoint);
            await using var accepted = await accept;
            var echo = EchoAsync(accepted);
            var up = Data(200_000, 1);
            var roundTrip = RoundTripAsync(direct, up);

            // TURN on the same socket, then STUN Bindings to the same server: one socket, one mapping.
            await using var turn = await TurnClient.AllocateAsync(table,
                new TurnClientOptions(server, "a", "pa") { KeepAlive = false });
            for (var i = 0; i < 5; i++)
            {
                var binding = await new StunClient(n.Client).BindingAsync(table, server);
                Assert.True(binding is { IsSuccess: true });
                Assert.Equal(turn.MappedEndPoint, binding.MappedAddress);
            }

            // The allocation as a datagram socket, to a plain peer and back.
            var buffer = new byte[2048];
            await turn.Socket.SendToAsync("via relay"u8.ToArray(), peerPlain.LocalEndPoint);
            var atPeer = await peerPlain.ReceiveFromAsync(buffer);
            Assert.Equal(turn.RelayedEndPoint, atPeer.RemoteEndPoint);
            await peerPlain.SendToAsync("relayed back"u8.ToArray(), atPeer.RemoteEndPoint);
            var relayed = await turn.Socket.ReceiveFromAsync(buffer);
            Assert.Equal(peerPlain.LocalEndPoint, relayed.RemoteEndPoint);
            Assert.Equal("relayed back", System.Text.Encoding.UTF8.GetString(buffer, 0, relayed.Length));

            // A probe on the same socket that is nobody's protocol reaches the unclaimed reader.
            await rest.SendToAsync("natkit-punch"u8.ToArray(), peerPlain.LocalEndPoint);
            var probe = await peerPlain.ReceiveFromAsync(buffer);
            await peerPlain.SendToAsync("natkit-punch-ack"u8.ToArray(), probe.RemoteEndPoint);
            // Whatever else nobody claims (a late duplicate answer to a request retransmitted under load, its
            // transaction done) may come first: the plain peer's datagram is the ack.
            var ack = await rest.ReceiveFromAsync(buffer);
            while (!ack.RemoteEndPoint.Equals(peerPlain.LocalEndPoint))
            {
                ack = await rest.ReceiveFromAsync(buffer);
            }

            Assert.Equal("natkit-punch-ack", System.Text.Encoding.UTF8.GetString(buffer, 0, ack.Length));

            // uTP over the relay, unchanged: a uTP endpoint on the allocation's socket connects to the same peer.
            await using (var relayUtp = new UtpSocket(turn.Socket, n.Client.TimeProvider, Utp(n), ownsSocket: false))
            {
                var acceptRelayed = peerUtp.AcceptAsync();
                await using var viaRelay = await relayUtp.ConnectAsync(peerUtp.LocalEndPoint);
                await using var acceptedRelayed = await acceptRelayed;
                Assert.Equal(turn.RelayedEndPoint, acceptedRelayed.RemoteEndPoint);
                var relayEcho = EchoAsync(acceptedRelayed);
                var small = Data(30_000, 2);
                Assert.Equal(small, await RoundTripAsync(viaRelay, small));
                await relayEcho;
            }

            Assert.Equal(up, await roundTrip);
            await echo;
            Assert.Equal(0, table.Count);
            Assert.Equal(0, mux.ReceiverFaults);
        });
    }

    [Fact]
    public void TheAllocationSocket_PushesRelayedDatagramsInline_InOrder_WithTheSocketsDrains_ThenQueuesAgain()
    {
        Run(async n =>
        {
            await using var turnServer = await TurnServer.StartAsync(n.Server, ServerOptions(n, ServerPort));
            await using var peer = await n.Peer.BindUdpAsync(new IPEndPoint(n.PeerAddress, 0));
            await using var mux = new DatagramMultiplexer(
                await n.Client.BindUdpAsync(new IPEndPoint(n.ClientAddress, 0)));
            using var table = new StunTransactions(mux, n.Client.TimeProvider);
            await using var turn = await TurnClient.AllocateAsync(table,
                new TurnClientOptions(turnServer.UdpEndPoints[0], "a", "pa") { KeepAlive = false });
            await turn.BindChannelAsync(peer.LocalEndPoint); // ChannelData, the relay's fast path

            // Before anyone pushes, a relayed datagram waits for a receive (the queue DrainTo empties into a push).
            await peer.SendToAsync(new byte[] { 0 }, turn.RelayedEndPoint);
            var buffer = new byte[64];
            var before = await turn.Socket.ReceiveFromAsync(buffer);
            Assert.Equal(peer.LocalEndPoint, before.RemoteEndPoint);

            const int count = 20;
            var pushed = Assert.IsAssignableFrom<IPushDatagramSocket>(turn.Socket);
            var recorder = new PushRecorder(count);
            using var stop = new CancellationTokenSource();
            var pushing = pushed.PushToAsync(recorder, stop.Token);
            await Assert.ThrowsAsync<InvalidOperationException>(() => pushed.PushToAsync(new PushRecorder(1), CancellationToken.None));
            for (var i = 1; i <= count; i++)
            {
                await peer.SendToAsync(new[] { (byte)i, (byte)~i }, turn.RelayedEndPoint);
            }

            // Every datagram went to the receiver, in order, from the peer; then the socket's drain reached it too.
            await recorder.DrainedAfterAll.Task;
            Assert.Equal(Enumerable.Range(1, count).Select(i => (byte)i), recorder.Got.Select(g => g.First));
            Assert.All(recorder.Got, g => Assert.Equal((byte)~g.First, g.Second));
            Assert.All(recorder.Sources, s => Assert.Equal(peer.LocalEndPoint, s));

            // Once the push ends, relayed datagrams are queued for a receive again.
            stop.Cancel();
            await pushing;
            await peer.SendToAsync("after"u8.ToArray(), turn.RelayedEndPoint);
            var after = await turn.Socket.ReceiveFromAsync(buffer);
            Assert.Equal("after", System.Text.Encoding.UTF8.GetString(buffer, 0, after.Length));
            Assert.Equal(count, recorder.Got.Count);
            Assert.Equal(0, turn.ReceiveDropped);
        });
    }

    /// <summary>A receiver pushed to: records what it is given; completes once it has <c>count</c> datagrams and
    /// then sees a drain (continuations inline: in the lab they stay on its loop).</summary>
    private sealed class PushRecorder(int count) : IDatagramReceiver
    {
        public List<(byte First, byte Second)> Got { get; } = [];

        public List<IPEndPoint> Sources { get; } = [];

        public TaskCompletionSource DrainedAfterAll { get; } = new();

        public bool TryReceive(ReadOnlySpan<byte> datagram, IPEndPoint source)
        {
            Got.Add((datagram[0], datagram.Length > 1 ? datagram[1] : (byte)0));
            Sources.Add(source);
            return true;
        }

        public void OnDrained()
        {
            if (Got.Count >= count)
            {
                DrainedAfterAll.TrySetResult();
            }
        }
    }

    /// <summary>One fuzz case: what the "server" throws at the shared socket while a Binding waits.</summary>
    public readonly record struct Junk(byte Kind, byte[] Bytes, ushort Cut);

    [Fact]
    public void Fuzz_GarbageAndTruncatedStun_OnTheSharedSocket_NeverDisturbUtp_OrAPendingTransaction()
    {
        var property = Prop.ForAll(ArbMap.Default.ArbFor<Junk[]>(), junk =>
        {
            Run(n => GarbageCaseAsync(n, junk));
            return true;
        });
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(MaxFuzzCases), property);
    }

    /// <summary>Fuzz cases per run (each one a whole scenario).</summary>
    protected virtual int MaxFuzzCases => 12;

    private async Task GarbageCaseAsync(StackNetworks n, Junk[] junk)
    {
        // A hand-driven "STUN server", so the garbage lands while the transaction is pending.
        await using var fake = await n.Server.BindUdpAsync(new IPEndPoint(n.ServerAddress, ServerPort));
        await using var peerUtp = await UtpSocket.BindAsync(n.Peer, new IPEndPoint(n.PeerAddress, 0), Utp(n));
        await using var mux = new DatagramMultiplexer(await n.Client.BindUdpAsync(new IPEndPoint(n.ClientAddress, 0)));
        using var table = new StunTransactions(mux, n.Client.TimeProvider);
        using var rest = mux.CreateUnclaimedSocket(queueCapacity: 1024);
        await using var utp = new UtpSocket(mux, n.Client.TimeProvider, Utp(n));

        var accept = peerUtp.AcceptAsync();
        await using var stream = await utp.ConnectAsync(peerUtp.LocalEndPoint);
        await using var accepted = await accept;
        var echo = EchoAsync(accepted);
        var up = Data(64_000, 3);
        var roundTrip = RoundTripAsync(stream, up);

        var client = new StunClient(n.Client, new StunClientOptions { InitialRto = TimeSpan.FromSeconds(2) });
        var binding = client.BindingAsync(table, fake.LocalEndPoint);
        var buffer = new byte[2048];
        var request = await fake.ReceiveFromAsync(buffer);
        Assert.True(StunMessageReader.TryParse(buffer.AsSpan(0, request.Length), out var r));
        var genuine = Response(r.TransactionId, request.RemoteEndPoint);
        foreach (var j in junk)
        {
            var bytes = Garbage(j, genuine);
            if (bytes.Length > 0)
            {
                await fake.SendToAsync(bytes, request.RemoteEndPoint);
            }
        }

        await fake.SendToAsync(genuine, request.RemoteEndPoint);
        var response = await binding;
        Assert.NotNull(response);
        Assert.Equal(request.RemoteEndPoint, response.MappedAddress);
        Assert.Equal(up, await roundTrip);
        await echo;
        Assert.Equal(0, mux.ReceiverFaults);
        Assert.Equal(0, table.Count);
    }

    /// <summary>Random bytes; a genuine response cut short; its length field wrong; a response to another id;
    /// a uTP-looking header with random fields.</summary>
    private static byte[] Garbage(Junk j, byte[] genuine)
    {
        switch (j.Kind % 5)
        {
            case 0:
                return j.Bytes ?? [];
            case 1:
                return genuine[..(j.Cut % genuine.Length)]; // truncated: never a whole STUN message
            case 2:
            {
                var b = (byte[])genuine.Clone();
                BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(2), (ushort)(genuine.Length - 20 + 4 + (4 * (j.Cut % 8))));
                return b;
            }

            case 3:
            {
                var b = (byte[])genuine.Clone();
                b[8 + (j.Cut % 12)] ^= (byte)(1 + (j.Cut >> 8)); // another transaction's id
                return b;
            }

            default:
            {
                var b = new byte[20 + ((j.Bytes?.Length ?? 0) % 100)];
                (j.Bytes ?? []).AsSpan(0, Math.Min(b.Length, j.Bytes?.Length ?? 0)).CopyTo(b);
                b[0] = (byte)((j.Cut & 0x40) | 0x01); // a uTP version-1 header of type DATA or RESET
                return b;
            }
        }
    }

    private static byte[] Response(StunTransactionId id, IPEndPoint mapped)
    {
        var b = new byte[64];
        var w = new StunMessageWriter(b, StunMethods.Binding, StunClass.SuccessResponse, id);
        w.AddXorAddress(StunAttributeType.XorMappedAddress, StunAddress.FromEndPoint(mapped));
        w.AddFingerprint();
        return b[..w.Length];
    }

    private static byte[] Data(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    private static async Task EchoAsync(UtpStream stream)
    {
        var buffer = new byte[16384];
        int n;
        while ((n = await stream.ReadAsync(buffer)) > 0)
        {
            await stream.WriteAsync(buffer.AsMemory(0, n));
        }

        await stream.FlushAsync();
        stream.ShutdownWrite();
    }

    private static async Task<byte[]> RoundTripAsync(UtpStream stream, byte[] data)
    {
        var read = ReadAllAsync(stream, data.Length);
        await stream.WriteAsync(data);
        await stream.FlushAsync();
        stream.ShutdownWrite();
        return await read;
    }

    private static async Task<byte[]> ReadAllAsync(UtpStream stream, int expected)
    {
        var all = new byte[expected + 1];
        var filled = 0;
        int n;
        while ((n = await stream.ReadAsync(all.AsMemory(filled))) > 0)
        {
            filled += n;
            if (filled == all.Length)
            {
                break;
            }
        }

        return all[..filled];
    }
}
