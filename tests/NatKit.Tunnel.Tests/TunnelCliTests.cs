namespace NatKit.Tunnel.Tests;

/// <summary>Every mistake a user can make on `natkit tunnel ...` ends in one sentence naming the flag, exit code 2.</summary>
public class TunnelCliTests
{
    [Theory]
    [InlineData("--token", "tunnel", "serve", "--external", "198.51.100.1")]
    [InlineData("--pool", "tunnel", "serve", "--token", "t", "--external", "198.51.100.1", "--pool", "10.0.0.0/99")]
    [InlineData("--external", "tunnel", "serve", "--token", "t", "--external", "nope")]
    [InlineData("--listen", "tunnel", "serve", "--token", "t", "--external", "198.51.100.1", "--listen", "not-an-endpoint")]
    [InlineData("URL", "tunnel", "connect", "http://example.invalid/", "--token", "t")]
    [InlineData("--token", "tunnel", "connect", "ws://127.0.0.1:1/tunnel")]
    [InlineData("--route", "tunnel", "connect", "ws://127.0.0.1:1/tunnel", "--token", "t", "--route", "10.0.0.0/40")]
    [InlineData("--upstream", "tunnel", "relay", "--upstream", "ftp://x/")]
    [InlineData("--name", "tunnel", "sessions", "--name", "no-such-tunnel-server")]
    public async Task ABadFlag_IsOneSentenceNamingIt(string flag, params string[] arguments)
    {
        var (code, output, errors) = await TunnelChainFixture.CliAsync(arguments);
        Assert.Equal(2, code);
        Assert.Contains(flag, output + errors, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", output + errors, StringComparison.Ordinal); // no stack trace line
    }

    [Fact]
    public async Task Help_ListsTheVerbs()
    {
        var (code, output, _) = await TunnelChainFixture.CliAsync("tunnel", "--help");
        Assert.Equal(0, code);
        foreach (var verb in new[] { "serve", "connect", "relay", "sessions", "flows" })
        {
            Assert.Contains(verb, output, StringComparison.Ordinal);
        }
    }
}
