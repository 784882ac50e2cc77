using System.CommandLine;
using System.Net;
using NatKit.Net;

namespace NatKit.Cli;

/// <summary>
/// `--metrics-listen ADDRESS:PORT`: NatKit's System.Diagnostics.Metrics meters (every meter named NatKit.*) in
/// Prometheus' text exposition format at http://ADDRESS:PORT/metrics. Names follow the OpenTelemetry-to-Prometheus
/// rules: dots become underscores, a byte unit adds <c>_bytes</c>, counters end in <c>_total</c>; tags become labels.
/// docs/operations.md lists every series. A small exporter of our own rather than a package: the OpenTelemetry
/// exporter is served only as a pre-release, and prometheus-net publishes observable gauges on a timer, so a
/// scrape could read a count several seconds old.
/// </summary>
internal sealed class CliMetrics
{
    public Option<string?> Listen { get; } = new("--metrics-listen")
    {
        Description = "Serve the meters in Prometheus text format at http://ADDRESS:PORT/metrics (loopback or an admin network: there is no authentication).",
    };

    public void AddTo(Command command)
    {
        ArgumentNullException.ThrowIfNull(command);
        command.Options.Add(Listen);
    }

    /// <summary>Starts the endpoint the flag asks for, or returns null without it.</summary>
    public async Task<PrometheusEndpoint?> StartAsync(ParseResult parse, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(parse);
        return await StartAsync(parse.GetValue(Listen), ct);
    }

    /// <summary>Starts the endpoint at <paramref name="text"/> (the flag's value, or a config key's that stands in
    /// for it), or returns null without one. A bad address is refused before this returns.</summary>
    public static Task<PrometheusEndpoint?> StartAsync(string? text, CancellationToken ct)
    {
        if (text is null)
        {
            return Task.FromResult<PrometheusEndpoint?>(null);
        }

        var endPoint = CliFlags.EndPoint(text, 9464, "--metrics-listen");
        return StartAsync(endPoint, ct);

        static async Task<PrometheusEndpoint?> StartAsync(IPEndPoint endPoint, CancellationToken ct) =>
            await PrometheusEndpoint.StartAsync(SystemNetwork.Instance, endPoint, ct);
    }
}
