using System.Net;
using BenchmarkDotNet.Attributes;
using NatKit.Net;
using NatKit.Turn.Client;
using NatKit.Turn.Policy;
using NatKit.Turn.Server;

namespace NatKit.Benchmarks.Turn;

/// <summary>The per-packet checks of the relay: peer policy and the permission/channel tables. Each must
/// allocate 0 B.</summary>
public class TurnPolicyBenchmarks
{
    private readonly PeerPolicy _policy = new(allow: [PeerRule.Parse("127.0.0.0/8")], deny: [PeerRule.Parse("8.8.8.8:53")],
        serverEndPoints: [new IPEndPoint(IPAddress.Loopback, 3478)], ownAddresses: [IPAddress.Loopback]);
    private readonly IPAddress _public = IPAddress.Parse("93.184.216.34");
    private readonly IPAddress _mapped = IPAddress.Parse("::ffff:10.1.2.3");
    private readonly IPEndPoint _peer = new(IPAddress.Parse("93.184.216.34"), 5000);
    private readonly PeerBindings _bindings = new(128, 128);

    [GlobalSetup]
    public void Setup()
    {
        _bindings.TryAddPermission(_peer.Address, long.MaxValue, 0);
        _bindings.TryBindChannel(0x4000, _peer, long.MaxValue, 0);
    }

    [Benchmark]
    public bool CheckPublicPeer() => _policy.Check(_public, 5000).Allowed;

    [Benchmark]
    public bool CheckMappedPrivatePeer() => _policy.Check(_mapped, 5000).Allowed;

    [Benchmark]
    public int PermissionAndChannelLookup() =>
        _bindings.HasPermission(_peer.Address, 1) ? _bindings.ChannelOf(_peer, 1) + (_bindings.PeerOf(0x4000, 1)?.Port ?? 0) : 0;
}

/// <summary>A ChannelData packet through the real server on loopback: client -> relay -> peer, and peer -> relay
/// -> client (client, server and peer in one process, so the allocation column counts all three).</summary>
public class TurnRelayLoopbackBenchmarks
{
    /// <summary>A server on loopback that may relay to loopback peers, with no bandwidth cap.</summary>
    internal static TurnServer StartServer() => TurnServer.StartAsync(SystemNetwork.Instance, new TurnServerOptions
    {
        UdpListen = [new IPEndPoint(IPAddress.Loopback, 0)],
        Users = new Dictionary<string, string> { ["bench"] = "bench" },
        Policy = new PeerPolicy(allow: [PeerRule.Parse("127.0.0.0/8")]),
        BandwidthBytesPerSecond = 0,
    }).GetAwaiter().GetResult();

    private TurnServer _server = null!;
    private TurnClient _client = null!;
    private IDatagramSocket _peer = null!;
    private readonly byte[] _payload = new byte[160];
    private readonly byte[] _buffer = new byte[2048];
    private byte[] _sendIndication = [];

    [GlobalSetup]
    public void Setup()
    {
        _server = TurnRelayLoopbackBenchmarks.StartServer();
        _client = TurnClient.AllocateAsync(SystemNetwork.Instance,
            new TurnClientOptions(_server.UdpEndPoints[0], "bench", "bench") { KeepAlive = false }).GetAwaiter().GetResult();
        _peer = SystemNetwork.Instance.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0)).AsTask().GetAwaiter().GetResult();
        _client.BindChannelAsync(_peer.LocalEndPoint).GetAwaiter().GetResult();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _client.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _peer.Dispose();
        _server.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    [Benchmark]
    public async Task<int> ChannelDataClientToPeer()
    {
        await _client.SendAsync(_payload, _peer.LocalEndPoint);
        return (await _peer.ReceiveFromAsync(_buffer)).Length;
    }

    [Benchmark]
    public async Task<int> PeerToClientAsChannelData()
    {
        await _peer.SendToAsync(_payload, _client.RelayedEndPoint);
        return (await _client.ReceiveAsync(_buffer)).Length;
    }
}

/// <summary>
/// The server's relay path alone: client and peer are plain connected sockets with synchronous calls (which
/// allocate nothing), so the Allocated column is what the server spends per relayed packet (MemoryDiagnoser
/// counts every thread). The allocation and channel are made with <see cref="TurnClient"/>, which is then
/// closed; a raw socket takes over its address, keeping the 5-tuple.
/// </summary>
public class TurnRelayServerPathBenchmarks
{
    private TurnServer _server = null!;
    private System.Net.Sockets.Socket _client = null!;
    private System.Net.Sockets.Socket _peer = null!;
    private readonly byte[] _frame = new byte[4 + 160];
    private readonly byte[] _payload = new byte[160];
    private readonly byte[] _buffer = new byte[2048];
    private byte[] _sendIndication = [];

    [GlobalSetup]
    public void Setup()
    {
        _server = TurnRelayLoopbackBenchmarks.StartServer();
        _peer = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork,
            System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp);
        _peer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var turn = TurnClient.AllocateAsync(SystemNetwork.Instance,
            new TurnClientOptions(_server.UdpEndPoints[0], "bench", "bench") { KeepAlive = false }).GetAwaiter().GetResult();
        var channel = turn.BindChannelAsync((IPEndPoint)_peer.LocalEndPoint!).GetAwaiter().GetResult();
        var local = turn.LocalEndPoint;
        var relayed = turn.RelayedEndPoint;
        turn.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _client = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork,
            System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp);
        _client.Bind(local);
        _client.Connect(_server.UdpEndPoints[0]);
        _peer.Connect(relayed);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(_frame, channel);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(_frame.AsSpan(2), 160);
        var indication = new byte[512];
        var w = new NatKit.Stun.StunMessageWriter(indication, NatKit.Turn.Protocol.TurnMethods.Send,
            NatKit.Stun.StunClass.Indication, NatKit.Stun.StunTransactionId.NewRandom());
        w.AddXorAddress(NatKit.Turn.Protocol.TurnAttributeType.XorPeerAddress,
            NatKit.Stun.StunAddress.FromEndPoint((IPEndPoint)_peer.LocalEndPoint!));
        w.Add(NatKit.Turn.Protocol.TurnAttributeType.Data, _payload);
        _sendIndication = indication[..w.Length];
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _client.Dispose();
        _peer.Dispose();
        _server.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    [Benchmark]
    public int ChannelDataToPeer()
    {
        _client.Send(_frame);
        return _peer.Receive(_buffer);
    }

    /// <summary>A Send indication (no channel): the server reads the peer address from XOR-PEER-ADDRESS on every
    /// packet.</summary>
    [Benchmark]
    public int SendIndicationToPeer()
    {
        _client.Send(_sendIndication);
        return _peer.Receive(_buffer);
    }

    [Benchmark]
    public int PeerToChannelData()
    {
        _peer.Send(_payload);
        return _client.Receive(_buffer);
    }
}

/// <summary>
/// One relayed datagram (1400 bytes of ChannelData from the server) from the shared socket's loop to the reader of the
/// allocation (<see cref="TurnClient.HandleInbound"/>, docs/peer.md "The relayed path"): pushed inline to the receiver
/// (<see cref="IPushDatagramSocket"/>, what a traversal node's relay path does now) against the queue it replaced (a
/// copy into <see cref="DatagramQueue"/>, then a receive copying it out). The clients allocate on a real server on
/// loopback; the benchmark hands them the frame as their multiplexer would.
/// </summary>
[MemoryDiagnoser]
public class TurnClientInboundBenchmarks
{
    private readonly byte[] _buffer = new byte[65536];
    private TurnServer _server = null!;
    private IDatagramSocket _peer = null!;
    private TurnClient _pushed = null!;
    private TurnClient _queued = null!;
    private Counting _receiver = null!;
    private byte[] _framePushed = [];
    private byte[] _frameQueued = [];
    private IPEndPoint _source = null!;

    [GlobalSetup]
    public void Setup()
    {
        _server = TurnRelayLoopbackBenchmarks.StartServer();
        _source = _server.UdpEndPoints[0];
        _peer = SystemNetwork.Instance.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0)).AsTask().GetAwaiter().GetResult();
        (_pushed, _framePushed) = Allocate();
        (_queued, _frameQueued) = Allocate();
        _receiver = new Counting();
        _ = ((IPushDatagramSocket)_pushed.Socket).PushToAsync(_receiver, CancellationToken.None);
    }

    private (TurnClient Client, byte[] Frame) Allocate()
    {
        var client = TurnClient.AllocateAsync(SystemNetwork.Instance,
            new TurnClientOptions(_source, "bench", "bench") { KeepAlive = false }).GetAwaiter().GetResult();
        var number = client.BindChannelAsync(_peer.LocalEndPoint).GetAwaiter().GetResult();
        var frame = new byte[4 + 1400];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(frame, number);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(2), 1400);
        frame[4] = 0x01; // a uTP DATA header's first byte
        return (client, frame);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _pushed.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _queued.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _peer.Dispose();
        _server.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    /// <summary>Pushed: unwrapped and handed to the receiver in place.</summary>
    [Benchmark]
    public long Pushed()
    {
        _pushed.HandleInbound(_framePushed, _source);
        return _receiver.Count;
    }

    /// <summary>Queued (before): copied into the queue, then copied out by the reader's receive.</summary>
    [Benchmark(Baseline = true)]
    public int Queued()
    {
        _queued.HandleInbound(_frameQueued, _source);
        var received = _queued.Socket.ReceiveFromAsync(_buffer); // queued already: completes at once
        return received.IsCompletedSuccessfully ? received.Result.Length : received.AsTask().GetAwaiter().GetResult().Length;
    }

    private sealed class Counting : IDatagramReceiver
    {
        public long Count { get; private set; }

        public bool TryReceive(ReadOnlySpan<byte> datagram, IPEndPoint source)
        {
            Count += datagram.Length;
            return true;
        }
    }
}
