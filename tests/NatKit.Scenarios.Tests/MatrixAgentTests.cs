using NatKit.Scenarios.Matrix;
using NatKit.Traversal;

namespace NatKit.Scenarios.Tests;

/// <summary>The line a matrix agent process prints its outcome in, read back by the runner.</summary>
public sealed class MatrixAgentTests
{
    [Fact]
    public void Outcome_RoundTripsThroughTheAgentsJsonLine()
    {
        var outcome = new MatrixOutcome(MatrixPath.Direct, TraversalMethod.Birthday, TimeSpan.FromMilliseconds(812.5), 431,
            TimeSpan.FromMilliseconds(1.25), "a: Direct by Birthday in 812 ms");
        Assert.Equal(outcome, MatrixAgent.FromJson(MatrixAgent.ToJson(outcome)));
        var failed = MatrixOutcome.Failed("no path \"quoted\"", 3);
        Assert.Equal(failed, MatrixAgent.FromJson(MatrixAgent.ToJson(failed)));
    }

    [Theory]
    [InlineData("")]
    [InlineData("{")]
    [InlineData("[]")]
    [InlineData("{\"path\":\"Direct\"}")]
    [InlineData("{\"path\":\"Sideways\",\"probes\":1}")]
    [InlineData("{\"path\":7,\"probes\":1}")]
    [InlineData("{\"path\":\"Direct\",\"probes\":\"many\"}")]
    [InlineData("node abc")]
    public void ALineThatIsNoOutcome_IsNull_NeverAnException(string line) => Assert.Null(MatrixAgent.FromJson(line));

    [Fact]
    public void AnOutcomeWithNonsenseTimes_KeepsThePath_AndDropsTheTimes()
    {
        var o = MatrixAgent.FromJson("{\"path\":\"Relay\",\"method\":\"Teleport\",\"connect_ms\":-5,\"probes\":2}");
        Assert.NotNull(o);
        Assert.Equal(MatrixPath.Relay, o.Path);
        Assert.Null(o.Method);
        Assert.Null(o.ConnectTime);
    }
}
