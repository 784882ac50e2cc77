using NatKit.Scenarios.Matrix;
using NatKit.Traversal.HardNat;
using NatKit.Traversal;

namespace NatKit.Scenarios.Tests;

/// <summary>
/// The grid with NatKit's real traversal in every cell (two TraversalNodes, rendezvous, STUN, TURN, the lab's NAT
/// engine): the verdicts the issue names, and that no cell fails with a relay, also on impaired links.
/// </summary>
public sealed class MatrixTraversalTests
{
    private static MatrixType T(string name) => MatrixTypes.Find(name)!;

    private static readonly Lazy<MatrixResult> Default = new(() =>
        TraversalMatrix.Run(new MatrixOptions(), MatrixRunners.Default!));

    [Fact]
    public void EveryCellConnectsWithARelay_AsTheKnobsImply()
    {
        var result = Default.Value;
        Assert.Equal(MatrixTypes.All.Count(t => t.Placement != MatrixPlacement.SameLan) *
                     MatrixTypes.All.Count(t => t.Placement != MatrixPlacement.SameLan) +
                     MatrixTypes.All.Count(t => t.Placement == MatrixPlacement.SameLan), result.Cells.Count);
        Assert.All(result.Cells, c =>
        {
            Assert.True(c.Path != MatrixPath.Failed, $"{c.A.Name} x {c.B.Name}: {c.Outcome.Detail}");
            Assert.True(c.Agrees, $"{c.A.Name} x {c.B.Name}: {c.Path}, expected {c.Expected.Path} ({c.Outcome.Detail})");
        });
    }

    [Fact]
    public void TheIssuesVerdicts_HoldCellByCell()
    {
        var result = Default.Value;
        MatrixCellResult Cell(string a, string b) => result.Cell(a, b)!;

        // Endpoint-independent mapping on either side: direct.
        foreach (var eim in new[] { "open", "full-cone", "port-restricted-cone", "easy", "linux-masquerade" })
        {
            foreach (var other in MatrixTypes.All.Where(t => t.Placement != MatrixPlacement.SameLan))
            {
                Assert.Equal(MatrixPath.Direct, Cell(eim, other.Name).Path);
                Assert.Equal(MatrixPath.Direct, Cell(other.Name, eim).Path);
            }
        }

        // Random-port symmetric against endpoint-independent with filtering: birthday probing, within the budget.
        var birthday = Cell("symmetric-random", "port-restricted-cone");
        Assert.Equal(TraversalMethod.Birthday, birthday.Outcome.Method);
        Assert.InRange(birthday.Outcome.ProbesSent, 1, new ProbeBudget().Total + 2 * new ProbeBudget().HardSideSockets + 200);
        Assert.Equal(TraversalMethod.Birthday, Cell("port-restricted-cone", "symmetric-random").Outcome.Method);

        // Sequential symmetric on both sides: prediction.
        var prediction = Cell("symmetric-sequential", "symmetric-sequential");
        Assert.Equal(MatrixPath.Direct, prediction.Path);
        Assert.Equal(TraversalMethod.Prediction, prediction.Outcome.Method);

        // Random symmetric on both sides: the relay.
        Assert.Equal(MatrixPath.Relay, Cell("symmetric-random", "symmetric-random").Path);

        // Same LAN: host candidates, hairpin or not.
        foreach (var lan in new[] { "same-lan", "same-lan-hairpin" })
        {
            Assert.Equal(MatrixPath.Direct, Cell(lan, lan).Path);
            Assert.Equal(TraversalMethod.Host, Cell(lan, lan).Outcome.Method);
        }
    }

    [Fact]
    public void WithoutARelay_OnlyTheCellsNoDirectMethodReaches_Fail()
    {
        var result = TraversalMatrix.Run(new MatrixOptions
        {
            Types = [T("easy"), T("symmetric-sequential"), T("symmetric-random")],
            Relay = false,
        }, MatrixRunners.Default!);
        Assert.All(result.Cells, c => Assert.True(c.Agrees, $"{c.A.Name} x {c.B.Name}: {c.Path} ({c.Outcome.Detail})"));
        Assert.Equal(
            new[] { ("symmetric-sequential", "symmetric-random"), ("symmetric-random", "symmetric-sequential"),
                ("symmetric-random", "symmetric-random") },
            result.Cells.Where(c => c.Path == MatrixPath.Failed).Select(c => (c.A.Name, c.B.Name)));
    }

    [Fact]
    public void WithLossAndLatencyOnEveryLink_EveryCellStillConnects()
    {
        // 2% loss on every link and 8 ms each: about 100 ms of round trip between two peers behind one NAT each.
        var result = TraversalMatrix.Run(new MatrixOptions
        {
            Link = new NatKit.Lab.LinkProfile { Latency = TimeSpan.FromMilliseconds(8), Loss = 0.02 },
        }, MatrixRunners.Default!);
        Assert.All(result.Cells, c =>
            Assert.True(c.Path != MatrixPath.Failed, $"{c.A.Name} x {c.B.Name}: {c.Outcome.Detail}"));
    }
}
