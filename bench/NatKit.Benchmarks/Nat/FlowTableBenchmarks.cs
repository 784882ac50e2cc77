using BenchmarkDotNet.Attributes;
using NatKit.Nat;

namespace NatKit.Benchmarks.Nat;

/// <summary>
/// New-flow creation (target: 2 million/s) and expiry with 1,000,000 live flows. Each iteration gets a fresh
/// engine (setup not measured); one invocation creates, or expires, every flow.
/// </summary>
[MemoryDiagnoser]
public class FlowTableBenchmarks
{
    private const int NewFlows = 200_000;
    private const int LiveFlows = 1_000_000;
    private NatEngine _nat = null!;

    [IterationSetup(Target = nameof(CreateUdpFlows))]
    public void FreshEngine()
    {
        _nat?.Dispose();
        _nat = NatBenchSetup.Engine(NatPresets.RfcRecommended with { PortHoldDown = TimeSpan.Zero }, NewFlows);
        // Warm the table's arrays to size so the measurement is creation, not growth.
        NatBenchSetup.Fill(_nat, NewFlows, 0);
        _nat.Tick(1_000_000, null);
    }

    /// <summary>Creates 200,000 UDP flows, each a new mapping (EIM, ports preserved, 16 external addresses).</summary>
    [Benchmark(OperationsPerInvoke = NewFlows)]
    [InvocationCount(1, 1)]
    public void CreateUdpFlows() => NatBenchSetup.Fill(_nat, NewFlows, 1_000_000);

    [IterationSetup(Target = nameof(ExpireMillionFlows))]
    public void MillionLiveFlows()
    {
        _nat?.Dispose();
        _nat = NatBenchSetup.Engine(NatPresets.RfcRecommended with { PortHoldDown = TimeSpan.Zero }, LiveFlows, externals: 32);
        NatBenchSetup.Fill(_nat, LiveFlows, 0);
    }

    /// <summary>The timer wheel expires 1,000,000 idle flows (per-flow cost), no table scan.</summary>
    [Benchmark(OperationsPerInvoke = LiveFlows)]
    [InvocationCount(1, 1)]
    public void ExpireMillionFlows() => _nat.Tick(301_000, null);

    [IterationCleanup]
    public void Cleanup()
    {
        _nat?.Dispose();
        _nat = null!;
    }
}
