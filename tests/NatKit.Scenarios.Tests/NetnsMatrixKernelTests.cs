using NatKit.Scenarios.Matrix;
using NatKit.TestSupport;

namespace NatKit.Scenarios.Tests;

/// <summary>
/// The grid on real Linux NATs for the reference document's three kernel rule sets (DMZ, `masquerade persistent`,
/// `masquerade random`), each cell as namespaces with the agents on real sockets, next to the in-memory lab's
/// verdict for the same cell. With the default budget (2,048 probes, 256 hard-side mappings) a birthday cell misses
/// with odds of about 3 in 10,000 on both networks.
/// </summary>
public sealed class NetnsMatrixKernelTests
{
    [PeerFact("ip", "nft", Root = true)]
    public async Task KernelNats_EveryCellAgreesWithTheLab_PersistentConnectsDirectly_RandomBothSidesRelays()
    {
        var options = new MatrixOptions
        {
            Types = MatrixTypes.Kernel,
            ConnectTimeout = TimeSpan.FromSeconds(30),
        };
        var results = await NetnsMatrix.RunAsync(options, MatrixRunners.Netns!, MatrixRunners.Default!);
        Assert.Equal(9, results.Count);
        var report = string.Join("\n", results.Select(r => $"{r.A.Name} x {r.B.Name}: {r.Outcome.Path} ({r.Outcome.Method}); lab {r.Lab?.Path}; {r.Outcome.Detail}"));
        Assert.All(results, r => Assert.True(r.AgreesWithLab, report));
        Assert.All(results.Where(r => r.A.Name == "kernel-persistent" || r.B.Name == "kernel-persistent"),
            r => Assert.True(r.Outcome.Path == MatrixPath.Direct, report));
        Assert.Equal(MatrixPath.Relay, results.Single(r => r.A.Name == "kernel-random" && r.B.Name == "kernel-random").Outcome.Path);
    }
}
