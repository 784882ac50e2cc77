using System.Text.Json;

namespace NatKit.Cli.Tests;

/// <summary>The one `--json` shape: a single array of records, each beginning with its name, parsed back.</summary>
public sealed class JsonConventionTests
{
    [Fact]
    public async Task LabProbeJson_IsOneArray_OfRecordsNamedByTheirPreset()
    {
        var (code, output, errors) = await Natkit.RunAsync("lab", "probe", "--preset", "full-cone", "--preset", "symmetric", "--no-lifetime", "--json");
        Assert.True(code == 0, output + errors);
        using var json = JsonDocument.Parse(output);
        Assert.Equal(JsonValueKind.Array, json.RootElement.ValueKind);
        Assert.Equal(["full-cone", "symmetric"], json.RootElement.EnumerateArray().Select(r => r.GetProperty("name").GetString()));
        Assert.Equal("endpoint-independent", json.RootElement[0].GetProperty("mapping").GetString());
        Assert.Equal("address-and-port-dependent", json.RootElement[1].GetProperty("mapping").GetString());
        Assert.Equal("name", json.RootElement[0].EnumerateObject().First().Name);
    }

    [Fact]
    public async Task StunProbeJson_IsOneArray_WithTheRecordNamedByTheServer()
    {
        await using var server = await Natkit.StartAsync("Ctrl+C stops", "stun", "serve", "--listen", "[::1]:0", "--no-tcp");
        var port = Natkit.PortAfter(server.Output, "[::1]:");
        var (code, output, errors) = await Natkit.RunAsync("stun", "probe", $"[::1]:{port}", "--json", "--requests", "3", "--rto", "200");
        Assert.True(code == 0, output + errors);
        using var json = JsonDocument.Parse(output);
        var record = Assert.Single(json.RootElement.EnumerateArray().ToList());
        Assert.Equal($"[::1]:{port}", record.GetProperty("name").GetString());
        Assert.True(record.GetProperty("reachable").GetBoolean());
        Assert.Equal(0, await Natkit.StopAsync(server));
    }

    [Fact]
    public async Task ABareIpv6AddressWithAPort_IsAnsweredWithTheBracketedForm()
    {
        Natkit.AssertRefused(await Natkit.RunAsync("proxy", "serve", "--listen", "::1:1080"),
            "--listen ::1:1080: an IPv6 address with a port needs brackets: write [::1]:1080");
        Natkit.AssertRefused(await Natkit.RunAsync("stun", "probe", "::1:3478"),
            "an IPv6 address with a port needs brackets: write [::1]:3478");
    }
}
