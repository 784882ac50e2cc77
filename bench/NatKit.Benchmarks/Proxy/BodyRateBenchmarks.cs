using BenchmarkDotNet.Attributes;
using NatKit.Proxy;

namespace NatKit.Benchmarks.Proxy;

/// <summary>What the minimum data rates add to every read of a request body and every write of a response: one
/// wait begun (the rate's timer moved to when the average would fall below the floor) and ended. Must allocate
/// 0 B.</summary>
[MemoryDiagnoser]
public class BodyRateBenchmarks
{
    private readonly byte[] _piece = new byte[16 * 1024];
    private Deadline _deadline = null!;
    private MinDataRate _rate = null!;
    private MinDataRate _responseRate = null!;

    [GlobalSetup]
    public void Setup()
    {
        _deadline = new Deadline(TimeProvider.System, TimeSpan.FromSeconds(60), CancellationToken.None);
        _rate = new MinDataRate(TimeProvider.System, 240, TimeSpan.FromSeconds(5), _deadline, fromFirstByte: true);
        _rate.Reset();
        _rate.Begin();
        _rate.End(1); // the body has started: every wait from now on is timed
        _responseRate = new MinDataRate(TimeProvider.System, 240, TimeSpan.FromSeconds(5), _deadline,
            fromFirstByte: false);
        _responseRate.Reset();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _rate.Dispose();
        _responseRate.Dispose();
        _deadline.Dispose();
    }

    [Benchmark]
    public bool TimedRead()
    {
        _rate.Begin();
        _rate.End(16 * 1024);
        return _rate.Violated;
    }

    /// <summary>A timed write of a response piece through the same path the proxy uses (the write itself goes to
    /// <see cref="Stream.Null"/>, so what is measured is the timing around it).</summary>
    [Benchmark]
    public bool TimedResponseWrite()
    {
        _responseRate.WriteAsync(Stream.Null, _piece, _deadline.Token).GetAwaiter().GetResult();
        return _responseRate.Violated;
    }
}
