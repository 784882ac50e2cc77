using System.Net;
using BenchmarkDotNet.Attributes;
using NatKit.Net;

namespace NatKit.Benchmarks.Net;

/// <summary>One datagram out and back in on loopback through <see cref="SystemNetwork"/>: must allocate 0 B.</summary>
public class UdpLoopbackBenchmarks
{
    private IDatagramSocket _a = null!;
    private IDatagramSocket _b = null!;
    private readonly byte[] _payload = new byte[64];
    private readonly byte[] _buffer = new byte[2048];

    [GlobalSetup]
    public void Setup()
    {
        _a = SystemNetwork.Instance.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0)).AsTask().GetAwaiter().GetResult();
        _b = SystemNetwork.Instance.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0)).AsTask().GetAwaiter().GetResult();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _a.Dispose();
        _b.Dispose();
    }

    [Benchmark]
    public async Task<int> SendAndReceive()
    {
        await _a.SendToAsync(_payload, _b.LocalEndPoint);
        var got = await _b.ReceiveFromAsync(_buffer);
        return got.Length;
    }
}
