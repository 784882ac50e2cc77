using BenchmarkDotNet.Attributes;
using NatKit.Nat;

namespace NatKit.Benchmarks.Nat;

/// <summary>
/// New-flow creation (target: at least 2 million/s): each invocation creates 100,000 UDP flows, each a new
/// mapping (EIM, ports preserved, 32 external addresses), in tables already grown to size; the previous
/// iteration's flows are expired in the (unmeasured) iteration setup.
/// </summary>
[MemoryDiagnoser]
[WarmupCount(2)]
[IterationCount(15)]
public class NewFlowBenchmarks
{
    private const int Flows = 100_000;
    private NatEngine _nat = null!;
    private long _now;

    [GlobalSetup]
    public void Setup()
    {
        _nat = NatBenchSetup.Engine(NatPresets.RfcRecommended with { PortHoldDown = TimeSpan.Zero }, Flows, externals: 32);
        NatBenchSetup.Fill(_nat, Flows, _now);
    }

    [IterationSetup]
    public void ExpirePrevious()
    {
        _now += 301_000;
        _nat.Tick(_now, null);
    }

    [Benchmark(OperationsPerInvoke = Flows)]
    [InvocationCount(1, 1)]
    public void CreateUdpFlows() => NatBenchSetup.Fill(_nat, Flows, _now);

    [GlobalCleanup]
    public void Cleanup() => _nat.Dispose();
}
