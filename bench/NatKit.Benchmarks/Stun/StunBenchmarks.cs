using System.Net;
using BenchmarkDotNet.Attributes;
using NatKit.Net;
using NatKit.Stun;
using NatKit.Stun.Server;

namespace NatKit.Benchmarks.Stun;

/// <summary>The codec and the server's per-request core: every one must allocate 0 B.</summary>
public class StunCodecBenchmarks
{
    private readonly byte[] _request = new byte[128];
    private readonly byte[] _reply = new byte[StunRequestHandler.MaxReplyLength];
    private readonly byte[] _key = StunCredentials.ShortTermKey("VOkJxbRl1RmTxUk/WvJxBt");
    private readonly IPEndPoint _source = new(IPAddress.Parse("192.0.2.1"), 40000);
    private int _requestLength;
    private StunRequestHandler _handler = null!;
    private StunRequestHandler _handler5780 = null!;

    [GlobalSetup]
    public void Setup()
    {
        var w = new StunMessageWriter(_request, StunMethods.Binding, StunClass.Request, StunTransactionId.NewRandom());
        w.AddString(StunAttributeType.Software, "bench");
        w.AddFingerprint();
        _requestLength = w.Length;
        _handler = new StunRequestHandler(new StunServerOptions { RateLimitPerSecond = 0 },
            [new IPEndPoint(IPAddress.Loopback, 3478)], TimeProvider.System, new StunServerMetrics());
        _handler5780 = new StunRequestHandler(
            new StunServerOptions { AlternateAddress = IPAddress.Parse("127.0.0.2"), RateLimitPerSecond = 1_000_000_000 },
            [
                new IPEndPoint(IPAddress.Loopback, 3478), new IPEndPoint(IPAddress.Loopback, 3479),
                new IPEndPoint(IPAddress.Parse("127.0.0.2"), 3478), new IPEndPoint(IPAddress.Parse("127.0.0.2"), 3479),
            ], TimeProvider.System, new StunServerMetrics());
    }

    [Benchmark]
    public int ParseAndCheckFingerprint()
    {
        StunMessageReader.TryParse(_request.AsSpan(0, _requestLength), out var r);
        return r.IsFingerprintValid() ? r.Method : -1;
    }

    [Benchmark]
    public int WriteResponseWithIntegrityAndFingerprint()
    {
        var w = new StunMessageWriter(_reply, StunMethods.Binding, StunClass.SuccessResponse, default);
        w.AddXorAddress(StunAttributeType.XorMappedAddress, StunAddress.FromEndPoint(_source));
        w.AddMessageIntegrity(_key);
        w.AddFingerprint();
        return w.Length;
    }

    [Benchmark]
    public int HandleBinding() =>
        _handler.Handle(_request.AsSpan(0, _requestLength), _source, 0, StunTransport.Udp, _reply).Length;

    [Benchmark]
    public int HandleBindingRfc5780WithRateLimit() =>
        _handler5780.Handle(_request.AsSpan(0, _requestLength), _source, 0, StunTransport.Udp, _reply).Length;
}

/// <summary>A Binding request through the real server on loopback and back (client and server in-process).</summary>
public class StunServerLoopbackBenchmarks
{
    private StunServer _server = null!;
    private IDatagramSocket _client = null!;
    private readonly byte[] _request = new byte[20];
    private readonly byte[] _buffer = new byte[2048];

    [GlobalSetup]
    public void Setup()
    {
        _server = StunServer.StartAsync(SystemNetwork.Instance, new StunServerOptions
        {
            Primary = new IPEndPoint(IPAddress.Loopback, 0),
            EnableTcp = false,
            RateLimitPerSecond = 0,
        }).GetAwaiter().GetResult();
        _client = SystemNetwork.Instance.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0)).AsTask().GetAwaiter().GetResult();
        _ = new StunMessageWriter(_request, StunMethods.Binding, StunClass.Request, StunTransactionId.NewRandom());
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _client.Dispose();
        _server.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    // Pooled so that the benchmark's own state machine does not show up in the allocation column.
    [Benchmark]
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<int> BindingRoundTrip()
    {
        await _client.SendToAsync(_request, _server.UdpEndPoints[0]);
        var got = await _client.ReceiveFromAsync(_buffer);
        return got.Length;
    }
}
