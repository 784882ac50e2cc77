using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using NatKit.Linux;
using NatKit.Net;
using NatKit.Scenarios.Bench;
using Spectre.Console;

namespace NatKit.Cli.Commands;

/// <summary>
/// `natkit bench proxy`: NatKit's proxy side by side with tinyproxy and squid in one run, against the same loopback
/// origin: requests/s with keep-alive under `ab -k -X`, and CONNECT bulk throughput against a direct connection.
/// Everything it starts listens on 127.0.0.1 and is stopped at the end.
/// </summary>
internal sealed partial class ProxyBenchCommands : IVerbGroup
{
    public string? Parent => "bench";

    public Command Create()
    {
        var cmd = new Command("proxy", "Requests/s (ab -k -X) and CONNECT throughput: natkit vs tinyproxy and squid (when installed) vs direct, on loopback.");
        var requests = new Option<int>("--requests") { Description = "Requests per ab run.", DefaultValueFactory = _ => 20000 };
        var concurrency = new Option<int>("--concurrency") { Description = "ab concurrency.", DefaultValueFactory = _ => 32 };
        var megabytes = new Option<int>("--connect-mb")
        {
            Description = "Megabytes sent through each CONNECT throughput run.",
            DefaultValueFactory = _ => 2048,
        };
        var bodyBytes = new Option<int>("--body-bytes") { Description = "Origin response body size.", DefaultValueFactory = _ => 1024 };
        var rounds = new Option<int>("--rounds") { Description = "Interleaved rounds; each figure is the median (CONNECT also shows the range).", DefaultValueFactory = _ => 5 };
        var figures = new Option<string>("--figures") { Description = "Comma-separated: rps (ab -k), connect (CONNECT bulk).", DefaultValueFactory = _ => "rps,connect" };
        var spliceReference = new Option<bool>("--splice-reference")
        {
            Description = "Also run CONNECT through a minimal C splice(2) relay (compiled here with cc): the ceiling for a userspace tunnel on this machine.",
        };
        var proxyCc = new Option<string>("--congestion-control")
        {
            Description = "TCP congestion control natkit (and the splice reference) use on both legs; 'system' keeps the "
                + "system's default. tinyproxy and squid have no such setting: they use the system's.",
            DefaultValueFactory = _ => "cubic",
        };
        var endpointCc = new Option<string>("--endpoint-cc")
        {
            Description = "TCP congestion control of the CONNECT load's sender, so also of the direct connection: "
                + "'system' (what clients here get), an algorithm's name, or 'both' (the default): one CONNECT row "
                + "with the system's and one with natkit's, like with like.",
            DefaultValueFactory = _ => "both",
        };
        foreach (var o in new Option[] { requests, concurrency, megabytes, bodyBytes, rounds, figures, spliceReference, proxyCc, endpointCc })
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

            var proxyChoice = CongestionChoice(parse, proxyCc, "--congestion-control");
            // The sender's algorithm is what matters: congestion control governs sending, and the sink only acks.
            List<string?> senders = parse.GetValue(endpointCc) == "both"
                ? proxyChoice is null || proxyChoice == SystemNetwork.DefaultCongestionControl ? [null] : [null, proxyChoice]
                : [CongestionChoice(parse, endpointCc, "--endpoint-cc")];
            await RunAsync(parse.GetValue(requests), parse.GetValue(concurrency), parse.GetValue(megabytes),
                parse.GetValue(bodyBytes), Math.Max(1, parse.GetValue(rounds)), wanted.Contains("rps"),
                wanted.Contains("connect"), parse.GetValue(spliceReference), proxyChoice, senders, ct);
            return 0;
        });
        return cmd;
    }

    /// <summary>A congestion control the run asks for: null for the system's default. A default the kernel will not
    /// give this user falls back to the system's with a note; one the user typed is an error.</summary>
    private static string? CongestionChoice(ParseResult parse, Option<string> option, string name)
    {
        var value = parse.GetValue(option)!;
        if (value == "system")
        {
            return null;
        }

        try
        {
            SystemNetwork.CheckCongestionControl(value);
            return value;
        }
        catch (NetworkException e) when (parse.GetResult(option) is null or { Implicit: true })
        {
            AnsiConsole.MarkupLine($"[yellow]{name}: {Markup.Escape(e.Message)}; using the system's default[/]");
            return null;
        }
        catch (NetworkException e)
        {
            throw new CliException($"{name}: {e.Message}");
        }
    }

    private static async Task RunAsync(int requests, int concurrency, int megabytes, int bodyBytes, int rounds,
        bool measureRps, bool measureConnect, bool spliceReference, string? proxyCc, List<string?> senders,
        CancellationToken ct)
    {
        if (SystemCommand.Which("ab") is not { } ab)
        {
            throw new CliException("ab is not installed (apt-get install apache2-utils)");
        }

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        await using var origin = await BenchOrigin.StartAsync(bodyBytes, stop.Token);
        await using var sink = await Sink.StartAsync(stop.Token);
        await using var natkit = await PeerProxy.StartNatkitAsync(sink.Port, proxyCc, ct);
        await using var tinyproxy = await PeerProxy.StartTinyproxyAsync(sink.Port, ct);
        await using var squid = await PeerProxy.StartSquidAsync(sink.Port, ct);
        await using var reference = spliceReference && measureConnect ? await PeerProxy.StartSpliceReferenceAsync(sink.Port, proxyCc, ct) : null;
        List<(string Name, int? Port)> contenders = [("direct", null), ("natkit", natkit.Port)];
        AnsiConsole.MarkupLine($"natkit {Markup.Escape(natkit.Version)} (its own process) on 127.0.0.1:{natkit.Port}");
        foreach (var peer in new[] { tinyproxy, squid })
        {
            if (peer is not null)
            {
                contenders.Add((peer.Name, peer.Port));
                AnsiConsole.MarkupLine($"{peer.Name} {Markup.Escape(peer.Version)} on 127.0.0.1:{peer.Port}");
            }
        }

        foreach (var (name, package) in new[] { ("tinyproxy", "tinyproxy"), ("squid", "squid") })
        {
            if (!contenders.Exists(c => c.Name == name))
            {
                AnsiConsole.MarkupLine($"[yellow]{name} is not installed (apt-get install {package}): its column stays empty[/]");
            }
        }

        var system = SystemNetwork.DefaultCongestionControl ?? "?";
        AnsiConsole.MarkupLine(Markup.Escape($"TCP congestion control: natkit{(reference is null ? "" : " and splice-c")} {proxyCc ?? system}; "
            + $"tinyproxy and squid {system} (the system's: they have no such setting); CONNECT sender (so direct) "
            + string.Join(", then ", senders.Select(c => c ?? $"{system} (the system's)"))));
        AnsiConsole.MarkupLine($"load average before: {Markup.Escape(BenchFigures.LoadAverage())} (2 cores; other work on the machine skews absolute numbers)");
        var url = $"http://127.0.0.1:{origin.Port}/";
        if (measureRps)
        {
            foreach (var (_, port) in contenders.Skip(1))
            {
                await AbAsync(ab, port, url, Math.Min(2000, requests), concurrency, ct); // warm-up
            }
        }

        // Rounds interleave the contenders so a burst of load elsewhere hits all of them. Each figure is the median
        // of its rounds: the direct connection under BBR is bimodal on loopback (now and then twice its usual rate),
        // and a best-of would compare a proxy's usual run with direct's rare one.
        var rps = new Dictionary<string, List<AbResult>>();
        var mbps = senders.Select(_ => new Dictionary<string, List<double>>()).ToList();
        var bytes = (long)megabytes << 20;
        for (var round = 0; round < rounds; round++)
        {
            foreach (var (name, port) in measureRps ? contenders : [])
            {
                Runs(rps, name).Add(await AbAsync(ab, port, url, requests, concurrency, ct));
            }

            for (var i = 0; i < senders.Count; i++)
            {
                foreach (var (name, port) in !measureConnect ? [] : reference is null ? contenders : [.. contenders, ("splice-c", reference.Port)])
                {
                    Runs(mbps[i], name).Add(await ThroughputAsync(sink.Port, port, bytes, senders[i], ct));
                }
            }

            AnsiConsole.MarkupLine($"round {round + 1}/{rounds} done, load {Markup.Escape(BenchFigures.LoadAverage())}");
        }

        string[] columns = reference is null ? ["direct", "natkit", "tinyproxy", "squid"] : ["direct", "natkit", "tinyproxy", "squid", "splice-c"];
        var table = new Table().Border(TableBorder.Rounded).AddColumn($"measure (median of {rounds})")
            .AddColumns(columns).AddColumn("ratio (medians)");
        string Cell<T>(Dictionary<string, T> d, string name, Func<T, string> f) => d.TryGetValue(name, out var v) ? f(v) : "-";
        string Ratio(Dictionary<string, double> d, string name, string goal)
        {
            return d.TryGetValue("natkit", out var n) && d.TryGetValue(name, out var v) && v > 0
                ? $"{F(n / v)}x {name}{goal}"
                : "";
        }

        if (measureRps)
        {
            var perSecond = rps.ToDictionary(kv => kv.Key, kv => BenchFigures.Median(kv.Value.Select(r => r.RequestsPerSecond)));
            var ratios = string.Join(", ", new[] { Ratio(perSecond, "tinyproxy", " (goal >= 2)"), Ratio(perSecond, "squid", "") }
                .Where(r => r.Length > 0));
            string[] row = [$"requests/s (ab -k, c={concurrency})", .. columns.Select(n => Cell(perSecond, n, F)), ratios];
            table.AddRow(row);
            string[] failures = ["failed / non-2xx (all rounds)", .. columns.Select(n => Cell(rps, n, r => $"{r.Sum(x => x.Failed)}/{r.Sum(x => x.Non2xx)}")), ""];
            table.AddRow(failures);
        }

        for (var i = 0; measureConnect && i < senders.Count; i++)
        {
            var medians = mbps[i].ToDictionary(kv => kv.Key, kv => BenchFigures.Median(kv.Value));
            var ratios = string.Join(", ", new[]
            {
                Ratio(medians, "direct", " (goal >= 0.8)"), Ratio(medians, "tinyproxy", ""), Ratio(medians, "squid", ""),
                Ratio(medians, "splice-c", ""),
            }.Where(r => r.Length > 0));
            string[] row = [$"CONNECT MB/s ({megabytes} MB), sender {senders[i] ?? system}", .. columns.Select(n => Cell(medians, n, F)), ratios];
            table.AddRow(row);
            string[] range = ["  range", .. columns.Select(n => Cell(mbps[i], n, r => $"{r.Min():0}-{r.Max():0}")), ""];
            table.AddRow(range);
        }

        if (Console.IsOutputRedirected)
        {
            AnsiConsole.Profile.Width = Math.Max(AnsiConsole.Profile.Width, 160); // a log keeps the table readable
        }

        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine($"load average after: {Markup.Escape(BenchFigures.LoadAverage())}");
        await stop.CancelAsync();
    }

    private static string F(double v) => v.ToString("0.00", CultureInfo.InvariantCulture);

    private sealed record AbResult(double RequestsPerSecond, int Failed, int Non2xx);

    private static List<T> Runs<T>(Dictionary<string, List<T>> runs, string name) =>
        runs.TryGetValue(name, out var list) ? list : runs[name] = [];

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
            socket.Write(buffer);
        }

        connection.ShutdownSend();
        while (socket.Read(buffer) > 0)
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

    /// <summary>
    /// A contender proxy in the foreground of its own process (tinyproxy, squid, natkit itself, or the C splice
    /// reference), with its temporary configuration, log, pid files or binary in a temporary directory, listening on
    /// a free port of 127.0.0.1 only (checked in /proc once it runs). Disposal kills its process tree and removes the directory; a failed
    /// start does the same.
    /// </summary>
    private sealed class PeerProxy : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly string _dir;
        private readonly PosixSignalRegistration[] _signals;

        private PeerProxy(string name, Process process, string dir, int port, string version)
        {
            Name = name;
            _process = process;
            _dir = dir;
            Port = port;
            Version = version;

            // Ctrl-C or SIGTERM can end the process before the bench's own cleanup has run (the command line
            // gives an action a short grace, then exits): stop the peer as the signal arrives, and at any exit
            _signals = [PosixSignalRegistration.Create(PosixSignal.SIGINT, _ => Stop()),
                PosixSignalRegistration.Create(PosixSignal.SIGTERM, _ => Stop())];
            AppDomain.CurrentDomain.ProcessExit += OnProcessExit;
        }

        public string Name { get; }

        public int Port { get; }

        public string Version { get; }

        /// <summary>tinyproxy, or null when it is not installed.</summary>
        public static Task<PeerProxy?> StartTinyproxyAsync(int connectPort, CancellationToken ct) =>
            StartInstalledAsync("tinyproxy", ct, (dir, port) =>
            {
                var user = Environment.UserName == "root" ? "User nobody\nGroup nogroup\n" : "";
                return ($"{user}Port {port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 1000\nAllow 127.0.0.1\n" +
                        $"LogLevel Critical\nConnectPort {connectPort}\nDisableViaHeader No\n", ["-d", "-c"]);
            });

        /// <summary>squid (no disk cache, nothing cached, no ICP/HTCP/SNMP, DNS only to 127.0.0.1), or null when
        /// it is not installed.</summary>
        public static Task<PeerProxy?> StartSquidAsync(int connectPort, CancellationToken ct) =>
            StartInstalledAsync("squid", ct, (dir, port) => (string.Join('\n',
                $"http_port 127.0.0.1:{port}",
                $"pid_filename {dir}/squid.pid",
                $"cache_log {dir}/cache.log",
                $"coredump_dir {dir}",
                "access_log none",
                "cache_store_log none",
                "cache deny all",
                "cache_mem 0 MB",
                "acl loopback src 127.0.0.1/32",
                $"acl sink port {connectPort}",
                "acl CONNECT method CONNECT",
                "http_access deny CONNECT !sink",
                "http_access allow loopback",
                "http_access deny all",
                "icp_port 0",
                "htcp_port 0",
                "snmp_port 0",
                "udp_incoming_address 127.0.0.1",
                "udp_outgoing_address 127.0.0.1",
                "dns_nameservers 127.0.0.1",
                "pinger_enable off",
                "netdb_filename none",
                "shutdown_lifetime 0 seconds",
                "visible_hostname natkit-bench",
                "client_persistent_connections on",
                "server_persistent_connections on",
                "max_filedescriptors 4096") + "\n", ["-N", "-f"]));

        /// <summary>natkit's own proxy as its own process (`natkit proxy serve`), started and checked like the
        /// peers, so no contender shares a process with the load generator.</summary>
        public static async Task<PeerProxy> StartNatkitAsync(int connectPort, string? congestionControl, CancellationToken ct)
        {
            // the apphost, or `dotnet natkit.dll` when started that way
            var host = Environment.ProcessPath ?? throw new CliException("cannot tell where natkit runs from");
            string[] prefix = Path.GetFileNameWithoutExtension(host) == "dotnet" ? [typeof(ProxyBenchCommands).Assembly.Location] : [];
            var version = typeof(ProxyBenchCommands).Assembly.GetName().Version?.ToString() ?? "";
            return await StartAsync("natkit", version, ct, (_, port) => Task.FromResult(new Launch(host,
            [
                .. prefix, "proxy", "serve", "--listen", $"127.0.0.1:{port}", "--allow", "127.0.0.1/32",
                "--connect-ports", connectPort.ToString(CultureInfo.InvariantCulture), "--allow-loopback-destinations",
                "--quiet", .. congestionControl is null ? Array.Empty<string>() : ["--congestion-control", congestionControl],
            ])));
        }

        /// <summary>The reference for CONNECT throughput: Resources/splice-relay.c (two blocking splice(2) threads
        /// per tunnel, no HTTP beyond answering the CONNECT, relaying to <paramref name="sinkPort"/> whatever the
        /// CONNECT names), compiled with the machine's C compiler into the contender's directory.</summary>
        public static Task<PeerProxy> StartSpliceReferenceAsync(int sinkPort, string? congestionControl, CancellationToken ct)
        {
            var compiler = SystemCommand.Which("cc") ?? SystemCommand.Which("gcc") ?? throw new CliException("--splice-reference needs a C compiler (apt-get install gcc)");
            return StartAsync("splice-c", "splice-relay.c", ct, async (dir, port) =>
            {
                var source = Path.Combine(dir, "splice-relay.c");
                await using (var resource = typeof(ProxyBenchCommands).Assembly.GetManifestResourceStream("splice-relay.c")!)
                await using (var file = File.Create(source))
                {
                    await resource.CopyToAsync(file, ct);
                }

                var binary = Path.Combine(dir, "splice-relay");
                var (code, output) = await ProxyBenchCommands.RunAsync(compiler, ["-O2", "-pthread", "-o", binary, source],
                    TimeSpan.FromMinutes(1), ct);
                if (code != 0)
                {
                    throw new CliException($"the splice reference did not compile: {output.Trim()}");
                }

                // a probe connection is accepted and closed without a CONNECT head: that ends only its own tunnel
                return new Launch(binary, [port.ToString(CultureInfo.InvariantCulture),
                    sinkPort.ToString(CultureInfo.InvariantCulture), .. congestionControl is null ? Array.Empty<string>() : [congestionControl]]);
            });
        }

        /// <summary>What to run in a contender's directory: a program, its arguments, and the configuration file
        /// (written into the directory and passed last) when it takes one.</summary>
        private sealed record Launch(string Path, string[] Arguments, string? Config = null);

        private static async Task<PeerProxy?> StartInstalledAsync(string name, CancellationToken ct,
            Func<string, int, (string Config, string[] Arguments)> configure) =>
            SystemCommand.Which(name) is { } path
                ? await StartAsync(name, await VersionAsync(path, ct), ct, (dir, port) =>
                {
                    var (config, arguments) = configure(dir, port);
                    return Task.FromResult(new Launch(path, arguments, config));
                })
                : null;

        /// <summary>Runs what <paramref name="launch"/> gives for the contender's directory and a free loopback port,
        /// and waits for it to listen there.</summary>
        private static async Task<PeerProxy> StartAsync(string name, string version, CancellationToken ct,
            Func<string, int, Task<Launch>> launch)
        {
            int port;
            await using (var probe = await SystemNetwork.Instance.ListenTcpAsync(new IPEndPoint(IPAddress.Loopback, 0), 1, ct))
            {
                port = probe.LocalEndPoint.Port;
            }

            var dir = Directory.CreateTempSubdirectory($"natkit-{name}-").FullName;
            PeerProxy? peer = null;
            var ready = false;
            try
            {
                // a root-started proxy drops to its own user (nobody, proxy), which writes its logs here
                if (!OperatingSystem.IsWindows())
                {
                    File.SetUnixFileMode(dir, (UnixFileMode)0x1FF);
                }

                var (path, arguments, config) = await launch(dir, port);
                var info = new ProcessStartInfo(path) { RedirectStandardOutput = true, RedirectStandardError = true };
                foreach (var a in arguments)
                {
                    info.ArgumentList.Add(a);
                }

                if (config is not null)
                {
                    var conf = Path.Combine(dir, name + ".conf");
                    await File.WriteAllTextAsync(conf, config, ct);
                    info.ArgumentList.Add(conf);
                }

                peer = new PeerProxy(name, Process.Start(info)!, dir, port, version);
                var process = peer._process;
                _ = process.StandardOutput.ReadToEndAsync(ct); // drained so it never blocks on a full pipe
                var errors = process.StandardError.ReadToEndAsync(ct);
                for (var i = 0; i < 200; i++)
                {
                    try
                    {
                        await using var c = await SystemNetwork.Instance.ConnectTcpAsync(new IPEndPoint(IPAddress.Loopback, port), null, ct);
                        peer.EnsureLoopbackOnly();
                        ready = true;
                        return peer;
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

                var log = Path.Combine(dir, "cache.log");
                throw new CliException($"{name} did not start: " + (process.HasExited ? await errors : "no answer on its port") +
                    (File.Exists(log) ? " " + string.Join(" | ", File.ReadLines(log).TakeLast(3)) : ""));
            }
            finally
            {
                if (!ready)
                {
                    if (peer is not null)
                    {
                        await peer.DisposeAsync(); // kills the process tree and removes the directory
                    }
                    else
                    {
                        Directory.Delete(dir, recursive: true);
                    }
                }
            }
        }

        private static async Task<string> VersionAsync(string path, CancellationToken ct)
        {
            var (_, output) = await ProxyBenchCommands.RunAsync(path, ["-v"], TimeSpan.FromSeconds(10), ct);
            return output.Split('\n', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault()?.Trim() ?? "";
        }

        /// <summary>Every socket the peer holds is bound to loopback (its TCP listener, its DNS socket); otherwise
        /// the run stops. Read from /proc/PID/fd and /proc/net/{tcp,tcp6,udp,udp6}.</summary>
        private void EnsureLoopbackOnly()
        {
            var fds = $"/proc/{_process.Id}/fd";
            if (!Directory.Exists(fds))
            {
                return;
            }

            var inodes = new HashSet<string>();
            foreach (var fd in Directory.EnumerateFiles(fds))
            {
                if (new FileInfo(fd).LinkTarget is { } target && target.StartsWith("socket:[", StringComparison.Ordinal))
                {
                    inodes.Add(target[8..^1]);
                }
            }

            foreach (var table in new[] { "tcp", "tcp6", "udp", "udp6" })
            {
                foreach (var line in File.ReadLines("/proc/net/" + table).Skip(1))
                {
                    var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    if (f.Length > 9 && inodes.Contains(f[9]) && !IsLoopback(f[1][..f[1].IndexOf(':', StringComparison.Ordinal)]))
                    {
                        throw new CliException($"{Name} has a {table} socket bound to {f[1]}, not loopback: stopped");
                    }
                }
            }
        }

        /// <summary>A /proc/net address (hex, 32-bit words in host order) on loopback (127/8, ::1, ::ffff:127/104).</summary>
        private static bool IsLoopback(string hex)
        {
            var bytes = Convert.FromHexString(hex);
            for (var i = 0; i < bytes.Length; i += 4)
            {
                Array.Reverse(bytes, i, 4); // each word is printed in host (little-endian) order
            }

            var address = new IPAddress(bytes);
            return IPAddress.IsLoopback(address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address);
        }

        public async ValueTask DisposeAsync()
        {
            AppDomain.CurrentDomain.ProcessExit -= OnProcessExit;
            foreach (var r in _signals)
            {
                r.Dispose();
            }

            try
            {
                if (!_process.HasExited)
                {
                    _process.Kill(entireProcessTree: true);
                    await _process.WaitForExitAsync();
                }
            }
            finally
            {
                _process.Dispose();
                if (Directory.Exists(_dir))
                {
                    Directory.Delete(_dir, recursive: true);
                }
            }
        }

        private void OnProcessExit(object? sender, EventArgs e) => Stop();

        /// <summary>Kills the process tree and removes the directory, synchronously (from a signal or exit).</summary>
        private void Stop()
        {
            try
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit(2000);
            }
            catch (Exception ex) when (ex is InvalidOperationException or System.ComponentModel.Win32Exception)
            {
                // already gone or disposed
            }

            try
            {
                Directory.Delete(_dir, recursive: true);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
            }
        }
    }
}
