using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using BenchmarkDotNet.Attributes;
using NatKit.Net;
using NatKit.Proxy;
using NatKit.Proxy.Socks;

namespace NatKit.Benchmarks.Proxy;

/// <summary>One datagram through a SOCKS5 UDP association to a peer over loopback (client and peer are raw
/// synchronous sockets). Allocated counts the whole process, the proxy's relay loop included.</summary>
[MemoryDiagnoser]
public class SocksUdpBenchmarks
{
    private ProxyServer _proxy = null!;
    private TcpClient _control = null!;
    private Socket _client = null!;
    private Socket _peer = null!;
    private byte[] _datagram = [];
    private readonly byte[] _buffer = new byte[2048];

    [GlobalSetup]
    public void Setup()
    {
        _proxy = ProxyServer.StartAsync(new ProxyOptions
        {
            HttpListen = new IPEndPoint(IPAddress.Loopback, 0),
            SocksListen = new IPEndPoint(IPAddress.Loopback, 0),
            SocksPorts = ProxyOptions.AnyPort, // the peer is on an ephemeral port
            AllowLoopbackDestinations = true,
        }, SystemNetwork.Instance).GetAwaiter().GetResult();
        _peer = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        _peer.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _client = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        _client.Bind(new IPEndPoint(IPAddress.Loopback, 0));

        _control = new TcpClient();
        _control.Connect(_proxy.SocksEndPoint!);
        var s = _control.GetStream();
        s.Write([5, 1, 0]);
        s.ReadExactly(new byte[2]);
        var request = new byte[10];
        request[0] = 5;
        request[1] = 3;
        request[3] = 1;
        IPAddress.Loopback.TryWriteBytes(request.AsSpan(4), out _);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(8), (ushort)((IPEndPoint)_client.LocalEndPoint!).Port);
        s.Write(request);
        var reply = new byte[10];
        s.ReadExactly(reply);
        _client.Connect(new IPEndPoint(new IPAddress(reply.AsSpan(4, 4)), BinaryPrimitives.ReadUInt16BigEndian(reply.AsSpan(8))));

        _datagram = new byte[10 + 160];
        Socks5Codec.WriteUdpHeader(_datagram, (IPEndPoint)_peer.LocalEndPoint!);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _control.Dispose();
        _client.Dispose();
        _peer.Dispose();
        _proxy.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    [Benchmark]
    public int ClientToPeer()
    {
        _client.Send(_datagram);
        return _peer.Receive(_buffer);
    }
}
