using System.Net;
using BenchmarkDotNet.Attributes;
using NatKit.Net;
using NatKit.Traversal.Ice;

namespace NatKit.Benchmarks.Traversal;

/// <summary>
/// One of the peer's datagrams from the shared socket's loop to the uTP endpoint of a peer link
/// (<see cref="IceTransport.Deliver"/>, docs/peer.md): pushed inline into the link's multiplexer
/// (<see cref="IPushDatagramSocket"/>, what PeerNetwork's links do now) against the queued path it replaced (a pooled
/// copy, a channel, and the second multiplexer's own receive copying it out). Two agents connected once on loopback;
/// the benchmark hands B's transport a datagram from A's address, as the node's loop does.
/// </summary>
[MemoryDiagnoser]
public class IceDataPathBenchmarks
{
    private readonly byte[] _datagram = new byte[1400];
    private readonly byte[] _buffer = new byte[65536];
    private IDatagramSocket _socketA = null!;
    private IDatagramSocket _socketB = null!;
    private IceTransport _a = null!;
    private IceTransport _b = null!;
    private IceTransport _queuedB = null!;
    private IceTransport _queuedA = null!;
    private IDatagramSocket _socketQa = null!;
    private IDatagramSocket _socketQb = null!;
    private DatagramMultiplexer _mux = null!;
    private IPEndPoint _peer = null!;
    private IPEndPoint _queuedPeer = null!;

    [GlobalSetup]
    public void Setup()
    {
        _datagram[0] = 0x01; // shaped like a uTP DATA packet: not STUN
        (_a, _b, _socketA, _socketB) = Connect();
        _peer = _socketA.LocalEndPoint;
        _mux = new DatagramMultiplexer(_b.DataSocket, ownsSocket: false);
        _mux.AddReceiver(new Claims());
        (_queuedA, _queuedB, _socketQa, _socketQb) = Connect();
        _queuedPeer = _socketQa.LocalEndPoint;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _mux.Dispose();
        foreach (var t in new[] { _a, _b, _queuedA, _queuedB })
        {
            t.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }

        foreach (var s in new[] { _socketA, _socketB, _socketQa, _socketQb })
        {
            s.Dispose();
        }
    }

    /// <summary>Pushed: classified by the agent, handed to the link's multiplexer and its receiver in place.</summary>
    [Benchmark]
    public long Pushed()
    {
        _b.Deliver(_datagram, _peer, 0);
        return _mux.Received;
    }

    /// <summary>Queued (before): rented and copied into the channel, then read out by a receive that copies again.</summary>
    [Benchmark(Baseline = true)]
    public int Queued()
    {
        _queuedB.Deliver(_datagram, _queuedPeer, 0);
        return _queuedB.DataSocket.ReceiveFromAsync(_buffer).AsTask().GetAwaiter().GetResult().Length;
    }

    private static (IceTransport A, IceTransport B, IDatagramSocket SocketA, IDatagramSocket SocketB) Connect()
    {
        var network = SystemNetwork.Instance;
        var loopback = new IPEndPoint(IPAddress.Loopback, 0);
        var socketA = network.BindUdpAsync(loopback).AsTask().GetAwaiter().GetResult();
        var socketB = network.BindUdpAsync(loopback).AsTask().GetAwaiter().GetResult();
        var agentA = new IceAgent(IceRole.Controlling);
        var agentB = new IceAgent(IceRole.Controlled);
        var a = new IceTransport(agentA, network.TimeProvider);
        var b = new IceTransport(agentB, network.TimeProvider);
        a.AddSocket(socketA);
        b.AddSocket(socketB);
        var hostA = IceCandidate.Host(socketA.LocalEndPoint);
        var hostB = IceCandidate.Host(socketB.LocalEndPoint);
        a.AddLocalCandidate(hostA, 0);
        b.AddLocalCandidate(hostB, 0);
        a.Update(x =>
        {
            x.SetRemoteCredentials(agentB.LocalCredentials);
            return x.AddRemoteCandidate(hostB);
        });
        b.Update(x =>
        {
            x.SetRemoteCredentials(agentA.LocalCredentials);
            return x.AddRemoteCandidate(hostA);
        });
        a.Start();
        b.Start();
        a.Connected.WaitAsync(TimeSpan.FromSeconds(20)).GetAwaiter().GetResult();
        b.Connected.WaitAsync(TimeSpan.FromSeconds(20)).GetAwaiter().GetResult();
        return (a, b, socketA, socketB);
    }

    private sealed class Claims : IDatagramReceiver
    {
        public bool TryReceive(ReadOnlySpan<byte> datagram, IPEndPoint source) => true;
    }
}
