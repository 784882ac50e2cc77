using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using NatKit.Net;
using NatKit.Proxy;
using Spectre.Console;

namespace NatKit.Cli.Commands;

/// <summary>
/// `natkit bench proxy`: NatKit's proxy side by side with tinyproxy in one run, against the same loopback
/// origin: requests/s with keep-alive under `ab -k -X`, and CONNECT bulk throughput against a direct connection.
/// Everything it starts listens on 127.0.0.1 and is stopped at the end.
/// </summary>
internal sealed partial class ProxyBenchCommands : IVerbGroup
{
    public string? Parent => "bench";

    public Command Create()
    {
        var cmd = new Command("proxy", "Requests/s vs tinyproxy (ab -k -X) and CONNECT throughput vs direct, on loopback.");
        var requests = new Option<int>("--requests") { Description = "Requests per ab run.", DefaultValueFactory = _ => 20000 };
        var concurrency = new Option<int>("--concurrency") { Description = "ab concurrency.", DefaultValueFactory = _ => 32 };
        var megabytes = new Option<int>("--connect-mb")
        {
            Description = "Megabytes sent through each CONNECT throughput run.",
            DefaultValueFactory = _ => 512,
        };
        var bodyBytes = new Option<int>("--body-bytes") { Description = "Origin response body size.", DefaultValueFactory = _ => 1024 };
        var rounds = new Option<int>("--rounds") { Description = "Interleaved rounds; each figure is the best.", DefaultValueFactory = _ => 3 };
        var figures = new Option<string>("--figures") { Description = "Comma-separated: rps (ab -k), connect (CONNECT bulk).", DefaultValueFactory = _ => "rps,connect" };
        foreach (var o in new Option[] { requests, concurrency, megabytes, bodyBytes, rounds, figures })
        {
            cmd.Options.Add(o);
        }

        cmd.SetAction(async (parse, ct) =>
        {
            var wanted = parse.GetValue(figures)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (wanted.Length == 0 || wanted.Any(f => f is not ("rps" or "connect")))
            {
                throw new CliException("--figures takes rps, connect or both");
            }

            await RunAsync(parse.GetValue(requests), parse.GetValue(concurrency), parse.GetValue(megabytes),
                parse.GetValue(bodyBytes), Math.Max(1, parse.GetValue(rounds)), wanted.Contains("rps"),
                wanted.Contains("connect"), ct);
            return 0;
        });
        return cmd;
    }

    private static async Task RunAsync(int requests, int concurrency, int megabytes, int bodyBytes, int rounds,
        bool measureRps, bool measureConnect, CancellationToken ct)
    {
        if (Which("ab") is not { } ab)
        {
            throw new CliException("ab is not installed (apt-get install apache2-utils)");
        }

        var tinyproxyPath = Which("tinyproxy");
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        await using var origin = await BenchOrigin.StartAsync(bodyBytes, stop.Token);
        await using var sink = await Sink.StartAsync(stop.Token);
        var options = new ProxyOptions
        {
            HttpListen = new IPEndPoint(IPAddress.Loopback, 0),
            AllowLoopbackDestinations = true,
            ConnectPorts = new HashSet<int> { sink.Port },
        };
        await using var natkit = await ProxyServer.StartAsync(options, SystemNetwork.Instance, null, ct);
        await using var tinyproxy = tinyproxyPath is null ? null : await Tinyproxy.StartAsync(tinyproxyPath, sink.Port, ct);

        AnsiConsole.MarkupLine($"load average before: {Markup.Escape(LoadAverage())} (2 cores; other work on the machine skews absolute numbers)");
        var url = $"http://127.0.0.1:{origin.Port}/";
        await AbAsync(ab, natkit.HttpEndPoint.Port, url, Math.Min(2000, requests), concurrency, ct); // warm-up
        if (tinyproxy is not null && measureRps)
        {
            await AbAsync(ab, tinyproxy.Port, url, Math.Min(2000, requests), concurrency, ct);
        }

        // Rounds interleave the contenders so a burst of load elsewhere hits all of them; each keeps its best.
        AbResult? direct = null, nk = null, tp = null;
        double directMbps = 0, natkitMbps = 0;
        double? tinyMbps = null;
        var bytes = (long)megabytes << 20;
        for (var round = 0; round < rounds; round++)
        {
            if (measureRps)
            {
                direct = Best(direct, await AbAsync(ab, null, url, requests, concurrency, ct));
                nk = Best(nk, await AbAsync(ab, natkit.HttpEndPoint.Port, url, requests, concurrency, ct));
                if (tinyproxy is not null)
                {
                    tp = Best(tp, await AbAsync(ab, tinyproxy.Port, url, requests, concurrency, ct));
                }
            }

            if (!measureConnect)
            {
                AnsiConsole.MarkupLine($"round {round + 1}/{rounds} done, load {Markup.Escape(LoadAverage())}");
                continue;
            }

            directMbps = Math.Max(directMbps, await ThroughputAsync(sink.Port, null, bytes, ct));
            natkitMbps = Math.Max(natkitMbps, await ThroughputAsync(sink.Port, natkit.HttpEndPoint.Port, bytes, ct));
            if (tinyproxy is not null)
            {
                tinyMbps = Math.Max(tinyMbps ?? 0, await ThroughputAsync(sink.Port, tinyproxy.Port, bytes, ct));
            }

            AnsiConsole.MarkupLine($"round {round + 1}/{rounds} done, load {Markup.Escape(LoadAverage())}");
        }

        var table = new Table().Border(TableBorder.Rounded).AddColumns("measure (best of " + rounds + ")", "direct", "natkit", "tinyproxy", "ratio");
        if (direct is not null && nk is not null)
        {
            table.AddRow("requests/s (ab -k, c=" + concurrency + ")", F(direct.RequestsPerSecond), F(nk.RequestsPerSecond),
                tp is null ? "-" : F(tp.RequestsPerSecond),
                tp is null ? "-" : F(nk.RequestsPerSecond / tp.RequestsPerSecond) + "x tinyproxy (goal >= 2)");
            table.AddRow("failed / non-2xx", $"{direct.Failed}/{direct.Non2xx}", $"{nk.Failed}/{nk.Non2xx}",
                tp is null ? "-" : $"{tp.Failed}/{tp.Non2xx}", "");
        }

        if (measureConnect)
        {
                table.AddRow($"CONNECT MB/s ({megabytes} MB)", F(directMbps), F(natkitMbps), tinyMbps is null ? "-" : F(tinyMbps.Value),
                    F(natkitMbps / directMbps) + "x direct (goal >= 0.8)");
        }

        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine($"load average after: {Markup.Escape(LoadAverage())}");
        await stop.CancelAsync();
    }

    private static string F(double v) => v.ToString("0.00", CultureInfo.InvariantCulture);

    private sealed record AbResult(double RequestsPerSecond, int Failed, int Non2xx);

    private static AbResult Best(AbResult? a, AbResult b) => a is null || b.RequestsPerSecond > a.RequestsPerSecond
        ? b with { Failed = b.Failed + (a?.Failed ?? 0), Non2xx = b.Non2xx + (a?.Non2xx ?? 0) }
        : a with { Failed = a.Failed + b.Failed, Non2xx = a.Non2xx + b.Non2xx };

    private static async Task<AbResult> AbAsync(string ab, int? proxyPort, string url, int n, int c, CancellationToken ct)
    {
        var args = new List<string> { "-k", "-q", "-n", n.ToString(CultureInfo.InvariantCulture), "-c", c.ToString(CultureInfo.InvariantCulture) };
        if (proxyPort is { } p)
        {
            args.AddRange(["-X", $"127.0.0.1:{p}"]);
        }

        args.Add(url);
        var (code, output) = await RunAsync(ab, args, TimeSpan.FromMinutes(5), ct);
        var rps = RpsPattern().Match(output);
        if (code != 0 || !rps.Success)
        {
            throw new CliException($"ab failed ({code}): {output.Trim().Split('\n').LastOrDefault()}");
        }

        var failed = FailedPattern().Match(output);
        var non2xx = Non2xxPattern().Match(output);
        return new AbResult(double.Parse(rps.Groups[1].Value, CultureInfo.InvariantCulture),
            failed.Success ? int.Parse(failed.Groups[1].Value, CultureInfo.InvariantCulture) : 0,
            non2xx.Success ? int.Parse(non2xx.Groups[1].Value, CultureInfo.InvariantCulture) : 0);
    }

    [GeneratedRegex(@"Requests per second:\s+([0-9.]+)")]
    private static partial Regex RpsPattern();

    [GeneratedRegex(@"Failed requests:\s+([0-9]+)")]
    private static partial Regex FailedPattern();

    [GeneratedRegex(@"Non-2xx responses:\s+([0-9]+)")]
    private static partial Regex Non2xxPattern();

    /// <summary>
    /// Sends <paramref name="bytes"/> to the sink, directly or through a CONNECT tunnel; MB/s. The sender is a
    /// dedicated thread doing blocking sends, as iperf3 does, so the load generator costs the same on every path
    /// and never waits on the thread pool the proxy under test also uses.
    /// </summary>
    private static Task<double> ThroughputAsync(int sinkPort, int? proxyPort, long bytes, CancellationToken ct)
    {
        var done = new TaskCompletionSource<double>(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            try
            {
                done.SetResult(Throughput(sinkPort, proxyPort, bytes, ct));
            }
            catch (Exception e)
            {
                done.SetException(e);
            }
        }) { IsBackground = true, Name = "bench-sender" };
        thread.Start();
        return done.Task;
    }

    private static double Throughput(int sinkPort, int? proxyPort, long bytes, CancellationToken ct)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        using var cancel = ct.Register(socket.Dispose);
        socket.Connect(new IPEndPoint(IPAddress.Loopback, proxyPort ?? sinkPort));
        if (proxyPort is not null)
        {
            socket.Send(Encoding.ASCII.GetBytes(
                $"CONNECT 127.0.0.1:{sinkPort} HTTP/1.1\r\nHost: 127.0.0.1:{sinkPort}\r\n\r\n"));
            var head = new StringBuilder();
            var one = new byte[1];
            while (!head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal))
            {
                if (socket.Receive(one) == 0)
                {
                    throw new CliException("the proxy closed the CONNECT tunnel");
                }

                head.Append((char)one[0]);
            }

            if (!head.ToString().Contains(" 200 ", StringComparison.Ordinal))
            {
                throw new CliException("CONNECT refused: " + head.ToString().Split('\r')[0]);
            }
        }

        var buffer = new byte[128 * 1024];
        var started = Stopwatch.GetTimestamp();
        for (long sent = 0; sent < bytes; sent += buffer.Length)
        {
            socket.Send(buffer);
        }

        socket.Shutdown(SocketShutdown.Send);
        while (socket.Receive(buffer) > 0)
        {
        }

        var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        return bytes / (1024.0 * 1024.0) / seconds;
    }

    private static async Task<(int Code, string Output)> RunAsync(string file, IEnumerable<string> args, TimeSpan timeout,
        CancellationToken ct)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }

        using var p = Process.Start(info)!;
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        var stdout = p.StandardOutput.ReadToEndAsync(cts.Token);
        var stderr = p.StandardError.ReadToEndAsync(cts.Token);
        try
        {
            await p.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw;
        }

        return (p.ExitCode, await stdout + await stderr);
    }

    private static string? Which(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':').Append("/usr/sbin").Append("/usr/bin")
        .Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);

    private static string LoadAverage() =>
        File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "?";

    /// <summary>A minimal keep-alive HTTP/1.1 origin answering every request head with the same response.</summary>
    private sealed class BenchOrigin : IAsyncDisposable
    {
        private readonly IStreamListener _listener;
        private readonly byte[] _keepAlive;
        private readonly byte[] _close;
        private readonly Task _loop;
        private readonly CancellationToken _ct;

        private BenchOrigin(IStreamListener listener, int bodyBytes, CancellationToken ct)
        {
            _listener = listener;
            _ct = ct;
            var body = new string('x', bodyBytes);
            _keepAlive = Encoding.ASCII.GetBytes(
                $"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {bodyBytes}\r\nConnection: keep-alive\r\n\r\n{body}");
            _close = Encoding.ASCII.GetBytes(
                $"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {bodyBytes}\r\nConnection: close\r\n\r\n{body}");
            _loop = Task.Run(AcceptAsync, CancellationToken.None);
        }

        public int Port => _listener.LocalEndPoint.Port;

        public static async Task<BenchOrigin> StartAsync(int bodyBytes, CancellationToken ct) =>
            new(await SystemNetwork.Instance.ListenTcpAsync(new IPEndPoint(IPAddress.Loopback, 0), 1024, ct), bodyBytes, ct);

        private async Task AcceptAsync()
        {
            while (true)
            {
                IStreamConnection c;
                try
                {
                    c = await _listener.AcceptAsync(_ct);
                }
                catch (Exception e) when (e is ObjectDisposedException or OperationCanceledException)
                {
                    return;
                }
                catch (IOException)
                {
                    continue;
                }

                _ = ServeAsync(c);
            }
        }

        private async Task ServeAsync(IStreamConnection c)
        {
            await using var _ = c;
            var buffer = new byte[16384];
            var have = 0;
            try
            {
                while (true)
                {
                    var n = await c.Stream.ReadAsync(buffer.AsMemory(have), _ct);
                    if (n == 0)
                    {
                        return;
                    }

                    have += n;
                    int end;
                    while ((end = buffer.AsSpan(0, have).IndexOf("\r\n\r\n"u8)) >= 0)
                    {
                        var head = buffer.AsSpan(0, end);
                        var close = head.IndexOf("HTTP/1.0"u8) >= 0
                            ? !ContainsIgnoreCase(head, "keep-alive")
                            : ContainsIgnoreCase(head, "connection: close");
                        await c.Stream.WriteAsync(close ? _close : _keepAlive, _ct);
                        if (close)
                        {
                            return;
                        }

                        buffer.AsSpan(end + 4, have - end - 4).CopyTo(buffer);
                        have -= end + 4;
                    }

                    if (have == buffer.Length)
                    {
                        return;
                    }
                }
            }
            catch (Exception e) when (e is IOException or OperationCanceledException)
            {
            }
        }

        private static bool ContainsIgnoreCase(ReadOnlySpan<byte> head, string needle) =>
            Encoding.ASCII.GetString(head).Contains(needle, StringComparison.OrdinalIgnoreCase);

        public async ValueTask DisposeAsync()
        {
            await _listener.DisposeAsync();
            await _loop;
        }
    }

    /// <summary>Reads and discards until the sender half-closes, then closes: the far end of a throughput run. Each
    /// connection gets a dedicated thread doing blocking receives (see <see cref="ThroughputAsync"/>).</summary>
    private sealed class Sink : IAsyncDisposable
    {
        private readonly Socket _listener;
        private readonly Thread _acceptor;

        private Sink(Socket listener)
        {
            _listener = listener;
            _acceptor = new Thread(Accept) { IsBackground = true, Name = "bench-sink" };
            _acceptor.Start();
        }

        public int Port => ((IPEndPoint)_listener.LocalEndPoint!).Port;

        public static Task<Sink> StartAsync(CancellationToken ct)
        {
            ct.ThrowIfCancellationRequested();
            var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            listener.Listen(16);
            return Task.FromResult(new Sink(listener));
        }

        private void Accept()
        {
            while (true)
            {
                Socket c;
                try
                {
                    c = _listener.Accept();
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException)
                {
                    return;
                }

                new Thread(() =>
                {
                    using (c)
                    {
                        var buffer = new byte[256 * 1024];
                        try
                        {
                            while (c.Receive(buffer) > 0)
                            {
                            }
                        }
                        catch (SocketException)
                        {
                        }
                    }
                }) { IsBackground = true, Name = "bench-sink-conn" }.Start();
            }
        }

        public ValueTask DisposeAsync()
        {
            _listener.Dispose();
            _acceptor.Join();
            return ValueTask.CompletedTask;
        }
    }

    /// <summary>tinyproxy in the foreground with a temporary configuration on a free loopback port.</summary>
    private sealed class Tinyproxy : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly string _dir;

        private Tinyproxy(Process process, string dir, int port)
        {
            _process = process;
            _dir = dir;
            Port = port;
        }

        public int Port { get; }

        public static async Task<Tinyproxy> StartAsync(string path, int connectPort, CancellationToken ct)
        {
            int port;
            await using (var probe = await SystemNetwork.Instance.ListenTcpAsync(new IPEndPoint(IPAddress.Loopback, 0), 1, ct))
            {
                port = probe.LocalEndPoint.Port;
            }

            var dir = Directory.CreateTempSubdirectory("natkit-tinyproxy-").FullName;
            var conf = Path.Combine(dir, "tinyproxy.conf");
            var user = Environment.UserName == "root" ? "User nobody\nGroup nogroup\n" : "";
            await File.WriteAllTextAsync(conf,
                $"{user}Port {port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 1000\nAllow 127.0.0.1\nLogLevel Critical\n" +
                $"ConnectPort {connectPort}\nDisableViaHeader No\n", ct);
            var info = new ProcessStartInfo(path) { RedirectStandardOutput = true, RedirectStandardError = true };
            info.ArgumentList.Add("-d");
            info.ArgumentList.Add("-c");
            info.ArgumentList.Add(conf);
            var process = Process.Start(info)!;
            var result = new Tinyproxy(process, dir, port);
            for (var i = 0; i < 100; i++)
            {
                try
                {
                    await using var c = await SystemNetwork.Instance.ConnectTcpAsync(new IPEndPoint(IPAddress.Loopback, port), null, ct);
                    return result;
                }
                catch (NetworkException)
                {
                    if (process.HasExited)
                    {
                        break;
                    }

                    await Task.Delay(50, ct); // waiting for an external program to open its port
                }
            }

            await result.DisposeAsync();
            throw new CliException("tinyproxy did not start: " + await process.StandardError.ReadToEndAsync(ct));
        }

        public async ValueTask DisposeAsync()
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }

            _process.Dispose();
            Directory.Delete(_dir, recursive: true);
        }
    }
}
