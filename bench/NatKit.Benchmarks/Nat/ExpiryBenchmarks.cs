using BenchmarkDotNet.Attributes;
using NatKit.Nat;

namespace NatKit.Benchmarks.Nat;

/// <summary>
/// Expiry with 1,000,000 live flows: the timer wheel expires them all (cost per flow); no table scan. The
/// (unmeasured) iteration setup refills the million.
/// </summary>
[MemoryDiagnoser]
[WarmupCount(1)]
[IterationCount(5)]
public class ExpiryBenchmarks
{
    private const int LiveFlows = 1_000_000;
    private NatEngine _nat = null!;
    private long _now;

    [GlobalSetup]
    public void Setup() =>
        _nat = NatBenchSetup.Engine(NatPresets.RfcRecommended with { PortHoldDown = TimeSpan.Zero }, LiveFlows, externals: 32);

    [IterationSetup]
    public void FillMillion() => NatBenchSetup.Fill(_nat, LiveFlows, _now);

    [Benchmark(OperationsPerInvoke = LiveFlows)]
    [InvocationCount(1, 1)]
    public void ExpireMillionFlows()
    {
        _now += 301_000;
        _nat.Tick(_now, null);
    }

    [GlobalCleanup]
    public void Cleanup() => _nat.Dispose();
}
