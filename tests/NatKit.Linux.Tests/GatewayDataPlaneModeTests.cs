using System.Globalization;
using System.Text.Json;
using NatKit.Linux;
using NatKit.Nat;

namespace NatKit.Linux.Tests;

/// <summary>How the data plane waits: real-time wake-ups when idle, paced batches while traffic flows.</summary>
public sealed class GatewayDataPlaneModeTests
{
    [Theory]
    [InlineData(-1, 20)]
    [InlineData(100, 20)]
    [InlineData(10, -1)]
    [InlineData(10, 10_001)]
    public void Options_OutOfRange_AreRefusedWithAReason(int priority, int pauseMicroseconds)
    {
        var options = new DataPlaneOptions
        {
            RealtimePriority = priority,
            BatchPause = TimeSpan.FromMicroseconds(pauseMicroseconds),
        };
        Assert.NotNull(options.Validate());
    }

    [Fact]
    public void DefaultOptions_AreValid_WithRealtimeWakeUpsAndAPause()
    {
        Assert.Null(DataPlaneOptions.Default.Validate());
        Assert.InRange(DataPlaneOptions.Default.RealtimePriority, 1, 99);
        Assert.True(DataPlaneOptions.Default.BatchPause > TimeSpan.Zero);
    }

    [PeerFact("ip", Root = true)]
    public async Task RealtimePriority_IsTakenWhenAskedFor_AndNotOtherwise()
    {
        await using var withPriority = await GatewayFixture.StartAsync(NatPresets.RfcRecommended,
            options: new DataPlaneOptions { RealtimePriority = 5 });
        Assert.True(withPriority.Gateways[0].DataPlane.Realtime);
        await using var without = await GatewayFixture.StartAsync(NatPresets.RfcRecommended,
            options: new DataPlaneOptions { RealtimePriority = 0 });
        Assert.False(without.Gateways[0].DataPlane.Realtime);
    }

    /// <summary>
    /// A flood of small datagrams with a long pause between batches: the batches grow, so consecutive datagrams of
    /// the flow are written as USO super-packets, and the receiver still gets them (the kernel cuts them up).
    /// </summary>
    [PeerFact("ip", "iperf3", Root = true)]
    public async Task UdpFlood_WithABatchPause_IsCoalescedAndDelivered()
    {
        await using var lab = await GatewayFixture.StartAsync(NatPresets.RfcRecommended,
            options: new DataPlaneOptions { BatchPause = TimeSpan.FromMicroseconds(500) });
        var plane = lab.Gateways[0].DataPlane;
        await using var server = ExternalProcess.Start("ip",
            ["netns", "exec", lab.Topology.Wan.Name, "iperf3", "-s", "-1", "--forceflush", "-B", GatewayTopology.WanHostAddress]);
        await server.WaitForOutputAsync("Server listening", TimeSpan.FromSeconds(30));
        var output = await lab.Topology.Lan.ExecAsync("iperf3",
            ["-c", GatewayTopology.WanHostAddress, "-u", "-l", "64", "-b", "50M", "-t", "2", "-J"], timeout: TimeSpan.FromSeconds(30));
        using var json = JsonDocument.Parse(output);
        var sum = json.RootElement.GetProperty("end").GetProperty("sum");
        var received = sum.GetProperty("packets").GetInt64() - sum.GetProperty("lost_packets").GetInt64();
        Assert.True(received > 10_000, string.Create(CultureInfo.InvariantCulture, $"{received} datagrams arrived"));
        var stats = plane.Stats;
        // 100k datagrams/s and a 500 µs pause: about 50 per batch; without the pause the thread keeps up, batch by one
        Assert.True(stats.InsideRead / stats.Batches >= 10, stats.ToString());
        Assert.True(stats.Coalesced > stats.InsideRead / 2, stats.ToString());
    }
}
