using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

// In-process: no child project build per run (faster, and independent of BenchmarkDotNet knowing this runtime's
// moniker). Every suite reports allocations: hot paths must show 0 B.
var config = DefaultConfig.Instance
    .AddJob(Job.Default.WithToolchain(InProcessEmitToolchain.Instance))
    .AddDiagnoser(MemoryDiagnoser.Default)
    .WithOptions(ConfigOptions.DisableOptimizationsValidator);
BenchmarkSwitcher.FromAssembly(typeof(NatKit.Benchmarks.Marker).Assembly).Run(args, config);

namespace NatKit.Benchmarks
{
    /// <summary>Anchors the assembly for the benchmark switcher.</summary>
    public static class Marker
    {
    }
}
