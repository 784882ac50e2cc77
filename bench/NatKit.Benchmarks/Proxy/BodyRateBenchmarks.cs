using BenchmarkDotNet.Attributes;
using NatKit.Proxy;

namespace NatKit.Benchmarks.Proxy;

/// <summary>What the minimum request body data rate adds to every read of a request body: one wait begun (the
/// rate's timer moved to when the average would fall below the floor) and ended. Must allocate 0 B.</summary>
[MemoryDiagnoser]
public class BodyRateBenchmarks
{
    private Deadline _deadline = null!;
    private MinDataRate _rate = null!;

    [GlobalSetup]
    public void Setup()
    {
        _deadline = new Deadline(TimeProvider.System, TimeSpan.FromSeconds(60), CancellationToken.None);
        _rate = new MinDataRate(TimeProvider.System, 240, TimeSpan.FromSeconds(5), _deadline);
        _rate.Reset();
        _rate.BeginRead();
        _rate.EndRead(1); // the body has started: every wait from now on is timed
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _rate.Dispose();
        _deadline.Dispose();
    }

    [Benchmark]
    public bool TimedRead()
    {
        _rate.BeginRead();
        _rate.EndRead(16 * 1024);
        return _rate.Violated;
    }
}
