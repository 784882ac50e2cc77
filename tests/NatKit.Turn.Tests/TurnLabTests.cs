using System.Net;
using NatKit.Lab;
using NatKit.Nat;
using NatKit.Net;
using NatKit.Stun;
using NatKit.Stun.Client;
using NatKit.Stun.Transactions;
using NatKit.Turn.Client;
using NatKit.Turn.Policy;
using NatKit.Turn.Protocol;
using NatKit.Turn.Server;

namespace NatKit.Turn.Tests;

/// <summary>The same server and client inside the in-memory lab: two peers behind symmetric NATs (where hole
/// punching fails) reach each other through the relay, in virtual time.</summary>
public class TurnLabTests
{
    private static readonly IPAddress ServerAddress = IPAddress.Parse("203.0.113.100");

    private static (VirtualNetwork Lab, LabHost Server, LabHost A, LabHost B) Build()
    {
        var lab = new VirtualNetwork(seed: 11);
        var internet = lab.AddSegment("internet");
        var homeA = lab.AddSegment("home-a", "192.168.1.0/24");
        var homeB = lab.AddSegment("home-b", "192.168.2.0/24");
        lab.AddRouter("nat-a", NatPresets.Symmetric, homeA, "192.168.1.1", internet, "198.51.100.1");
        lab.AddRouter("nat-b", NatPresets.Symmetric, homeB, "192.168.2.1", internet, "198.51.100.2");
        var server = lab.AddHost("turn", internet, "203.0.113.100");
        var a = lab.AddHost("a", homeA, "192.168.1.10");
        var b = lab.AddHost("b", homeB, "192.168.2.10");
        return (lab, server, a, b);
    }

    private static TurnServerOptions Options(PeerPolicy policy) => new()
    {
        UdpListen = [new IPEndPoint(ServerAddress, 3478)],
        RelayAddress = ServerAddress,
        Users = new Dictionary<string, string> { ["a"] = "pa", ["b"] = "pb" },
        Policy = policy,
    };

    [Fact]
    public void TwoPeersBehindSymmetricNats_TalkThroughTheRelay()
    {
        var (lab, serverHost, a, b) = Build();
        var received = lab.Run(async () =>
        {
            // The lab's "internet" is TEST-NET: the relay's own range must be allowed explicitly here.
            await using var server = await TurnServer.StartAsync(serverHost,
                Options(new PeerPolicy(allow: [PeerRule.Parse("203.0.113.0/24")])));
            await using var ca = await TurnClient.AllocateAsync(a, new TurnClientOptions(new IPEndPoint(ServerAddress, 3478), "a", "pa"));
            await using var cb = await TurnClient.AllocateAsync(b, new TurnClientOptions(new IPEndPoint(ServerAddress, 3478), "b", "pb"));
            Assert.Equal(IPAddress.Parse("198.51.100.1"), ca.MappedEndPoint.Address);
            await ca.BindChannelAsync(cb.RelayedEndPoint);
            await cb.BindChannelAsync(ca.RelayedEndPoint);
            await ca.SendAsync("over the relay"u8.ToArray(), cb.RelayedEndPoint);
            var buffer = new byte[100];
            var r = await cb.ReceiveAsync(buffer);
            Assert.Equal(ca.RelayedEndPoint, r.Peer);

            // Keep-alive holds the allocation past its 600 s lifetime, in virtual time.
            await Task.Delay(TimeSpan.FromMinutes(25), serverHost.TimeProvider);
            Assert.Equal(2, server.AllocationCount);
            await cb.SendAsync("still there"u8.ToArray(), ca.RelayedEndPoint);
            var back = await ca.ReceiveAsync(buffer);
            return System.Text.Encoding.UTF8.GetString(buffer, 0, back.Length);
        });
        Assert.Equal("still there", received);
    }

    [Fact]
    public void Rfc8489_S6_2_1_Client_GivesUpOnASilentServer_After39_5Seconds()
    {
        var (lab, serverHost, a, _) = Build();
        var elapsed = lab.Run(async () =>
        {
            // A socket that is bound but never answers: the Allocate goes unanswered seven times.
            await using var silent = await serverHost.BindUdpAsync(new IPEndPoint(ServerAddress, 3478));
            var time = a.TimeProvider;
            var start = time.GetTimestamp();
            await Assert.ThrowsAsync<TimeoutException>(() =>
                TurnClient.AllocateAsync(a, new TurnClientOptions(new IPEndPoint(ServerAddress, 3478), "a", "pa")));
            return time.GetElapsedTime(start);
        });
        Assert.Equal(TimeSpan.FromMilliseconds(39_500), elapsed);
    }

    [Fact]
    public void Rfc8489_S6_2_2_Client_OverTcp_SendsOnce_AndGivesUpAfterTi()
    {
        var (lab, serverHost, a, _) = Build();
        var (elapsed, received) = lab.Run(async () =>
        {
            // A listener that takes the connection and reads everything but never answers.
            var ep = new IPEndPoint(ServerAddress, 3478);
            await using var listener = await serverHost.ListenTcpAsync(ep);
            var accepted = listener.AcceptAsync();
            var time = a.TimeProvider;
            var start = time.GetTimestamp();
            var allocate = TurnClient.AllocateAsync(a,
                new TurnClientOptions(ep, "a", "pa") { Transport = TurnTransport.Tcp });
            await using var connection = await accepted;
            var received = new MemoryStream();
            _ = ReadUntilClosedAsync(connection, received);
            await Assert.ThrowsAsync<TimeoutException>(() => allocate);
            var elapsed = time.GetElapsedTime(start);
            await Task.Delay(TimeSpan.FromSeconds(60), time); // nothing more comes after the give-up either
            return (elapsed, received.ToArray());
        });

        Assert.Equal(TimeSpan.FromMilliseconds(39_500), elapsed); // Ti, not the UDP schedule's sum by chance
        Assert.True(StunFraming.TryGetFrameLength(received, out var length));
        Assert.Equal(received.Length, length); // one Allocate, never retransmitted over the reliable transport
        Assert.Equal(TurnMethods.Allocate, StunMessage.Parse(received)?.Method);
    }

    private static async Task ReadUntilClosedAsync(NatKit.Net.IStreamConnection c, MemoryStream into)
    {
        var buffer = new byte[512];
        try
        {
            int n;
            while ((n = await c.Stream.ReadAsync(buffer)) > 0)
            {
                into.Write(buffer, 0, n);
            }
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or OperationCanceledException)
        {
            // the client went away
        }
    }

    [Fact]
    public void DefaultPolicy_InTheLab_RefusesTheDocumentationRange()
    {
        var (lab, serverHost, a, _) = Build();
        var code = lab.Run(async () =>
        {
            await using var server = await TurnServer.StartAsync(serverHost, Options(PeerPolicy.Default));
            await using var ca = await TurnClient.AllocateAsync(a, new TurnClientOptions(new IPEndPoint(ServerAddress, 3478), "a", "pa"));
            var e = await Assert.ThrowsAsync<TurnException>(() => ca.CreatePermissionAsync(IPAddress.Parse("203.0.113.7")));
            return e.Code;
        });
        Assert.Equal(403, code);
    }

    [Fact]
    public void OverTcp_AllocatesAndRelaysBothWays_WithIndicationsAndChannelData()
    {
        var lab = new VirtualNetwork(seed: 12);
        var internet = lab.AddSegment("internet");
        var home = lab.AddSegment("home", "192.168.1.0/24");
        lab.AddRouter("nat", NatPresets.Symmetric, home, "192.168.1.1", internet, "198.51.100.1");
        var serverHost = lab.AddHost("turn", internet, "203.0.113.100");
        var peerHost = lab.AddHost("peer", internet, "203.0.113.7");
        var clientHost = lab.AddHost("client", home, "192.168.1.10");
        var ep = new IPEndPoint(ServerAddress, 3478);
        var (got, elapsed) = lab.Run(async () =>
        {
            var time = clientHost.TimeProvider;
            var start = time.GetTimestamp();
            await using var server = await TurnServer.StartAsync(serverHost,
                Options(new PeerPolicy(allow: [PeerRule.Parse("203.0.113.0/24")])) with { TcpListen = [ep] });
            await using var peer = await peerHost.BindUdpAsync(new IPEndPoint(IPAddress.Parse("203.0.113.7"), 5000));
            await using var client = await TurnClient.AllocateAsync(clientHost,
                new TurnClientOptions(ep, "a", "pa") { Transport = TurnTransport.Tcp });
            Assert.Equal(IPAddress.Parse("198.51.100.1"), client.MappedEndPoint.Address);
            Assert.Equal(ServerAddress, client.RelayedEndPoint.Address);
            var buffer = new byte[100];
            var seen = new List<string>();

            // Send and Data indications.
            await client.CreatePermissionAsync(peer.LocalEndPoint.Address);
            await client.SendAsync("indication out"u8.ToArray(), peer.LocalEndPoint);
            var d = await peer.ReceiveFromAsync(buffer);
            Assert.Equal(client.RelayedEndPoint, d.RemoteEndPoint);
            seen.Add(System.Text.Encoding.UTF8.GetString(buffer, 0, d.Length));
            await peer.SendToAsync("indication in"u8.ToArray(), client.RelayedEndPoint);
            var r = await client.ReceiveAsync(buffer);
            Assert.Equal(peer.LocalEndPoint, r.Peer);
            seen.Add(System.Text.Encoding.UTF8.GetString(buffer, 0, r.Length));

            // ChannelData, with odd lengths so the RFC 8656 section 11.5 padding over TCP is exercised.
            await client.BindChannelAsync(peer.LocalEndPoint);
            await client.SendAsync("channel out"u8.ToArray(), peer.LocalEndPoint);
            d = await peer.ReceiveFromAsync(buffer);
            seen.Add(System.Text.Encoding.UTF8.GetString(buffer, 0, d.Length));
            await peer.SendToAsync("channel in"u8.ToArray(), client.RelayedEndPoint);
            await peer.SendToAsync("channel in, twice"u8.ToArray(), client.RelayedEndPoint);
            r = await client.ReceiveAsync(buffer);
            seen.Add(System.Text.Encoding.UTF8.GetString(buffer, 0, r.Length));
            r = await client.ReceiveAsync(buffer);
            seen.Add(System.Text.Encoding.UTF8.GetString(buffer, 0, r.Length));
            return (seen, time.GetElapsedTime(start));
        });
        Assert.Equal(["indication out", "indication in", "channel out", "channel in", "channel in, twice"], got);

        // The lab's links have no latency: every transaction was answered at once, none waited for a timer.
        Assert.Equal(TimeSpan.Zero, elapsed);
    }

    [Fact]
    public void Rfc8489_S6_2_1_Client_DoesNotRetransmit_AnAnsweredRequest()
    {
        var (lab, serverHost, a, _) = Build();
        var elapsed = lab.Run(async () =>
        {
            await using var server = await TurnServer.StartAsync(serverHost,
                Options(new PeerPolicy(allow: [PeerRule.Parse("203.0.113.0/24")])));
            var time = a.TimeProvider;
            var start = time.GetTimestamp();
            await using var ca = await TurnClient.AllocateAsync(a,
                new TurnClientOptions(new IPEndPoint(ServerAddress, 3478), "a", "pa") { KeepAlive = false });
            await ca.CreatePermissionAsync(IPAddress.Parse("203.0.113.7"));
            await ca.BindChannelAsync(new IPEndPoint(IPAddress.Parse("203.0.113.7"), 5000));
            return time.GetElapsedTime(start);
        });

        // The 401, Allocate, CreatePermission and ChannelBind are all answered at once on the lab's latency-free
        // links: no 500 ms retransmission timer may fire (it did for every one of them when the wait for the
        // response left the lab's loop).
        Assert.Equal(TimeSpan.Zero, elapsed);
    }

    /// <summary>True once the other side closed (FIN or reset).</summary>
    private static async Task<bool> ClosedAsync(NatKit.Net.IStreamConnection c)
    {
        try
        {
            return await c.Stream.ReadAsync(new byte[64]) == 0;
        }
        catch (IOException)
        {
            return true;
        }
    }

    [Fact]
    public void TcpStrangers_InTheLab_OneSlotPerNatAddress_AndSilenceEndsAfterTheHandshakeWindow()
    {
        var (lab, serverHost, a, b) = Build();
        var (rejected, silentFor, answered, timedOut) = lab.Run(async () =>
        {
            var ep = new IPEndPoint(ServerAddress, 3478);
            await using var server = await TurnServer.StartAsync(serverHost, Options(PeerPolicy.Default) with
            {
                TcpListen = [ep],
                MaxTcpConnectionsPerAddress = 1,
                MaxTcpConnections = 4,
            });
            var time = a.TimeProvider;
            var start = time.GetTimestamp();
            await using var silent = await a.ConnectTcpAsync(ep);
            await using var second = await a.ConnectTcpAsync(ep); // the same NAT address: over its cap
            var rejected = await ClosedAsync(second);

            // Another NAT address is served: a Binding over TCP answered with its mapped address.
            await using var other = await b.ConnectTcpAsync(ep);
            var request = new byte[20];
            var w = new StunMessageWriter(request, StunMethods.Binding, StunClass.Request, StunTransactionId.NewRandom());
            await other.Stream.WriteAsync(request.AsMemory(0, w.Length));
            var answer = new byte[128];
            var n = await other.Stream.ReadAsync(answer);
            var mapped = StunMessage.Parse(answer.AsSpan(0, n))?.Class == StunClass.SuccessResponse;

            Assert.True(await ClosedAsync(silent));
            return (rejected, time.GetElapsedTime(start), mapped, server.Metrics.ConnectionsTimedOut);
        });
        Assert.True(rejected);
        Assert.InRange(silentFor, TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(10.5));
        Assert.True(answered);
        Assert.Equal(1, timedOut);
    }

    [Fact]
    public void OnASharedSocket_TurnStunAndDirectTrafficRunTogether_AndTheAllocationIsADatagramSocket()
    {
        var (lab, serverHost, a, _) = Build();
        var peerHost = lab.AddHost("peer", lab.Segments.Single(x => x.Name == "internet"), "203.0.113.50");
        var server = new IPEndPoint(ServerAddress, 3478);
        var (viaRelay, direct, channel, afterOversize, bindingAfter) = lab.Run(async () =>
        {
            await using var turnServer = await TurnServer.StartAsync(serverHost,
                Options(new PeerPolicy(allow: [PeerRule.Parse("203.0.113.0/24")])));
            var peer = await peerHost.BindUdpAsync(new IPEndPoint(IPAddress.Parse("203.0.113.50"), 9000));
            await using var mux = new DatagramMultiplexer(
                await a.BindUdpAsync(new IPEndPoint(IPAddress.Parse("192.168.1.10"), 0)));
            using var table = new StunTransactions(mux, a.TimeProvider);
            using var rest = mux.CreateUnclaimedSocket();
            var buffer = new byte[2000];

            var turn = await TurnClient.AllocateAsync(table, new TurnClientOptions(server, "a", "pa"));
            var binding = await new StunClient(a).BindingAsync(table, server);
            Assert.Equal(turn.MappedEndPoint, binding!.MappedAddress); // one socket, one NAT mapping
            Assert.Equal(mux.LocalEndPoint, turn.LocalEndPoint);
            var relay = turn.Socket;
            Assert.Equal(turn.RelayedEndPoint, relay.LocalEndPoint);

            // Through the relay as a plain datagram socket: the permission is installed on the first send.
            await relay.SendToAsync("via relay"u8.ToArray(), peer.LocalEndPoint);
            var got = await peer.ReceiveFromAsync(buffer);
            Assert.Equal(turn.RelayedEndPoint, got.RemoteEndPoint);
            await peer.SendToAsync("back"u8.ToArray(), turn.RelayedEndPoint);
            var r = await relay.ReceiveFromAsync(buffer);
            Assert.Equal(peer.LocalEndPoint, r.RemoteEndPoint);
            var back = System.Text.Encoding.UTF8.GetString(buffer, 0, r.Length);

            // Direct traffic on the same socket is not TURN's: it reaches the socket's other reader.
            await rest.SendToAsync("direct"u8.ToArray(), peer.LocalEndPoint);
            var d = await peer.ReceiveFromAsync(buffer);
            Assert.Equal(turn.MappedEndPoint.Address, d.RemoteEndPoint.Address); // a new mapping: the NAT is symmetric
            await peer.SendToAsync("direct back"u8.ToArray(), d.RemoteEndPoint);
            var dr = await rest.ReceiveFromAsync(buffer);
            var directBack = System.Text.Encoding.UTF8.GetString(buffer, 0, dr.Length);

            // ChannelData once a channel is bound; a datagram larger than the reader's buffer is dropped, whole.
            await turn.BindChannelAsync(peer.LocalEndPoint);
            await peer.SendToAsync(new byte[1200], turn.RelayedEndPoint);
            var c = await relay.ReceiveFromAsync(buffer);
            var small = new byte[100];
            var receive = relay.ReceiveFromAsync(small);
            await peer.SendToAsync(new byte[300], turn.RelayedEndPoint);
            await peer.SendToAsync(new byte[10], turn.RelayedEndPoint);
            var s = await receive;

            // The client leaves; the shared socket and its table carry on.
            await turn.DisposeAsync();
            Assert.Equal(0, table.Count);
            var again = await new StunClient(a).BindingAsync(table, server);
            return (back, directBack, c.Length, s.Length, again);
        });

        Assert.Equal("back", viaRelay);
        Assert.Equal("direct back", direct);
        Assert.Equal(1200, channel);
        Assert.Equal(10, afterOversize);
        Assert.True(bindingAfter is { IsSuccess: true });
    }
}
