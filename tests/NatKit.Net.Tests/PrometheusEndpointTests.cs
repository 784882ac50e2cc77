using System.Diagnostics.Metrics;
using System.Net;

namespace NatKit.Net.Tests;

/// <summary>The Prometheus text endpoint on real loopback: NatKit meters only, OpenTelemetry-to-Prometheus names,
/// counters summed per label set, observable gauges read at the scrape, and anything but GET /metrics refused.</summary>
public sealed class PrometheusEndpointTests
{
    [Fact]
    public async Task Scrape_NamesAndSumsCounters_ReadsGaugesNow_AndIgnoresOtherMeters()
    {
        await using var endpoint = await PrometheusEndpoint.StartAsync(SystemNetwork.Instance,
            new IPEndPoint(IPAddress.Loopback, 0), CancellationToken.None);
        using var meter = new Meter("NatKit.EndpointTest");
        using var other = new Meter("Someone.Else");
        var relayed = meter.CreateCounter<long>("natkit.endpointtest.relay", "By", "Bytes relayed.");
        var gauge = 7;
        meter.CreateObservableGauge("natkit.endpointtest.open", () => gauge, description: "Open things.");
        other.CreateCounter<long>("someone.else.count").Add(1);
        relayed.Add(100, new KeyValuePair<string, object?>("direction", "up"));
        relayed.Add(23, new KeyValuePair<string, object?>("direction", "up"));
        relayed.Add(5, new KeyValuePair<string, object?>("direction", "down\"quoted"));
        gauge = 9; // read at the scrape, not when it was made

        using var http = new HttpClient();
        var text = await http.GetStringAsync($"http://{endpoint.EndPoint}/metrics");

        Assert.Contains("# TYPE natkit_endpointtest_relay_bytes_total counter\n", text, StringComparison.Ordinal);
        Assert.Contains("natkit_endpointtest_relay_bytes_total{direction=\"up\"} 123\n", text, StringComparison.Ordinal);
        Assert.Contains("natkit_endpointtest_relay_bytes_total{direction=\"down\\\"quoted\"} 5\n", text, StringComparison.Ordinal);
        Assert.Contains("# TYPE natkit_endpointtest_open gauge\n", text, StringComparison.Ordinal);
        Assert.Contains("natkit_endpointtest_open 9\n", text, StringComparison.Ordinal);
        Assert.DoesNotContain("someone", text, StringComparison.Ordinal);

        using var wrong = await http.GetAsync($"http://{endpoint.EndPoint}/other");
        Assert.False(wrong.IsSuccessStatusCode);
    }
}
