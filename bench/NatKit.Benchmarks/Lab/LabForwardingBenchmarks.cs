using System.Net;
using BenchmarkDotNet.Attributes;
using NatKit.Lab;
using NatKit.Nat;
using NatKit.Net;

namespace NatKit.Benchmarks.Lab;

/// <summary>
/// The lab forwarding UDP through one NAT router on one core: a host's socket builds each IPv4/UDP packet, the
/// LAN carries it to the router, the NAT engine translates it, the internet carries it to the server host, which
/// checks it and queues it on its socket, where the benchmark reads it. Two scheduled hops and one NAT
/// translation per packet, all in virtual time. Target: at least 1,000,000 packets/s (at most 1000 ns per
/// packet, the Mean below) and 0 B allocated.
/// </summary>
public class LabForwardingBenchmarks
{
    private const int Batch = 256;
    private readonly byte[] _payload = new byte[64];
    private readonly byte[] _buffer = new byte[2048];
    private VirtualNetwork _lab = null!;
    private IDatagramSocket _client = null!;
    private IDatagramSocket _server = null!;
    private IPEndPoint _serverEndPoint = null!;
    private IPEndPoint _mapped = null!;

    [Params("full-cone", "symmetric")]
    public string Preset { get; set; } = "full-cone";

    [GlobalSetup]
    public void Setup()
    {
        _lab = new VirtualNetwork(1);
        var internet = _lab.AddSegment("internet");
        var home = _lab.AddSegment("home", "192.168.1.0/24");
        _lab.AddRouter("nat", NatPresets.Find(Preset)!.Policy, home, "192.168.1.1", internet, "198.51.100.1");
        var server = _lab.AddHost("server", internet, "203.0.113.100");
        var client = _lab.AddHost("client", home, "192.168.1.10");
        _serverEndPoint = new IPEndPoint(IPAddress.Parse("203.0.113.100"), 3478);
        _client = client.BindUdpAsync(new IPEndPoint(IPAddress.Any, 40000)).AsTask().GetAwaiter().GetResult();
        _server = server.BindUdpAsync(_serverEndPoint).AsTask().GetAwaiter().GetResult();

        // Open the mapping and learn it, so the benchmark also has the way back.
        _ = _client.SendToAsync(_payload, _serverEndPoint);
        _lab.Scheduler.RunPending();
        _mapped = _server.ReceiveFromAsync(_buffer).GetAwaiter().GetResult().RemoteEndPoint;
    }

    /// <summary>Client to server across the NAT (outbound translation).</summary>
    [Benchmark(OperationsPerInvoke = Batch)]
    public int Outbound()
    {
        for (var i = 0; i < Batch; i++)
        {
            _ = _client.SendToAsync(_payload, _serverEndPoint);
        }

        _lab.Scheduler.RunPending();
        var n = 0;
        for (var i = 0; i < Batch; i++)
        {
            n += _server.ReceiveFromAsync(_buffer).GetAwaiter().GetResult().Length;
        }

        return n;
    }

    /// <summary>Server back to the client's mapping (inbound translation and filtering).</summary>
    [Benchmark(OperationsPerInvoke = Batch)]
    public int Inbound()
    {
        for (var i = 0; i < Batch; i++)
        {
            _ = _server.SendToAsync(_payload, _mapped);
        }

        _lab.Scheduler.RunPending();
        var n = 0;
        for (var i = 0; i < Batch; i++)
        {
            n += _client.ReceiveFromAsync(_buffer).GetAwaiter().GetResult().Length;
        }

        return n;
    }
}
