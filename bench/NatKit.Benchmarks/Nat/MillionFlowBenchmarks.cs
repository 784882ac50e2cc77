using BenchmarkDotNet.Attributes;
using NatKit.Nat;

namespace NatKit.Benchmarks.Nat;

/// <summary>
/// With 1,000,000 live flows: established translation spread over all of them (cache misses included) and a
/// plus the retained bytes per flow (target at most 128; Linux conntrack spends about 300).
/// </summary>
[MemoryDiagnoser]
[IterationCount(15)]
public class MillionFlowBenchmarks
{
    private const int LiveFlows = 1_000_000;
    private const int Batch = 4096;
    private NatEngine _nat = null!;
    private readonly byte[][] _packets = new byte[Batch][];
    private readonly byte[] _work = new byte[128];
    private readonly long _now = 1000;

    /// <summary>Retained managed bytes per flow, measured in setup (GC heap growth / flows).</summary>
    public static double BytesPerFlow { get; private set; }

    [GlobalSetup]
    public void Setup()
    {
        var before = GC.GetTotalMemory(forceFullCollection: true);
        _nat = NatBenchSetup.Engine(NatPresets.RfcRecommended with { PortHoldDown = TimeSpan.Zero }, LiveFlows, externals: 32);
        NatBenchSetup.Fill(_nat, LiveFlows, 0);
        var after = GC.GetTotalMemory(forceFullCollection: true);
        BytesPerFlow = (after - before) / (double)LiveFlows;
        Console.WriteLine($"// NatKit.Nat: {LiveFlows} flows, {_nat.SessionCount} sessions, {_nat.MappingCount} mappings, "
                          + $"table arrays {_nat.TableBytes / (double)LiveFlows:F1} B/flow, GC heap growth {BytesPerFlow:F1} B/flow");
        var random = new Random(7);
        for (var i = 0; i < Batch; i++)
        {
            var (a, p) = NatBenchSetup.Inside(random.Next(LiveFlows));
            _packets[i] = NatBenchSetup.Udp(a, p, NatBenchSetup.Remote, 443, payload: 0);
        }
    }

    [GlobalCleanup]
    public void Cleanup() => _nat.Dispose();

    /// <summary>Established UDP translation, random flows out of a million.</summary>
    [Benchmark(OperationsPerInvoke = Batch)]
    public int UdpOutboundAcrossMillion()
    {
        var forwarded = 0;
        for (var i = 0; i < Batch; i++)
        {
            var p = _packets[i];
            p.CopyTo(_work, 0);
            var length = p.Length;
            if (_nat.Process(_work, ref length, NatDirection.Outbound, _now, null).IsForward) forwarded++;
        }

        return forwarded;
    }
}
