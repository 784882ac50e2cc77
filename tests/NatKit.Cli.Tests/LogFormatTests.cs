using System.Globalization;
using System.Text.Json;

namespace NatKit.Cli.Tests;

/// <summary>--log-format and --log-level on the server verbs: ISO-8601 UTC times, one line or one JSON object per
/// event.</summary>
public sealed class LogFormatTests
{
    [Fact]
    public async Task Json_IsOneObjectPerLine_WithAnIsoTimestamp_TheEventIdAndTheMessage()
    {
        await using var server = await Natkit.StartAsync("\"EventId\"", "stun", "serve", "--listen", "[::1]:0", "--no-tcp",
            "--log-format", "json");
        Assert.Equal(0, await Natkit.StopAsync(server));
        var line = server.Output.Split('\n').First(l => l.StartsWith('{'));
        using var doc = JsonDocument.Parse(line);
        var timestamp = doc.RootElement.GetProperty("Timestamp").GetString()!;
        Assert.Matches("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$", timestamp);
        Assert.True(DateTimeOffset.TryParse(timestamp, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out _));
        Assert.Equal("Information", doc.RootElement.GetProperty("LogLevel").GetString());
        Assert.StartsWith("STUN server on UDP [::1]:", doc.RootElement.GetProperty("Message").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Text_IsOneLinePerEvent_StartingWithAnIsoTime()
    {
        await using var server = await Natkit.StartAsync("Ctrl+C stops", "turn", "serve", "--user", "a:b", "--listen", "127.0.0.1:0");
        Assert.Equal(0, await Natkit.StopAsync(server));
        Assert.Matches("(?m)^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z info: NatKit\\.Turn\\.Server\\.TurnServer\\[0\\] TURN server on UDP 127\\.0\\.0\\.1:", server.Output);
        Natkit.AssertPlain(server.Output);
    }

    [Fact]
    public async Task Warning_HidesTheStartLine()
    {
        await using var server = await Natkit.StartAsync("Ctrl+C stops", "stun", "serve", "--listen", "127.0.0.1:0", "--no-tcp",
            "--log-level", "warning");
        Assert.Equal(0, await Natkit.StopAsync(server));
        Assert.DoesNotContain("info:", server.Output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--log-level", "loud", "--log-level loud: use trace, debug, information, warning, error, critical or none.")]
    [InlineData("--log-format", "xml", "--log-format xml: use text or json.")]
    public async Task ABadLogFlag_IsRefused(string flag, string value, string expected) =>
        Natkit.AssertRefused(await Natkit.RunAsync("proxy", "serve", "--listen", "127.0.0.1:0", flag, value), expected);
}
