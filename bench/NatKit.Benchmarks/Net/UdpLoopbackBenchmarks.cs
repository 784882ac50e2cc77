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
    private IDatagramSocket _c = null!;
    private IDatagramSocket _d = null!;
    private DatagramBatch _out = null!;
    private DatagramBatch _in = null!;

    [GlobalSetup]
    public void Setup()
    {
        _a = SystemNetwork.Instance.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0)).AsTask().GetAwaiter().GetResult();
        _b = SystemNetwork.Instance.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0)).AsTask().GetAwaiter().GetResult();
        // Sockets only ever used synchronously (IBlockingDatagramSocket), as a server's UDP thread uses them.
        _c = SystemNetwork.Instance.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0)).AsTask().GetAwaiter().GetResult();
        _d = SystemNetwork.Instance.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0)).AsTask().GetAwaiter().GetResult();
        _out = new DatagramBatch(16, 64);
        _in = new DatagramBatch(16, 2048);
        for (var i = 0; i < 16; i++)
        {
            _out.Set(i, 64, _d.LocalEndPoint);
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _a.Dispose();
        _b.Dispose();
        _c.Dispose();
        _d.Dispose();
        _out.Dispose();
        _in.Dispose();
    }

    [Benchmark]
    public async Task<int> SendAndReceive()
    {
        await _a.SendToAsync(_payload, _b.LocalEndPoint);
        var got = await _b.ReceiveFromAsync(_buffer);
        return got.Length;
    }

    /// <summary>The same through <see cref="IBlockingDatagramSocket"/>: two system calls, no async machinery.</summary>
    [Benchmark]
    public int BlockingSendAndReceive()
    {
        ((IBlockingDatagramSocket)_c).Send(_payload, _d.LocalEndPoint);
        return ((IBlockingDatagramSocket)_d).Receive(_buffer).Length;
    }

    /// <summary>16 datagrams out with one sendmmsg and in with one recvmmsg (per operation: 16 datagrams).</summary>
    [Benchmark(OperationsPerInvoke = 16)]
    public int BatchOf16SendAndReceive()
    {
        ((IBlockingDatagramSocket)_c).SendBatch(_out, 16);
        var got = 0;
        while (got < 16)
        {
            got += ((IBlockingDatagramSocket)_d).ReceiveBatch(_in);
        }

        return got;
    }
}
