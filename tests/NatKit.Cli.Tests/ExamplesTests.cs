namespace NatKit.Cli.Tests;

/// <summary>examples/ run as a reader would run them (their build is part of this project's): each ends 0 and
/// prints what docs/operations.md says it prints.</summary>
public sealed class ExamplesTests
{
#if DEBUG
    private const string Configuration = "Debug";
#else
    private const string Configuration = "Release";
#endif

    private static string Dll(string name) =>
        Path.Combine(Natkit.RepositoryRoot, "examples", name, "bin", Configuration, "net10.0", name + ".dll");

    [Fact]
    public async Task StunProbe_FindsNoNatOnLoopback_AgainstItsOwnRfc5780Server()
    {
        var (code, output, errors) = await ExternalProcess.RunAsync("dotnet", [Dll("StunProbe")], Natkit.Deadline);
        Assert.True(code == 0, output + errors);
        Assert.Contains("\"mapping\": \"no-nat\"", output, StringComparison.Ordinal);
        Assert.Contains("\"serverSupportsRfc5780\": true", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TurnRelay_RelaysADatagramToAPeerAndItsAnswerBack()
    {
        var (code, output, errors) = await ExternalProcess.RunAsync("dotnet", [Dll("TurnRelay")], Natkit.Deadline);
        Assert.True(code == 0, output + errors);
        Assert.Contains("peer got 'hello through the relay'", output, StringComparison.Ordinal);
        Assert.Contains("client got 'and back'", output, StringComparison.Ordinal);
    }
}
