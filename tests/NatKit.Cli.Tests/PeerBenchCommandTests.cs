using System.Text.Json;

namespace NatKit.Cli.Tests;

/// <summary>`natkit bench peer`: its help, one-sentence refusals, and a tiny run's JSON read back.</summary>
public sealed class PeerBenchCommandTests
{
    [Fact]
    public async Task Help_NamesTheContendersAndFlags()
    {
        var (code, output, _) = await Natkit.RunAsync("bench", "peer", "--help");
        Assert.Equal(0, code);
        foreach (var text in new[] { "ssh -L", "--megabytes", "--rounds", "--startup-samples", "--no-ssh", "--ssh-cipher", "--json" })
        {
            Assert.Contains(text, output, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("--megabytes", "0", "--megabytes 0: must be 1 to 100000.")]
    [InlineData("--rounds", "101", "--rounds 101: must be 1 to 100.")]
    [InlineData("--startup-samples", "0", "--startup-samples 0: must be 1 to 1000.")]
    [InlineData("--ssh-cipher", "aes;rm", "--ssh-cipher 'aes;rm': not a cipher name")]
    [InlineData("--rounds", "many", "--rounds many: expected a whole number.")]
    public async Task ABadValue_IsOneSentenceNamingIt_Exit2(string flag, string value, string expected) =>
        Natkit.AssertRefused(await Natkit.RunAsync("bench", "peer", flag, value), expected);

    [Fact]
    public async Task TinyRun_WithoutSsh_PrintsJsonWithEveryFigure()
    {
        var (code, output, errors) = await Natkit.RunAsync("bench", "peer", "--megabytes", "1", "--rounds", "1",
            "--startup-samples", "1", "--no-ssh", "--json");
        Assert.True(code == 0, errors);
        using var doc = JsonDocument.Parse(output);
        var records = doc.RootElement.EnumerateArray().ToDictionary(r => r.GetProperty("name").GetString()!);
        Assert.Equal(["loopback", "natkit direct", "natkit relay", "natkit start-up", "run"], records.Keys);
        Assert.Equal(1_000_000, records["run"].GetProperty("bytes").GetInt64());
        Assert.Equal("not asked for", records["run"].GetProperty("sshSkipped").GetString());
        foreach (var name in new[] { "loopback", "natkit direct", "natkit relay" })
        {
            Assert.True(records[name].GetProperty("megabytesPerSecond").GetDouble() > 0, name);
            Assert.Single(records[name].GetProperty("rounds").EnumerateArray().ToList());
        }

        Assert.True(records["natkit start-up"].GetProperty("milliseconds").GetDouble() > 0);
    }
}
