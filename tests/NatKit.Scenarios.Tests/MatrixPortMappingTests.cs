using NatKit.Scenarios.Matrix;
using NatKit.Traversal;

namespace NatKit.Scenarios.Tests;

/// <summary>`natkit lab matrix --portmap`: routers serve the NAT-PMP and PCP their presets offer and the peers use
/// them, so cells that needed the relay connect directly through the mapping.</summary>
public sealed class MatrixPortMappingTests
{
    private static MatrixType T(string name) => MatrixTypes.Find(name)!;

    private static readonly MatrixType[] Types = [T("open"), T("port-restricted-cone"), T("symmetric-random"), T("cgnat"), T("one2one")];

    private static readonly Lazy<MatrixResult> Mapped = new(() =>
        TraversalMatrix.Run(new MatrixOptions { Types = Types, PortMapping = true }, MatrixRunners.Default!));

    private static readonly Lazy<MatrixResult> Plain = new(() =>
        TraversalMatrix.Run(new MatrixOptions { Types = Types }, MatrixRunners.Default!));

    [Fact]
    public void HardNatBothSides_RelayWithout_DirectPortMappedWith()
    {
        Assert.Equal(MatrixPath.Relay, Plain.Value.Cell("symmetric-random", "symmetric-random")!.Path);
        var cell = Mapped.Value.Cell("symmetric-random", "symmetric-random")!;
        Assert.Equal(MatrixPath.Direct, cell.Path);
        Assert.Equal(TraversalMethod.PortMapped, cell.Outcome.Method);
        Assert.Equal(TraversalMethod.PortMapped, cell.Expected.Method);
    }

    [Fact]
    public void EveryCellAgreesWithTheOracle_AndNoneFails()
    {
        Assert.All(Mapped.Value.Cells, c =>
        {
            Assert.True(c.Path != MatrixPath.Failed, $"{c.A.Name} x {c.B.Name}: {c.Outcome.Detail}");
            Assert.True(c.Agrees, $"{c.A.Name} x {c.B.Name}: {c.Path} by {c.Outcome.Method}, expected {c.Expected.Path} ({c.Outcome.Detail})");
        });
    }

    [Fact]
    public void MethodIsPortMapped_ExactlyWhereASideCanMap()
    {
        foreach (var c in Mapped.Value.Cells.Where(c => !c.SameLan))
        {
            var mapped = MatrixLab.OffersPortMapping(c.A) || MatrixLab.OffersPortMapping(c.B);
            Assert.True(mapped == (c.Outcome.Method == TraversalMethod.PortMapped),
                $"{c.A.Name} x {c.B.Name}: {c.Outcome.Method} ({c.Outcome.Detail})");
        }

        // a carrier NAT offers nothing, a home router behind one is not asked: cgnat x symmetric-random keeps the relay
        Assert.False(MatrixLab.OffersPortMapping(T("cgnat")));
        Assert.Equal(Plain.Value.Cell("cgnat", "cgnat")!.Path, Mapped.Value.Cell("cgnat", "cgnat")!.Path);
    }

    [Fact]
    public void WithoutTheFlag_NoRouterServes_AndNoMethodIsPortMapped()
    {
        Assert.DoesNotContain(Plain.Value.Cells, c => c.Outcome.Method == TraversalMethod.PortMapped);
        var cell = MatrixLab.Build(T("symmetric-random"), T("open"), seed: 1);
        Assert.Null(cell.PortMapA);
    }
}
