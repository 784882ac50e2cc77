using System.Net;
using System.Text;
using NatKit.Lab;
using NatKit.Lab.Scheduling;
using NatKit.Nat;
using NatKit.Net;
using NatKit.Stun.Client;
using NatKit.Stun.Server;
using NatKit.Traversal.Ice;
using NatKit.Turn.Client;
using NatKit.Turn.Policy;
using NatKit.Turn.Server;
using Xunit.Abstractions;

namespace NatKit.Traversal.Tests.Ice;

/// <summary>
/// The driver (<see cref="IceTransport"/>) running two agents on sockets: in the lab behind real NAT engines in
/// virtual time (server-reflexive candidates from a real STUN server, a relayed one from a real TURN server), and
/// on loopback on real sockets.
/// </summary>
public class IceTransportTests(ITestOutputHelper output)
{
    private static readonly IPEndPoint Stun = IPEndPoint.Parse("203.0.113.100:3478");
    private static readonly IPEndPoint Turn = IPEndPoint.Parse("203.0.113.200:3478");
    private static readonly LabRunOptions TenMinutes = new() { MaxVirtualTime = TimeSpan.FromMinutes(10) };

    [Fact]
    public void Lab_TwoPortRestrictedConeNats_ConnectDirectlyOnSrflxCandidates_AndHoldThePathForMinutes()
    {
        var lab = Build(NatPresets.PortRestrictedCone, NatPresets.PortRestrictedCone);
        lab.Run(async () =>
        {
            await using var stun = await StartStunAsync(lab);
            await using var a = await Peer.GatherAsync(lab.Host("a"), IceRole.Controlling, 1);
            await using var b = await Peer.GatherAsync(lab.Host("b"), IceRole.Controlled, 2);
            SignalAndStart(a, b);

            var pairA = await a.Transport.Connected;
            var pairB = await b.Transport.Connected;

            // The only path through two port-restricted NATs: mapped address to mapped address.
            Assert.Equal(a.Srflx.EndPoint, pairA.Local.EndPoint);
            Assert.Equal(b.Srflx.EndPoint, pairA.Remote.EndPoint);
            Assert.Equal(b.Srflx.EndPoint, pairB.Local.EndPoint);
            Assert.Equal(a.Srflx.EndPoint, pairB.Remote.EndPoint);
            var path = a.Transport.SelectedPath!;
            Assert.Equal(IceCandidateType.ServerReflexive, path.LocalType);
            Assert.Equal(IceCandidateType.ServerReflexive, path.RemoteType);
            Assert.False(path.IsRelayed);
            // Four 10 ms links between the hosts and the internet: 40 ms there and back.
            Assert.Equal(TimeSpan.FromMilliseconds(40), path.Rtt);
            Assert.InRange(path.TimeToConnect, TimeSpan.FromMilliseconds(40), TimeSpan.FromSeconds(2));
            output.WriteLine($"port-restricted x port-restricted, srflx: connected {path.TimeToConnect.TotalMilliseconds} ms " +
                             $"(virtual) after the first check, {path.ChecksStarted} checks, {path.RequestsSent} requests");

            await AssertDataFlowsAsync(a, b, "first");

            // Six minutes of silence from the application (the NATs' UDP mappings last five): consent checks and
            // answers keep the path and the mappings alive on both sides.
            var consentBefore = a.Agent.Stats.ConsentChecksSent;
            await Task.Delay(TimeSpan.FromMinutes(6), lab.TimeProvider);
            Assert.Equal(IceAgentState.Connected, a.Agent.State);
            Assert.Equal(IceAgentState.Connected, b.Agent.State);
            Assert.Same(pairA, a.Transport.SelectedPair);
            // RFC 7675: one consent check per 4-6 s.
            Assert.InRange(a.Agent.Stats.ConsentChecksSent - consentBefore, 360 / 6, 360 / 4);
            await AssertDataFlowsAsync(a, b, "after six minutes");
        }, TenMinutes);
    }

    [Fact]
    public void Lab_PeerGoesSilent_ConsentIsLostAfterThirtySeconds_AndDataStops()
    {
        var lab = Build(NatPresets.FullCone, NatPresets.FullCone);
        lab.Run(async () =>
        {
            await using var stun = await StartStunAsync(lab);
            await using var a = await Peer.GatherAsync(lab.Host("a"), IceRole.Controlling, 3);
            var b = await Peer.GatherAsync(lab.Host("b"), IceRole.Controlled, 4);
            SignalAndStart(a, b);
            await a.Transport.Connected;
            await b.Transport.Connected;
            await AssertDataFlowsAsync(a, b, "before");

            var lost = new TaskCompletionSource<TimeSpan>();
            a.Transport.EventRaised += e =>
            {
                if (e is IceConsentLost)
                {
                    lost.TrySetResult(a.Transport.Now);
                }
            };
            var silentAt = a.Transport.Now;
            await b.DisposeAsync();

            var at = await lost.Task;
            // The last answer came up to one consent interval (<= 6 s) before the peer went silent.
            Assert.InRange(at - silentAt, TimeSpan.FromSeconds(24), TimeSpan.FromSeconds(31));
            Assert.Equal(IceAgentState.Failed, a.Agent.State);
            Assert.Null(a.Transport.SelectedPair);
            // RFC 7675 section 5.1: no more data on that path.
            Assert.Equal(0, await a.Transport.DataSocket.SendToAsync("late"u8.ToArray(), b.Srflx.EndPoint));
        }, TenMinutes);
    }

    [Fact]
    public void Lab_RelayedPairFirst_ThenATrickledCandidateOpensADirectPath_AndTheDriverMovesToIt()
    {
        var lab = Build(NatPresets.PortRestrictedCone, NatPresets.PortRestrictedCone);
        lab.Run(async () =>
        {
            await using var stun = await StartStunAsync(lab);
            await using var turn = await TurnServer.StartAsync(lab.Host("turn"), new TurnServerOptions
            {
                UdpListen = [Turn],
                RelayAddress = Turn.Address,
                Users = new Dictionary<string, string> { ["b"] = "pb" },
                // The lab's internet is TEST-NET: the NATs' outside range must be allowed explicitly.
                Policy = new PeerPolicy(allow: [PeerRule.Parse("198.51.100.0/24")]),
            });
            await using var a = await Peer.GatherAsync(lab.Host("a"), IceRole.Controlling, 5);
            await using var b = await Peer.GatherAsync(lab.Host("b"), IceRole.Controlled, 6);
            await using var allocation = await TurnClient.AllocateAsync(lab.Host("b"),
                new TurnClientOptions(Turn, "b", "pb"));
            // The allocation is itself a datagram socket (permissions installed on first send). Its datagrams are
            // handed in by a pump that awaits without ConfigureAwait(false), as TraversalNode's relay pump does, so
            // they are delivered on the lab's loop (docs/lab.md, rule 3).
            await allocation.CreatePermissionAsync(a.Srflx.EndPoint.Address);
            var relaySocket = b.Transport.AddSocket(allocation.Socket, receive: false);
            _ = PumpAsync(allocation.Socket, b.Transport, relaySocket);
            var relayed = IceCandidate.Relayed(allocation.RelayedEndPoint, allocation.MappedEndPoint, Turn.Address);
            Assert.True(b.Transport.AddLocalCandidate(relayed, relaySocket));

            // B signals its host and relayed candidates but not (yet) its mapped address: nothing direct works.
            a.Signal(b, b.Host, relayed);
            b.Signal(a, a.Host, a.Srflx);
            var changes = new List<IceSelectedPairChanged>();
            a.Transport.EventRaised += e =>
            {
                if (e is IceSelectedPairChanged c)
                {
                    changes.Add(c);
                }
            };
            a.Transport.Start();
            b.Transport.Start();

            var first = await a.Transport.Connected;
            await b.Transport.Connected;
            Assert.True(first.IsRelayed);
            Assert.Equal(allocation.RelayedEndPoint, first.Remote.EndPoint);
            Assert.True(a.Transport.SelectedPath!.IsRelayed);
            await AssertDataFlowsAsync(a, b, "through the relay");

            // A port mapping (say) gives B's public address late: the hook adds it while the relay carries data.
            var mapped = b.Srflx with { Origin = IceCandidateOrigin.PortMapped };
            Assert.True(a.Transport.AddRemoteCandidate(mapped));
            var upgraded = new TaskCompletionSource();
            a.Transport.EventRaised += e =>
            {
                if (e is IceSelectedPairChanged { Reason: IceSelectionReason.Upgraded })
                {
                    upgraded.TrySetResult();
                }
            };
            var trickledAt = a.Transport.Now;
            await upgraded.Task;

            // The upgrade probe goes out within one upgrade interval and takes a round trip and a nomination.
            Assert.InRange(a.Transport.Now - trickledAt, TimeSpan.Zero, TimeSpan.FromSeconds(1.5));
            var direct = a.Transport.SelectedPair!;
            Assert.False(direct.IsRelayed);
            Assert.Equal(b.Srflx.EndPoint, direct.Remote.EndPoint);
            Assert.Equal([IceSelectionReason.Nominated, IceSelectionReason.Upgraded], changes.Select(c => c.Reason));
            var path = a.Transport.SelectedPath!;
            Assert.Equal(IceCandidateOrigin.PortMapped, path.RemoteOrigin);
            Assert.Equal(IceCandidateType.ServerReflexive, path.LocalType);
            Assert.True(path.TimeToSelected > path.TimeToConnect);
            output.WriteLine($"relay first: connected {path.TimeToConnect.TotalMilliseconds} ms, direct pair selected " +
                             $"{(a.Transport.Now - trickledAt).TotalMilliseconds} ms after the trickled candidate");
            await Task.Delay(TimeSpan.FromMilliseconds(200), lab.TimeProvider);
            Assert.False(b.Transport.SelectedPair!.IsRelayed);

            // The relay goes away: the data keeps flowing on the direct path, same sockets, same peer address.
            await allocation.DisposeAsync();
            await AssertDataFlowsAsync(a, b, "direct");
        }, TenMinutes);
    }

    [Fact]
    public void Lab_GarbageAndForgedStunFromTheInternet_DuringChecks_NeitherStopsThemNorReachesTheApplication()
    {
        var lab = Build(NatPresets.FullCone, NatPresets.FullCone);
        var attacker = lab.AddHost("attacker", lab.Segment("internet"), "203.0.113.66");
        lab.Run(async () =>
        {
            await using var stun = await StartStunAsync(lab);
            await using var a = await Peer.GatherAsync(lab.Host("a"), IceRole.Controlling, 7);
            await using var b = await Peer.GatherAsync(lab.Host("b"), IceRole.Controlled, 8);
            SignalAndStart(a, b);

            // A full-cone NAT lets anyone reach A's mapping: random bytes, and Binding requests and responses
            // with the STUN cookie whose bodies are cut short or flipped, 400 of them over the first two seconds.
            await using var noise = await attacker.BindUdpAsync(new IPEndPoint(IPAddress.Any, 0));
            var random = new Random(9);
            var stunLike = new byte[] { 0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xA4, 0x42 };
            for (var i = 0; i < 400; i++)
            {
                var junk = new byte[random.Next(1, 120)];
                random.NextBytes(junk);
                if (i % 2 == 0)
                {
                    stunLike.AsSpan(0, Math.Min(stunLike.Length, junk.Length)).CopyTo(junk);
                    junk[0] = (byte)(i % 4 == 0 ? 0x00 : 0x01); // a Binding request, or a success response
                }

                await noise.SendToAsync(junk, a.Srflx.EndPoint);
                await Task.Delay(TimeSpan.FromMilliseconds(5), lab.TimeProvider);
            }

            await a.Transport.Connected;
            await b.Transport.Connected;
            Assert.Equal(a.Srflx.EndPoint, a.Transport.SelectedPair!.Local.EndPoint);
            Assert.Equal(IceAgentState.Connected, a.Agent.State);
            Assert.True(a.Agent.Stats.Dropped > 0, "some of the noise parsed as STUN and was dropped");
            // The application sees the peer's datagrams only (the first thing read is the peer's pong).
            await AssertDataFlowsAsync(a, b, "through the noise");
        }, TenMinutes);
    }

    [Fact]
    public async Task Loopback_TwoDriversOnRealSockets_Connect_AndCarryDataOnlyFromThePeer()
    {
        var network = SystemNetwork.Instance;
        var loopback = new IPEndPoint(IPAddress.Loopback, 0);
        await using var a = await Peer.BindAsync(network, loopback, IceRole.Controlling, null);
        await using var b = await Peer.BindAsync(network, loopback, IceRole.Controlled, null);
        a.Signal(b, b.Host);
        b.Signal(a, a.Host);
        a.Transport.Start();
        b.Transport.Start();
        var timeout = TimeSpan.FromSeconds(20);
        var pair = await a.Transport.Connected.WaitAsync(timeout);
        await b.Transport.Connected.WaitAsync(timeout);
        Assert.Equal(b.Host.EndPoint, pair.Remote.EndPoint);
        Assert.Equal(IceCandidateType.Host, a.Transport.SelectedPath!.RemoteType);
        output.WriteLine($"loopback: connected {a.Transport.SelectedPath.TimeToConnect.TotalMilliseconds:F1} ms " +
                         $"after the first check, RTT {a.Transport.SelectedPath.Rtt?.TotalMilliseconds:F2} ms");

        // A stranger's datagram to A's socket is not the peer's: the data socket never shows it.
        await using var stranger = await network.BindUdpAsync(loopback);
        await stranger.SendToAsync("intruder"u8.ToArray(), a.Host.EndPoint);
        await AssertDataFlowsAsync(a, b, "loopback").WaitAsync(timeout);
    }

    [Fact]
    public async Task Loopback_PushedDataPath_GivesQueuedDatagramsFirst_ThenEachInline_Whole_UntilCancelledOrDisposed()
    {
        var network = SystemNetwork.Instance;
        var loopback = new IPEndPoint(IPAddress.Loopback, 0);
        await using var a = await Peer.BindAsync(network, loopback, IceRole.Controlling, null);
        var b = await Peer.BindAsync(network, loopback, IceRole.Controlled, null);
        await using var disposeB = b;
        a.Signal(b, b.Host);
        b.Signal(a, a.Host);
        a.Transport.Start();
        b.Transport.Start();
        var timeout = TimeSpan.FromSeconds(20);
        await a.Transport.Connected.WaitAsync(timeout);
        await b.Transport.Connected.WaitAsync(timeout);
        var transport = b.Transport;
        var peer = a.Host.EndPoint;
        var large = new byte[30_000];
        large[0] = 0xFF;
        large[^1] = 0xEE;

        // Before anyone is pushed to, the peer's datagrams queue for ReceiveFromAsync.
        Assert.True(transport.Deliver([0xFF, 1], peer, 0));
        Assert.True(transport.Deliver(large, peer, 0));
        var recorder = new PushRecorder();
        using var cts = new CancellationTokenSource();
        var push = transport.DataSocket.PushToAsync(recorder, cts.Token);
        Assert.Equal([2, 30_000], recorder.Lengths());
        Assert.Equal(0xEE, recorder.Last()[^1]);

        // Now each one is handed over inline, before Deliver returns; a stranger's is not the peer's.
        Assert.True(transport.Deliver([0xFF, 3], peer, 0));
        Assert.Equal([2, 30_000, 2], recorder.Lengths());
        Assert.Equal([0xFF, 3], recorder.Last());
        var stranger = new IPEndPoint(IPAddress.Loopback, 9);
        Assert.False(transport.Deliver([0xFF, 4], stranger, 0));
        Assert.Equal(3, recorder.Lengths().Length);
        Assert.All(recorder.Sources(), s => Assert.Equal(transport.DataSocket.RemoteEndPoint, s));
        transport.OnDrained();
        Assert.Equal(1, recorder.Drains);
        // Thrown at the call, before any task: one receiver at a time.
        Assert.Throws<InvalidOperationException>(() => { _ = transport.DataSocket.PushToAsync(new PushRecorder(), default); });

        // Cancelled: the push ends, and the peer's datagrams queue for ReceiveFromAsync again.
        cts.Cancel();
        await push.WaitAsync(timeout);
        Assert.True(transport.Deliver([0xFF, 5], peer, 0));
        Assert.Equal(3, recorder.Lengths().Length);
        var buffer = new byte[64];
        var got = await transport.DataSocket.ReceiveFromAsync(buffer).AsTask().WaitAsync(timeout);
        Assert.Equal([0xFF, 5], buffer[..got.Length]);

        // Disposing the transport ends a push too.
        var second = transport.DataSocket.PushToAsync(recorder, default);
        await b.DisposeAsync();
        await second.WaitAsync(timeout);
    }

    private sealed class PushRecorder : IDatagramReceiver
    {
        private readonly List<(byte[] Data, IPEndPoint Source)> _got = [];

        public int Drains { get; private set; }

        public bool TryReceive(ReadOnlySpan<byte> datagram, IPEndPoint source)
        {
            lock (_got)
            {
                _got.Add((datagram.ToArray(), source));
            }

            return true;
        }

        public void OnDrained() => Drains++;

        public int[] Lengths()
        {
            lock (_got)
            {
                return [.. _got.Select(g => g.Data.Length)];
            }
        }

        public byte[] Last()
        {
            lock (_got)
            {
                return _got[^1].Data;
            }
        }

        public IPEndPoint[] Sources()
        {
            lock (_got)
            {
                return [.. _got.Select(g => g.Source)];
            }
        }
    }

    private static async Task AssertDataFlowsAsync(Peer a, Peer b, string text)
    {
        var buffer = new byte[1500];
        var ping = Encoding.ASCII.GetBytes("ping " + text);
        Assert.Equal(ping.Length, await a.Transport.DataSocket.SendToAsync(ping, new IPEndPoint(IPAddress.Any, 0)));
        var got = await b.Transport.DataSocket.ReceiveFromAsync(buffer);
        Assert.Equal("ping " + text, Encoding.ASCII.GetString(buffer, 0, got.Length));
        Assert.Equal(b.Transport.DataSocket.RemoteEndPoint, got.RemoteEndPoint);

        var pong = Encoding.ASCII.GetBytes("pong " + text);
        Assert.Equal(pong.Length, await b.Transport.DataSocket.SendToAsync(pong, got.RemoteEndPoint));
        got = await a.Transport.DataSocket.ReceiveFromAsync(buffer);
        Assert.Equal("pong " + text, Encoding.ASCII.GetString(buffer, 0, got.Length));
    }

    /// <summary>Both sides learn the other's credentials, host and server-reflexive candidates, and start.</summary>
    private static void SignalAndStart(Peer a, Peer b)
    {
        a.Signal(b, b.Host, b.Srflx);
        b.Signal(a, a.Host, a.Srflx);
        a.Transport.Start();
        b.Transport.Start();
    }

    /// <summary>Two homes behind their NATs, a STUN server and a TURN server on the internet; 10 ms per link.</summary>
    private static VirtualNetwork Build(NatPolicy natA, NatPolicy natB)
    {
        var lab = new VirtualNetwork(seed: 13);
        var internet = lab.AddSegment("internet");
        var homeA = lab.AddSegment("home-a", "192.168.1.0/24");
        var homeB = lab.AddSegment("home-b", "192.168.2.0/24");
        lab.AddRouter("nat-a", natA, homeA, "192.168.1.1", internet, "198.51.100.1");
        lab.AddRouter("nat-b", natB, homeB, "192.168.2.1", internet, "198.51.100.2");
        lab.AddHost("stun", internet, "203.0.113.100");
        lab.AddHost("turn", internet, "203.0.113.200");
        var link = new LinkProfile { Latency = TimeSpan.FromMilliseconds(10) };
        lab.AddHost("a", homeA, "192.168.1.10").Link = link;
        lab.AddHost("b", homeB, "192.168.2.10").Link = link;
        return lab;
    }

    private static Task<StunServer> StartStunAsync(VirtualNetwork lab) =>
        StunServer.StartAsync(lab.Host("stun"), new StunServerOptions { Primary = Stun, EnableTcp = false });

    /// <summary>One side: a socket, its host (and server-reflexive) candidate, an agent and its driver.</summary>
    private sealed class Peer : IAsyncDisposable
    {
        private IDatagramSocket _socket = null!;
        private bool _disposed;

        public IceAgent Agent { get; private set; } = null!;

        public IceTransport Transport { get; private set; } = null!;

        public IceCandidate Host { get; private set; } = null!;

        public IceCandidate Srflx { get; private set; } = null!;

        public static async Task<Peer> GatherAsync(LabHost host, IceRole role, int seed)
        {
            var peer = await BindAsync(host, new IPEndPoint(IPAddress.Any, 0), role, new Random(seed));
            var local = new IPEndPoint(host.Address, peer._socket.LocalEndPoint.Port);
            peer.Host = IceCandidate.Host(local);
            var response = await new StunClient(host).BindingAsync(peer._socket, Stun);
            var mapped = response?.MappedAddress;
            Assert.NotNull(mapped);
            peer.Srflx = IceCandidate.ServerReflexive(mapped, local, Stun.Address);
            Assert.True(peer.Transport.AddLocalCandidate(peer.Host, 0));
            Assert.True(peer.Transport.AddLocalCandidate(peer.Srflx, 0));
            return peer;
        }

        public static async Task<Peer> BindAsync(INetwork network, IPEndPoint bind, IceRole role, Random? random)
        {
            var socket = await network.BindUdpAsync(bind);
            var agent = new IceAgent(role, random: random);
            var transport = new IceTransport(agent, network.TimeProvider);
            Assert.Equal(0, transport.AddSocket(socket));
            var peer = new Peer { _socket = socket, Agent = agent, Transport = transport };
            if (!bind.Address.Equals(IPAddress.Any))
            {
                peer.Host = IceCandidate.Host(socket.LocalEndPoint);
                Assert.True(transport.AddLocalCandidate(peer.Host, 0));
            }

            return peer;
        }

        /// <summary>What signaling does: this side learns the other's credentials and the given candidates.</summary>
        public void Signal(Peer other, params IceCandidate[] candidates) =>
            Transport.Update(agent =>
            {
                agent.SetRemoteCredentials(other.Agent.LocalCredentials);
                foreach (var c in candidates)
                {
                    Assert.True(agent.AddRemoteCandidate(c));
                }

                return 0;
            });

        public async ValueTask DisposeAsync()
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            await Transport.DisposeAsync();
            await _socket.DisposeAsync();
        }
    }

    private static async Task PumpAsync(IDatagramSocket socket, IceTransport transport, int index)
    {
        var buffer = new byte[2048];
        while (true)
        {
            ReceivedDatagram d;
            try
            {
                d = await socket.ReceiveFromAsync(buffer);
            }
            catch (Exception e) when (e is ObjectDisposedException or OperationCanceledException)
            {
                return;
            }

            transport.Deliver(buffer.AsSpan(0, d.Length), d.RemoteEndPoint, index);
        }
    }
}
