using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Net;
using System.Text;

namespace NatKit.Net;

/// <summary>
/// NatKit's System.Diagnostics.Metrics meters (every meter whose name starts with NatKit) in Prometheus' text
/// exposition format, answered to GET /metrics on a TCP listener of <see cref="INetwork"/>. Names follow the
/// OpenTelemetry-to-Prometheus rules: dots become underscores, a byte unit adds <c>_bytes</c>, seconds
/// <c>_seconds</c>, counters end in <c>_total</c>; tags become labels. Observable instruments are read at the
/// scrape, so a scrape never sees a value older than itself. `natkit ... --metrics-listen` serves it
/// (docs/operations.md lists every series).
/// </summary>
public sealed class PrometheusEndpoint : IAsyncDisposable
{
    private readonly MeterListener _listener = new();
    private readonly ConcurrentDictionary<SeriesKey, Series> _series = new();
    private readonly IStreamListener _http;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;

    private PrometheusEndpoint(IStreamListener http)
    {
        _http = http;
        _listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name.StartsWith("NatKit", StringComparison.Ordinal))
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((i, v, tags, _) => Record(i, v, tags));
        _listener.SetMeasurementEventCallback<int>((i, v, tags, _) => Record(i, v, tags));
        _listener.SetMeasurementEventCallback<double>((i, v, tags, _) => Record(i, v, tags));
        _listener.Start();
        _loop = StreamAcceptLoop.RunAsync(http, AnswerAsync, stop: _stop.Token); // the servers' one accept loop
    }

    public IPEndPoint EndPoint => _http.LocalEndPoint;

    public static async Task<PrometheusEndpoint> StartAsync(INetwork network, IPEndPoint endPoint, CancellationToken ct) =>
        new(await network.ListenTcpAsync(endPoint, cancellationToken: ct));

    /// <summary>The exposition text as a scrape sees it now (observable instruments read at this moment).</summary>
    public string Render()
    {
        _listener.RecordObservableInstruments();
        var sb = new StringBuilder();
        foreach (var family in _series.Values.GroupBy(s => s.Name).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            var first = family.First();
            sb.Append("# HELP ").Append(family.Key).Append(' ').Append(Escape(first.Help)).Append('\n');
            sb.Append("# TYPE ").Append(family.Key).Append(' ').Append(first.Counter ? "counter" : "gauge").Append('\n');
            foreach (var s in family.OrderBy(s => s.Labels, StringComparer.Ordinal))
            {
                sb.Append(family.Key).Append(s.Labels).Append(' ')
                    .Append(s.Value.ToString("R", CultureInfo.InvariantCulture)).Append('\n');
            }
        }

        return sb.ToString();
    }

    private void Record(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        // Keyed by the tag objects (preboxed by the meters), so a counted packet builds no string.
        var key = tags.Length switch
        {
            0 => new SeriesKey(instrument, null, null, null),
            1 => new SeriesKey(instrument, tags[0].Key, tags[0].Value, null),
            _ => new SeriesKey(instrument, null, null, Labels(tags)),
        };
        if (!_series.TryGetValue(key, out var series))
        {
            series = _series.GetOrAdd(key, new Series(instrument, key.Extra ?? Labels(tags)));
        }

        if (instrument.IsObservable)
        {
            series.Set(value); // observable instruments report their current value (gauges, observable counters)
        }
        else
        {
            series.Add(value); // counters and up-down counters report increments
        }
    }

    private static string Labels(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        if (tags.Length == 0)
        {
            return "";
        }

        var pairs = new List<string>();
        foreach (var t in tags)
        {
            var value = Convert.ToString(t.Value, CultureInfo.InvariantCulture) ?? "";
            pairs.Add($"{Name(t.Key)}=\"{value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal)}\"");
        }

        pairs.Sort(StringComparer.Ordinal);
        return "{" + string.Join(",", pairs) + "}";
    }

    /// <summary>natkit.turn.relay.bytes (unit By, a counter) is natkit_turn_relay_bytes_total.</summary>
    internal static string SeriesName(Instrument instrument)
    {
        var name = Name(instrument.Name);
        if (instrument.Unit is "By" && !name.EndsWith("_bytes", StringComparison.Ordinal))
        {
            name += "_bytes";
        }
        else if (instrument.Unit is "s" && !name.EndsWith("_seconds", StringComparison.Ordinal))
        {
            name += "_seconds";
        }

        return IsCounter(instrument) ? name + "_total" : name;
    }

    private static bool IsCounter(Instrument i) => i is Counter<long> or Counter<int> or Counter<double>
        or ObservableCounter<long> or ObservableCounter<int> or ObservableCounter<double>;

    private static string Name(string text)
    {
        var sb = new StringBuilder(text.Length);
        foreach (var c in text)
        {
            sb.Append(char.IsAsciiLetterOrDigit(c) || c == '_' ? c : '_');
        }

        return sb.ToString();
    }

    private static string Escape(string text) =>
        text.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);

    /// <summary>One request per connection: GET /metrics gets the text, anything else 404. A scraper that goes
    /// away ends it with a connection error, which the accept loop takes quietly.</summary>
    private async Task AnswerAsync(IStreamConnection connection)
    {
        await using (connection)
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
            timeout.CancelAfter(TimeSpan.FromSeconds(10));
            var head = new StringBuilder();
            var buffer = new byte[4096];
            while (!head.ToString().Contains("\r\n\r\n", StringComparison.Ordinal) && head.Length < 16384)
            {
                var n = await connection.Stream.ReadAsync(buffer, timeout.Token);
                if (n == 0)
                {
                    return;
                }

                head.Append(Encoding.ASCII.GetString(buffer, 0, n));
            }

            var requestLine = head.ToString().Split("\r\n")[0].Split(' ');
            var ok = requestLine is [("GET" or "HEAD"), var path, _] && (path == "/metrics" || path.StartsWith("/metrics?", StringComparison.Ordinal));
            var body = Encoding.UTF8.GetBytes(ok ? Render() : "not found: scrape /metrics\n");
            var status = ok ? "200 OK" : "404 Not Found";
            var contentType = ok ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain; charset=utf-8";
            var response = Encoding.ASCII.GetBytes(
                $"HTTP/1.1 {status}\r\nContent-Type: {contentType}\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n");
            await connection.Stream.WriteAsync(response, timeout.Token);
            if (requestLine[0] != "HEAD")
            {
                await connection.Stream.WriteAsync(body, timeout.Token);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _http.DisposeAsync();
        await _loop;
        _listener.Dispose();
        _stop.Dispose();
    }

    private readonly record struct SeriesKey(Instrument Instrument, string? TagKey, object? TagValue, string? Extra);

    private sealed class Series(Instrument instrument, string labels)
    {
        private double _value;

        public string Name { get; } = SeriesName(instrument);

        public string Help { get; } = instrument.Description ?? instrument.Name;

        public bool Counter { get; } = IsCounter(instrument);

        public string Labels { get; } = labels;

        public double Value => Volatile.Read(ref _value);

        public void Add(double delta)
        {
            double seen, next;
            do
            {
                seen = Volatile.Read(ref _value);
                next = seen + delta;
            }
            while (Interlocked.CompareExchange(ref _value, next, seen) != seen);
        }

        public void Set(double value) => Volatile.Write(ref _value, value);
    }
}
