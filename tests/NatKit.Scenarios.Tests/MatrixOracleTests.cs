using NatKit.Nat;
using NatKit.Scenarios.Matrix;
using NatKit.Traversal.HardNat;
using NatKit.Traversal;

namespace NatKit.Scenarios.Tests;

/// <summary>The oracle's verdicts, pinned to what the issue's "done when" says the knobs imply.</summary>
public sealed class MatrixOracleTests
{
    private static MatrixType T(string name) => MatrixTypes.Find(name) ?? throw new ArgumentException(name);

    private static IEnumerable<MatrixType> Grid => MatrixTypes.All.Where(t => t.Placement != MatrixPlacement.SameLan);

    [Fact]
    public void TheTypes_AreEveryOneTheIssueLists_InGridOrder()
    {
        Assert.Equal(
            ["open", "one2one", "full-cone", "restricted-cone", "port-restricted-cone", "easy", "easyaf", "linux-masquerade",
             "symmetric-sequential", "symmetric-random", "cgnat", "same-lan", "same-lan-hairpin"],
            MatrixTypes.All.Select(t => t.Name));
        Assert.Equal(2, T("cgnat").Chain.Count);
        Assert.Equal(PortAssignment.Sequential, T("symmetric-sequential").Chain[0].PortAssignment);
        Assert.Equal(PortAssignment.Random, T("symmetric-random").Chain[0].PortAssignment);
        Assert.Equal(HairpinBehavior.None, T("same-lan").Chain[0].Hairpinning);
        Assert.NotEqual(HairpinBehavior.None, T("same-lan-hairpin").Chain[0].Hairpinning);
        Assert.True(T("one2one").DmzToPeer);
        Assert.Equal("symmetric", T("SYMMETRIC").Name); // any preset by name, case-insensitive
        Assert.Null(MatrixTypes.Find("no-such-nat"));
    }

    [Fact]
    public void EndpointIndependentMapping_OnEitherSide_ConnectsDirectly_WhateverTheOtherSide()
    {
        foreach (var eim in Grid.Where(t => EffectiveNat.Of(t.Chain).Knowledge == PortKnowledge.Known))
        {
            foreach (var other in Grid)
            {
                Assert.Equal(MatrixPath.Direct, TraversalOracle.Predict(eim, other).Path);
                Assert.Equal(MatrixPath.Direct, TraversalOracle.Predict(other, eim).Path);
                Assert.Equal(MatrixPath.Direct, TraversalOracle.Predict(eim, other, new OracleOptions { Relay = false }).Path);
            }
        }
    }

    [Theory]
    [InlineData("port-restricted-cone")]
    [InlineData("easy")]
    [InlineData("linux-masquerade")] // APDM in the policy, but the kept port makes it endpoint-independent from outside
    [InlineData("cgnat")]
    public void RandomSymmetric_AgainstAnEndpointIndependentSide_ConnectsByBirthdayProbing_WithinTheDefaultBudget(string eim)
    {
        foreach (var (a, b) in new[] { (T("symmetric-random"), T(eim)), (T(eim), T("symmetric-random")) })
        {
            var v = TraversalOracle.Predict(a, b);
            Assert.Equal(MatrixPath.Direct, v.Path);
            Assert.Equal(TraversalMethod.Birthday, v.Method);
            Assert.InRange(v.Probability!.Value, 0.95, 1.0);
        }
    }

    [Fact]
    public void BirthdayProbing_WithATinyBudget_FallsBackToTheRelay_BecauseTheVerdictReadsTheBudget()
    {
        var small = new OracleOptions { Budget = new ProbeBudget { Total = 16 } };
        var v = TraversalOracle.Predict(T("symmetric-random"), T("port-restricted-cone"), small);
        Assert.Equal(MatrixPath.Relay, v.Path);
        Assert.InRange(v.Probability!.Value, 0, 0.95);
        Assert.Equal(MatrixPath.Failed, TraversalOracle.Predict(T("symmetric-random"), T("port-restricted-cone"),
            small with { Relay = false }).Path);
    }

    [Fact]
    public void SequentialSymmetric_OnBothSides_ConnectsByPrediction()
    {
        var v = TraversalOracle.Predict(T("symmetric-sequential"), T("symmetric-sequential"));
        Assert.Equal((MatrixPath.Direct, TraversalMethod.Prediction), (v.Path, v.Method));
        var none = TraversalOracle.Predict(T("symmetric-sequential"), T("symmetric-sequential"),
            new OracleOptions { Budget = new ProbeBudget { PredictedPorts = 0 } });
        Assert.Equal(MatrixPath.Relay, none.Path);
    }

    [Fact]
    public void RandomSymmetric_OnBothSides_GoesThroughTheRelay_OrFailsWithoutOne()
    {
        var v = TraversalOracle.Predict(T("symmetric-random"), T("symmetric-random"));
        Assert.Equal((MatrixPath.Relay, TraversalMethod.Relay), (v.Path, v.Method));
        Assert.Equal(MatrixPath.Failed,
            TraversalOracle.Predict(T("symmetric-random"), T("symmetric-random"), new OracleOptions { Relay = false }).Path);
    }

    [Theory]
    [InlineData("same-lan")]
    [InlineData("same-lan-hairpin")]
    public void SameLan_ConnectsDirectlyOverHostCandidates_WhetherOrNotTheNatHairpins(string name)
    {
        var v = TraversalOracle.Predict(T(name), T(name), new OracleOptions { Relay = false });
        Assert.Equal((MatrixPath.Direct, TraversalMethod.Host), (v.Path, v.Method));
        Assert.Throws<ArgumentException>(() => TraversalOracle.Predict(T(name), T("open")));
    }

    [Fact]
    public void WithARelay_NoCellIsExpectedToFail_AndWithoutOne_OnlyTheHardPairsDo()
    {
        var cells = TraversalMatrix.Cells(MatrixTypes.All);
        Assert.Equal(11 * 11 + 2, cells.Count);
        Assert.DoesNotContain(cells, c => TraversalOracle.Predict(c.A, c.B).Path == MatrixPath.Failed);
        var failing = cells.Where(c => TraversalOracle.Predict(c.A, c.B, new OracleOptions { Relay = false }).Path == MatrixPath.Failed)
            .Select(c => $"{c.A.Name} x {c.B.Name}").Order(StringComparer.Ordinal).ToList();
        Assert.Equal(
            ["symmetric-random x symmetric-random", "symmetric-random x symmetric-sequential", "symmetric-sequential x symmetric-random"],
            failing);
    }

    [Fact]
    public void AnAddressDependentFilter_AdmitsThePeersNewPort_SoThePeerReflexiveCandidateConnects()
    {
        var v = TraversalOracle.Predict(T("restricted-cone"), T("symmetric-random"), new OracleOptions { Relay = false });
        Assert.Equal((MatrixPath.Direct, TraversalMethod.PeerReflexive), (v.Path, v.Method));
        var open = TraversalOracle.Predict(T("open"), T("symmetric-random"));
        Assert.Equal((MatrixPath.Direct, TraversalMethod.PeerReflexive), (open.Path, open.Method));
    }

    [Fact]
    public void EffectiveNat_OfAChain_TakesTheLeastIndependentMapping_TheStrictestFilter_AndTheOutermostAllocator()
    {
        var cgnat = EffectiveNat.Of(T("cgnat").Chain);
        Assert.Equal((MappingBehavior.EndpointIndependent, FilteringBehavior.AddressAndPortDependent),
            (cgnat.Mapping, cgnat.Filtering));
        var symmetricBehindFullCone = EffectiveNat.Of([NatPresets.SymmetricSequential, NatPresets.FullCone with { PortAssignment = PortAssignment.Random }]);
        Assert.Equal(MappingBehavior.AddressAndPortDependent, symmetricBehindFullCone.Mapping);
        Assert.Equal(PortKnowledge.Unknown, symmetricBehindFullCone.Knowledge); // the outer NAT re-randomises the ports
        Assert.Equal(PortKnowledge.Predictable, EffectiveNat.Of([NatPresets.SymmetricSequential, NatPresets.FullCone]).Knowledge);
        Assert.True(EffectiveNat.Of([]).Open);
    }
}
