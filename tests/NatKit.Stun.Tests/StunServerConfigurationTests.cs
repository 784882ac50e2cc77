using System.Net;
using NatKit.Net;
using NatKit.Stun.Client;
using NatKit.Stun.Server;

namespace NatKit.Stun.Tests;

/// <summary>The server's options and metrics. What it answers on the wire is the shared suite's
/// (Shared/StunServerContract.cs, on loopback and in the lab).</summary>
public class StunServerConfigurationTests
{
    [Fact]
    public async Task Metrics_UseStableNames_AndCountRequestsAndDrops()
    {
        var seen = new Dictionary<string, long>();
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == StunServerMetrics.MeterName)
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, _, _) =>
        {
            lock (seen)
            {
                seen[instrument.Name] = seen.GetValueOrDefault(instrument.Name) + value;
            }
        });
        listener.Start();
        await using var server = await StunServer.StartAsync(SystemNetwork.Instance, new StunServerOptions
        {
            Primary = new IPEndPoint(IPAddress.Loopback, 0),
            EnableTcp = false,
        });
        // One send and a long wait: a retransmission on a loaded machine (after a 100 ms RTO, say) would be
        // answered too and count twice.
        var client = new StunClient(SystemNetwork.Instance,
            new StunClientOptions { InitialRto = TimeSpan.FromSeconds(30), RequestCount = 1, LastWaitMultiplier = 1 });
        Assert.NotNull(await client.BindingAsync(server.UdpEndPoints[0]));
        Assert.Equal(1, server.Metrics.Responses);
        lock (seen)
        {
            Assert.True(seen.GetValueOrDefault("natkit.stun.server.requests") >= 1);
            Assert.True(seen.GetValueOrDefault("natkit.stun.server.responses") >= 1);
        }
    }

    [Fact]
    public void Options_Validate_NamesTheBadField()
    {
        var e = Assert.Throws<ArgumentException>(() => new StunServerOptions
        {
            AlternateAddress = IPAddress.Loopback,
        }.Validate());
        Assert.Contains("AlternateAddress", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<ArgumentException>(() => new StunServerOptions { Realm = "r" }.Validate());
        Assert.Contains("Realm", e.Message, StringComparison.Ordinal);
    }
}
