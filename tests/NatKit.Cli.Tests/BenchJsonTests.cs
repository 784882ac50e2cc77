using System.Text.Json;

namespace NatKit.Cli.Tests;

/// <summary>The bench verbs' `--json`: the one shape (an array of records, each beginning with its name), parsed
/// back from tiny runs.</summary>
public sealed class BenchJsonTests
{
    [Fact]
    public async Task BenchNatJson_IsOneArray_OfNamedMeasures()
    {
        var (code, output, errors) = await Natkit.RunAsync("bench", "nat", "--flows", "1000", "--packets", "1000", "--json");
        Assert.True(code == 0, output + errors);
        using var json = JsonDocument.Parse(output);
        var records = json.RootElement.EnumerateArray().ToList();
        Assert.Equal(5, records.Count);
        Assert.All(records, r => Assert.Equal("name", r.EnumerateObject().First().Name));
        Assert.StartsWith("established UDP outbound", records[0].GetProperty("name").GetString(), StringComparison.Ordinal);
        Assert.True(records[0].GetProperty("perCpuSecond").GetDouble() > 0);
        var memory = Assert.Single(records, r => r.GetProperty("name").GetString()!.StartsWith("bytes per flow", StringComparison.Ordinal));
        Assert.Equal(1000, memory.GetProperty("liveFlows").GetInt64());
        Assert.True(memory.GetProperty("tableBytesPerFlow").GetDouble() > 0);
    }

    [Fact]
    public async Task BenchStunJson_IsOneArray_WithTheRecordNamedByTheLabel()
    {
        await using var server = await Natkit.StartAsync("Ctrl+C stops", "stun", "serve", "--listen", "127.0.0.1:0", "--no-tcp");
        var port = Natkit.PortAfter(server.Output, "127.0.0.1:");
        var (code, output, errors) = await Natkit.RunAsync("bench", "stun", $"127.0.0.1:{port}", "--requests", "20",
            "--sockets", "2", "--json", "--label", "natkit");
        Assert.True(code == 0, output + errors);
        using var json = JsonDocument.Parse(output);
        var record = Assert.Single(json.RootElement.EnumerateArray().ToList());
        Assert.Equal("natkit", record.GetProperty("name").GetString());
        Assert.Equal(20, record.GetProperty("requests").GetInt64());
        Assert.True(record.GetProperty("responses").GetInt64() > 0);
        Assert.Equal(20, record.GetProperty("responses").GetInt64() + record.GetProperty("lost").GetInt64());
        Assert.Equal(0, await Natkit.StopAsync(server));
    }

    [Fact]
    public async Task BenchUtpJson_IsOneArray_WithLoopbackAndLabRecords()
    {
        var (code, output, errors) = await Natkit.RunAsync("bench", "utp", "--bytes", "200000", "--runs", "1", "--lab",
            "--lab-bytes", "100000", "--lab-latency", "5", "--json");
        Assert.True(code == 0, output + errors);
        using var json = JsonDocument.Parse(output);
        var records = json.RootElement.EnumerateArray().ToDictionary(r => r.GetProperty("name").GetString()!);
        Assert.Equal(["NatKit -> NatKit", "lab", "run"], records.Keys);
        Assert.Equal(200000, records["NatKit -> NatKit"].GetProperty("bytes").GetInt64());
        Assert.True(records["NatKit -> NatKit"].GetProperty("medianMbitPerSecond").GetDouble() > 0);
        Assert.Equal(100000, records["lab"].GetProperty("bytes").GetInt64());
        Assert.True(records["lab"].GetProperty("virtualSeconds").GetDouble() > 0);
    }
}
