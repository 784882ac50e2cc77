using System.Net;
using System.Net.Sockets;
using System.Text;
using BenchmarkDotNet.Attributes;
using NatKit.Net;
using NatKit.Proxy;

namespace NatKit.Benchmarks.Proxy;

/// <summary>One keep-alive GET through the proxy and back over loopback (a canned origin on the other side).
/// Allocated counts everything in the process: client, proxy and origin together.</summary>
[MemoryDiagnoser]
public class ProxyRoundTripBenchmarks
{
    private static readonly byte[] Response = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"u8.ToArray();
    private Socket _originListener = null!;
    private ProxyServer _proxy = null!;
    private Socket _client = null!;
    private byte[] _request = null!;
    private readonly byte[] _buffer = new byte[4096];

    [GlobalSetup]
    public void Setup()
    {
        _originListener = new Socket(SocketType.Stream, ProtocolType.Tcp);
        _originListener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _originListener.Listen();
        _ = Task.Run(async () =>
        {
            while (true)
            {
                var s = await _originListener.AcceptAsync();
                _ = Task.Run(async () =>
                {
                    var buf = new byte[4096];
                    while (await s.ReceiveAsync(buf) is var n && n > 0)
                    {
                        await s.SendAsync(Response);
                    }
                });
            }
        });
        var port = ((IPEndPoint)_originListener.LocalEndPoint!).Port;
        _proxy = ProxyServer.StartAsync(new ProxyOptions
        {
            HttpListen = new IPEndPoint(IPAddress.Loopback, 0),
            AllowLoopbackDestinations = true,
        }, SystemNetwork.Instance).GetAwaiter().GetResult();
        _client = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        _client.Connect(_proxy.HttpEndPoint);
        _request = Encoding.ASCII.GetBytes($"GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: x\r\n\r\n");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _client.Dispose();
        _proxy.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _originListener.Dispose();
    }

    [Benchmark]
    public async Task<int> KeepAliveGet()
    {
        await _client.SendAsync(_request);
        var have = 0;
        while (true)
        {
            have += await _client.ReceiveAsync(_buffer.AsMemory(have));
            if (have >= 5 && _buffer.AsSpan(0, have).EndsWith("hello"u8))
            {
                return have;
            }
        }
    }
}
