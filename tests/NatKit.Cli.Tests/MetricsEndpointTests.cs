using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;

namespace NatKit.Cli.Tests;

/// <summary>`--metrics-listen`: the meters in Prometheus text format, checked by Prometheus' own promtool, with
/// counts that match what a real TURN client (coturn's turnutils_uclient) says it relayed.</summary>
public sealed class MetricsEndpointTests
{
    private static async Task<string> ScrapeAsync(int port, string path = "/metrics")
    {
        using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(10) };
        using var response = await http.GetAsync(new Uri($"http://127.0.0.1:{port}{path}"));
        return response.StatusCode == HttpStatusCode.OK ? await response.Content.ReadAsStringAsync() : $"HTTP {(int)response.StatusCode}";
    }

    private static long Value(string text, string series)
    {
        var m = Regex.Match(text, "(?m)^" + Regex.Escape(series) + " ([0-9.e+]+)$");
        Assert.True(m.Success, $"no {series} in:\n{text}");
        return (long)double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
    }

    [PeerFact("turnutils_uclient", "promtool")]
    public async Task TurnServe_MetricsMatchWhatTurnutilsUclientRelayed_AndPromtoolAcceptsThem()
    {
        await using var server = await Natkit.StartAsync("Ctrl+C stops", "turn", "serve", "--user", "ops:metrics",
            "--listen", "127.0.0.1:0", "--allow", "127.0.0.0/8", "--metrics-listen", "127.0.0.1:0", "--log-level", "warning");
        var turnPort = Natkit.PortAfter(server.Output, "udp       │ 127.0.0.1:");
        var metricsPort = Natkit.PortAfter(server.Output, "metrics: http://127.0.0.1:");

        // -y: two clients relay to each other through NatKit, no peer program needed
        var (code, output, errors) = await ExternalProcess.RunAsync("turnutils_uclient",
            ["-u", "ops", "-w", "metrics", "-p", turnPort.ToString(CultureInfo.InvariantCulture), "-y", "-n", "25", "-m", "2",
                "-l", "120", "127.0.0.1"], Natkit.Deadline);
        var totals = Regex.Match(output + errors, "tot_send_msgs=([0-9]+), tot_recv_msgs=([0-9]+)\\s*$", RegexOptions.Multiline);
        Assert.True(code == 0 && totals.Success, output + errors);
        var sent = long.Parse(totals.Groups[1].Value, CultureInfo.InvariantCulture);
        var received = long.Parse(totals.Groups[2].Value, CultureInfo.InvariantCulture);
        Assert.True(sent > 0);

        var text = await ScrapeAsync(metricsPort);
        Assert.Equal(sent, Value(text, "natkit_turn_relay_packets_total{direction=\"to_peer\"}"));
        Assert.Equal(received, Value(text, "natkit_turn_relay_packets_total{direction=\"to_client\"}"));
        Assert.Equal(sent * 120, Value(text, "natkit_turn_relay_bytes_total{direction=\"to_peer\"}"));
        Assert.True(Value(text, "natkit_turn_allocations_created_total") >= 2);
        Assert.Contains("# TYPE natkit_turn_allocations_active gauge", text, StringComparison.Ordinal);

        var file = Path.Combine(server.TempDirectory, "scrape.txt");
        await File.WriteAllTextAsync(file, text);
        var check = await ExternalProcess.RunAsync("sh", ["-c", "promtool check metrics < \"$0\"", file], Natkit.Deadline);
        Assert.True(check.ExitCode == 0, check.Output + check.Errors);

        Assert.Equal("HTTP 404", await ScrapeAsync(metricsPort, "/"));
        Assert.Equal(0, await Natkit.StopAsync(server));
    }

    [Fact]
    public async Task StunServe_CountsItsRequests_OnAnIpv6MetricsListener()
    {
        await using var server = await Natkit.StartAsync("Ctrl+C stops", "stun", "serve", "--listen", "127.0.0.1:0", "--no-tcp",
            "--metrics-listen", "[::1]:0");
        var stunPort = Natkit.PortAfter(server.Output, "udp       │ 127.0.0.1:");
        var metricsPort = Natkit.PortAfter(server.Output, "metrics: http://[::1]:");
        var probe = await Natkit.RunAsync("stun", "probe", $"127.0.0.1:{stunPort}", "--requests", "3", "--rto", "200");
        Assert.True(probe.ExitCode == 0, probe.Output + probe.Errors);

        using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false });
        var text = await http.GetStringAsync(new Uri($"http://[::1]:{metricsPort}/metrics"));
        Assert.True(Value(text, "natkit_stun_server_requests_total{transport=\"udp\"}") >= 1, text);
        Assert.True(Value(text, "natkit_stun_server_responses_total{class=\"success\"}") >= 1, text);
        Assert.Equal(0, await Natkit.StopAsync(server));
    }
}
