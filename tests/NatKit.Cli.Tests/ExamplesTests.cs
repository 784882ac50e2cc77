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

    [Theory]
    [InlineData("StunProbe", "\"mapping\": \"no-nat\"", "\"serverSupportsRfc5780\": true")] // its own RFC 5780 server on loopback
    [InlineData("TurnRelay", "peer got 'hello through the relay'", "client got 'and back'")] // to a peer and back
    public async Task TheExample_RunsTo0_PrintingWhatItShows(string name, string first, string second)
    {
        var (code, output, errors) = await ExternalProcess.RunAsync("dotnet", [Dll(name)], Natkit.Deadline);
        Assert.True(code == 0, output + errors);
        Assert.Contains(first, output, StringComparison.Ordinal);
        Assert.Contains(second, output, StringComparison.Ordinal);
    }
}
