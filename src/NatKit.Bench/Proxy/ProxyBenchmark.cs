using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using NatKit.Net;

namespace NatKit.Bench.Proxy;

/// <summary>What `natkit bench proxy` measures and how.</summary>
public sealed record ProxyBenchmarkOptions
{
    /// <summary>How to run natkit itself (the apphost, or dotnet and natkit.dll), for its own process.</summary>
    public required IReadOnlyList<string> Natkit { get; init; }

    /// <summary>natkit's version, as shown.</summary>
    public string NatkitVersion { get; init; } = "";

    /// <summary>Requests per ab run.</summary>
    public int Requests { get; init; } = 20000;

    /// <summary>ab's concurrency.</summary>
    public int Concurrency { get; init; } = 32;

    /// <summary>Megabytes sent through each CONNECT throughput run.</summary>
    public int ConnectMegabytes { get; init; } = 2048;

    /// <summary>The origin's response body size.</summary>
    public int BodyBytes { get; init; } = 1024;

    /// <summary>Interleaved rounds; each figure is the median.</summary>
    public int Rounds { get; init; } = 5;

    /// <summary>Measure requests/s with `ab -k -X`.</summary>
    public bool MeasureRps { get; init; } = true;

    /// <summary>Measure CONNECT bulk throughput.</summary>
    public bool MeasureConnect { get; init; } = true;

    /// <summary>Also run CONNECT through the minimal C splice(2) relay.</summary>
    public bool SpliceReference { get; init; }

    /// <summary>The TCP congestion control natkit (and the splice reference) use; null for the system's.</summary>
    public string? ProxyCongestionControl { get; init; }

    /// <summary>The CONNECT load's sender algorithms, one CONNECT figure each (null: the system's).</summary>
    public IReadOnlyList<string?> Senders { get; init; } = [null];

    /// <summary>Called with each step, for a progress line.</summary>
    public Action<string>? Progress { get; init; }
}

/// <summary>A contender that ran: its name, what it says its version is, and its port.</summary>
public sealed record ProxyContenderInfo(string Name, string Version, int? Port);

/// <summary>The CONNECT throughput of every contender, in MB/s per round, with one sender algorithm.</summary>
public sealed record ProxyConnectRuns(string? Sender, IReadOnlyDictionary<string, List<double>> MegabytesPerSecond);

/// <summary>Everything a run measured, per contender and round.</summary>
public sealed record ProxyBenchmarkResult(
    IReadOnlyList<ProxyContenderInfo> Contenders,
    IReadOnlyList<string> Missing,
    IReadOnlyDictionary<string, List<AbReport>> RequestsPerSecond,
    IReadOnlyList<ProxyConnectRuns> Connect,
    string SystemCongestionControl,
    string LoadBefore,
    string LoadAfter);

/// <summary>
/// NatKit's proxy side by side with tinyproxy and squid in one run, against the same loopback origin: requests/s
/// with keep-alive under `ab -k -X`, and CONNECT bulk throughput against a direct connection. Everything it starts
/// listens on 127.0.0.1 and is stopped at the end.
/// </summary>
public static class ProxyBenchmark
{
    /// <summary>Runs the benchmark.</summary>
    /// <exception cref="IOException">ab is missing, or a contender did not start.</exception>
    public static async Task<ProxyBenchmarkResult> RunAsync(ProxyBenchmarkOptions options, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(options);
        var progress = options.Progress ?? (_ => { });
        if (ChildProcess.Which("ab") is not { } ab)
        {
            throw new IOException("ab is not installed (apt-get install apache2-utils)");
        }

        var rounds = Math.Max(1, options.Rounds);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var started = new List<IAsyncDisposable>(); // stopped in reverse, also when a start fails
        try
        {
            return await RunAsync(options, ab, rounds, started, progress, stop, ct).ConfigureAwait(false);
        }
        finally
        {
            for (var i = started.Count - 1; i >= 0; i--)
            {
                await started[i].DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    private static async Task<ProxyBenchmarkResult> RunAsync(ProxyBenchmarkOptions options, string ab, int rounds,
        List<IAsyncDisposable> started, Action<string> progress, CancellationTokenSource stop, CancellationToken ct)
    {
        T Started<T>(T item)
        {
            if (item is IAsyncDisposable d)
            {
                started.Add(d);
            }

            return item;
        }

        var origin = Started(await BenchOrigin.StartAsync(options.BodyBytes, stop.Token).ConfigureAwait(false));
        var sink = Started(await ThroughputSink.StartAsync(stop.Token).ConfigureAwait(false));
        var natkit = Started(await ContenderProxy.StartNatkitAsync(options.Natkit, options.NatkitVersion, sink.Port,
            options.ProxyCongestionControl, ct).ConfigureAwait(false));
        var tinyproxy = Started(await ContenderProxy.StartTinyproxyAsync(sink.Port, ct).ConfigureAwait(false));
        var squid = Started(await ContenderProxy.StartSquidAsync(sink.Port, ct).ConfigureAwait(false));
        var reference = Started(options.SpliceReference && options.MeasureConnect
            ? await ContenderProxy.StartSpliceReferenceAsync(sink.Port, options.ProxyCongestionControl, ct).ConfigureAwait(false)
            : null);

        List<ProxyContenderInfo> contenders = [new("direct", "", null)];
        foreach (var peer in new[] { natkit, tinyproxy, squid })
        {
            if (peer is not null)
            {
                contenders.Add(new(peer.Name, peer.Version, peer.Port));
                progress($"{peer.Name} {peer.Version} on 127.0.0.1:{peer.Port}");
            }
        }

        List<string> missing = [.. new[] { "tinyproxy", "squid" }.Where(n => !contenders.Exists(c => c.Name == n))];
        var loadBefore = BenchFigures.LoadAverage();
        var url = $"http://127.0.0.1:{origin.Port}/";
        if (options.MeasureRps)
        {
            foreach (var c in contenders.Skip(1))
            {
                await AbAsync(ab, c.Port, url, Math.Min(2000, options.Requests), options.Concurrency, ct).ConfigureAwait(false); // warm-up
            }
        }

        // Rounds interleave the contenders so a burst of load elsewhere hits all of them. Each figure is the median
        // of its rounds: the direct connection under BBR is bimodal on loopback (now and then twice its usual rate),
        // and a best-of would compare a proxy's usual run with direct's rare one.
        var rps = new Dictionary<string, List<AbReport>>();
        var connect = options.Senders.Select(s => new ProxyConnectRuns(s, new Dictionary<string, List<double>>())).ToList();
        var connecting = reference is null ? contenders : [.. contenders, new ProxyContenderInfo("splice-c", "splice-relay.c", reference.Port)];
        var bytes = (long)options.ConnectMegabytes << 20;
        for (var round = 0; round < rounds; round++)
        {
            foreach (var c in options.MeasureRps ? contenders : [])
            {
                Runs(rps, c.Name).Add(await AbAsync(ab, c.Port, url, options.Requests, options.Concurrency, ct).ConfigureAwait(false));
            }

            foreach (var runs in options.MeasureConnect ? connect : [])
            {
                foreach (var c in connecting)
                {
                    Runs((Dictionary<string, List<double>>)runs.MegabytesPerSecond, c.Name)
                        .Add(await ThroughputAsync(sink.Port, c.Port, bytes, runs.Sender, ct).ConfigureAwait(false));
                }
            }

            progress($"round {round + 1}/{rounds} done, load {BenchFigures.LoadAverage()}");
        }

        await stop.CancelAsync().ConfigureAwait(false);
        return new ProxyBenchmarkResult(reference is null ? contenders : connecting, missing, rps,
            options.MeasureConnect ? connect : [], SystemNetwork.DefaultCongestionControl ?? "?", loadBefore,
            BenchFigures.LoadAverage());
    }

    private static List<T> Runs<T>(Dictionary<string, List<T>> runs, string name) =>
        runs.TryGetValue(name, out var list) ? list : runs[name] = [];

    private static async Task<AbReport> AbAsync(string ab, int? proxyPort, string url, int n, int c, CancellationToken ct)
    {
        var args = new List<string> { "-k", "-q", "-n", n.ToString(CultureInfo.InvariantCulture), "-c", c.ToString(CultureInfo.InvariantCulture) };
        if (proxyPort is { } p)
        {
            args.AddRange(["-X", $"127.0.0.1:{p}"]);
        }

        args.Add(url);
        var r = await ChildProcess.RunAsync(ab, args, TimeSpan.FromMinutes(5), ct).ConfigureAwait(false);
        var output = r.Output + r.Errors;
        if (r.ExitCode != 0 || !AbReport.TryParse(output, out var report))
        {
            throw new IOException($"ab failed ({r.ExitCode}): {output.Trim().Split('\n').LastOrDefault()}");
        }

        return report;
    }

    /// <summary>
    /// Sends <paramref name="bytes"/> to the sink, directly or through a CONNECT tunnel; MB/s. The sender is a
    /// dedicated thread doing blocking sends, as iperf3 does, so the load generator costs the same on every path
    /// and never waits on the thread pool the proxy under test also uses.
    /// </summary>
    private static Task<double> ThroughputAsync(int sinkPort, int? proxyPort, long bytes, string? cc, CancellationToken ct)
    {
        var done = new TaskCompletionSource<double>(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            try
            {
                done.SetResult(Throughput(sinkPort, proxyPort, bytes, cc, ct));
            }
            catch (Exception e)
            {
                done.SetException(e);
            }
        }) { IsBackground = true, Name = "bench-sender" };
        thread.Start();
        return done.Task;
    }

    private static double Throughput(int sinkPort, int? proxyPort, long bytes, string? cc, CancellationToken ct)
    {
        var to = new IPEndPoint(IPAddress.Loopback, proxyPort ?? sinkPort);
        var connection = (cc is null // chosen before connecting: see ITcpCongestionControlNetwork
            ? SystemNetwork.Instance.ConnectTcpAsync(to, cancellationToken: ct)
            : SystemNetwork.Instance.ConnectTcpAsync(to, null, cc, ct)).AsTask().GetAwaiter().GetResult();
        using var socket = connection.Stream;
        using var cancel = ct.Register(socket.Dispose);
        if (proxyPort is not null)
        {
            socket.Write(Encoding.ASCII.GetBytes(
                $"CONNECT 127.0.0.1:{sinkPort} HTTP/1.1\r\nHost: 127.0.0.1:{sinkPort}\r\n\r\n"));
            var head = new StringBuilder();
            var one = new byte[1];
            while (!head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal))
            {
                if (socket.Read(one) == 0)
                {
                    throw new IOException("the proxy closed the CONNECT tunnel");
                }

                head.Append((char)one[0]);
            }

            if (!head.ToString().Contains(" 200 ", StringComparison.Ordinal))
            {
                throw new IOException("CONNECT refused: " + head.ToString().Split('\r')[0]);
            }
        }

        var buffer = new byte[128 * 1024];
        var started = Stopwatch.GetTimestamp();
        for (long sent = 0; sent < bytes; sent += buffer.Length)
        {
            socket.Write(buffer);
        }

        connection.ShutdownSend();
        while (socket.Read(buffer) > 0)
        {
        }

        var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        return bytes / (1024.0 * 1024.0) / seconds;
    }
}
