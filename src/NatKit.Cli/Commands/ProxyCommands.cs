using System.CommandLine;
using System.Globalization;
using System.Net;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using NatKit.Net;
using NatKit.Proxy;
using Spectre.Console;

namespace NatKit.Cli.Commands;

/// <summary>`natkit proxy serve` (HTTP/1.1 forward proxy and SOCKS5) and `natkit proxy status` (its live
/// connection table).</summary>
internal sealed partial class ProxyCommands : IVerbGroup
{
    public Command Create()
    {
        var proxy = new Command("proxy", "HTTP/1.1 forward proxy and SOCKS5 with a live connection table.");
        proxy.Subcommands.Add(Serve());
        proxy.Subcommands.Add(Status());
        return proxy;
    }

    private static Command Serve()
    {
        var defaults = new ProxyOptions();
        var cmd = new Command("serve", "Run the proxy (loopback, LAN clients only, CONNECT and SOCKS5 to 443 only, unless told).");
        var listen = new Option<string>("--listen")
        {
            Description = "HTTP proxy address:port.",
            DefaultValueFactory = _ => "127.0.0.1:3128",
        };
        var socks = new Option<string?>("--socks") { Description = "Also serve SOCKS5 on this address:port." };
        var allow = new Option<string[]>("--allow")
        {
            Description = "Client network allowed, CIDR (repeatable; default: loopback, RFC 1918, ULA, link-local).",
            AllowMultipleArgumentsPerToken = false,
        };
        var connectPorts = new Option<string>("--connect-ports")
        {
            Description = "Ports CONNECT may reach, comma-separated, or 'any'.",
            DefaultValueFactory = _ => "443",
        };
        var socksPorts = new Option<string?>("--socks-ports")
        {
            Description = "Ports a SOCKS5 CONNECT or UDP datagram may reach, comma-separated, or 'any' (default: "
                + "the --connect-ports list).",
        };
        var auth = new Option<string?>("--auth")
        {
            Description = "user:password for Basic proxy auth (407) and SOCKS5 user/password (RFC 1929).",
        };
        var parent = new Option<string?>("--parent")
        {
            Description = "Parent proxy to send everything through: host:port or http://user:password@host:port " +
                          "(Basic credentials for the parent; the password may instead come from NATKIT_PARENT_PASSWORD).",
        };
        var allowLoopback = new Option<bool>("--allow-loopback-destinations")
        {
            Description = "Let clients reach loopback, link-local and multicast destinations (off: no SSRF to this host).",
        };
        var maxConnections = new Option<int>("--max-connections")
        {
            Description = "Most client connections at once.",
            DefaultValueFactory = _ => defaults.MaxConnections,
        };
        var maxHeader = new Option<int>("--max-header-bytes")
        {
            Description = "Largest request head accepted (431 past it).",
            DefaultValueFactory = _ => defaults.MaxHeaderBytes,
        };
        var headerTimeout = new Option<double>("--header-timeout")
        {
            Description = "Seconds a request head may take to arrive (408 past it).",
            DefaultValueFactory = _ => defaults.HeaderTimeout.TotalSeconds,
        };
        var idleTimeout = new Option<double>("--idle-timeout")
        {
            Description = "Seconds a connection may sit with no bytes moving.",
            DefaultValueFactory = _ => defaults.IdleTimeout.TotalSeconds,
        };
        var minBodyRate = new Option<double>("--min-body-rate")
        {
            Description = "Slowest average bytes/s a request body may arrive at after the grace (408 past it; 0: off).",
            DefaultValueFactory = _ => defaults.MinRequestBodyDataRate,
        };
        var minBodyRateGrace = new Option<double>("--min-body-rate-grace")
        {
            Description = "Seconds a request body may run below --min-body-rate before it counts.",
            DefaultValueFactory = _ => defaults.MinRequestBodyDataRateGracePeriod.TotalSeconds,
        };
        var minResponseRate = new Option<double>("--min-response-rate")
        {
            Description = "Slowest average bytes/s a client may take a response at, counting only time spent blocked "
                + "writing to it, after the grace (connection aborted past it; not tunnels or WebSockets; 0: off).",
            DefaultValueFactory = _ => defaults.MinResponseDataRate,
        };
        var minResponseRateGrace = new Option<double>("--min-response-rate-grace")
        {
            Description = "Seconds a response may be written below --min-response-rate before it counts.",
            DefaultValueFactory = _ => defaults.MinResponseDataRateGracePeriod.TotalSeconds,
        };
        var congestionControl = new Option<string?>("--congestion-control")
        {
            Description = "TCP congestion control for client and server legs, by kernel name (e.g. cubic; see "
                + "net.ipv4.tcp_available_congestion_control). Default: the system's.",
        };
        var quiet = new Option<bool>("--quiet") { Description = "No access log (only warnings and errors; as --log-level warning)." };
        foreach (var o in new Option[]
                 {
                     CliConfig.CreateOption(), listen, socks, allow, connectPorts, socksPorts, auth, parent, allowLoopback, maxConnections, maxHeader,
                     headerTimeout, idleTimeout, minBodyRate, minBodyRateGrace, minResponseRate, minResponseRateGrace,
                     congestionControl, quiet,
                 })
        {
            cmd.Options.Add(o);
        }

        IReadOnlyList<IPNetwork> AllowedClients(ParseResult p) => p.GetValue(allow) is { Length: > 0 } nets
            ? nets.Select(n => IPNetwork.TryParse(n, out var net) ? net
                : throw new CliException($"--allow {n}: not a CIDR network; write one like 192.168.0.0/16 or fd00::/8.")).ToList()
            : ProxyOptions.DefaultAllowedClients;

        string? Credentials(ParseResult p) => p.GetValue(auth) is { } a && (a.IndexOf(':', StringComparison.Ordinal) < 1)
            ? throw new CliException("--auth: expected USER:PASSWORD (the user name without ':').")
            : p.GetValue(auth);

        var (logging, metrics, serving) = ServerFlags.AddTo(cmd);
        cmd.SetAction(async (parse, ct) =>
        {
            serving.Drain(parse); // a bad --drain-timeout stops start-up, not the stop
            using var loggers = parse.GetValue(quiet)
                ? CliLogging.Create("warning", parse.GetValue(logging.Format)!)
                : logging.Create(parse);
            var (parentEndPoint, parentCredentials) = ParseParent(parse.GetValue(parent));
            var options = new ProxyOptions
            {
                HttpListen = ParseEndPoint(parse.GetValue(listen)!, "--listen"),
                SocksListen = parse.GetValue(socks) is { } s ? ParseEndPoint(s, "--socks") : null,
                AllowedClients = AllowedClients(parse),
                ConnectPorts = ParsePorts(parse.GetValue(connectPorts)!, "--connect-ports"),
                SocksPorts = parse.GetValue(socksPorts) is { } sp ? ParsePorts(sp, "--socks-ports") : null,
                Credentials = Credentials(parse),
                Parent = parentEndPoint,
                ParentCredentials = parentCredentials,
                AllowLoopbackDestinations = parse.GetValue(allowLoopback),
                MaxConnections = CliFlags.Positive(parse.GetValue(maxConnections), "--max-connections"),
                MaxHeaderBytes = parse.GetValue(maxHeader) is >= 1024 and <= 1 << 20 ? parse.GetValue(maxHeader)
                    : throw new CliException($"--max-header-bytes {parse.GetValue(maxHeader)}: must be 1024 (1 KiB) to 1048576 (1 MiB)."),
                HeaderTimeout = Seconds(parse.GetValue(headerTimeout), "--header-timeout"),
                IdleTimeout = Seconds(parse.GetValue(idleTimeout), "--idle-timeout"),
                MinRequestBodyDataRate = Rate(parse.GetValue(minBodyRate), "--min-body-rate"),
                MinRequestBodyDataRateGracePeriod = Seconds(parse.GetValue(minBodyRateGrace), "--min-body-rate-grace"),
                MinResponseDataRate = Rate(parse.GetValue(minResponseRate), "--min-response-rate"),
                MinResponseDataRateGracePeriod = Seconds(parse.GetValue(minResponseRateGrace),
                    "--min-response-rate-grace"),
                CongestionControl = parse.GetValue(congestionControl),
            };
            await using var prometheus = await metrics.StartAsync(parse, ct);
            await using var server = await ProxyServer.StartAsync(options, SystemNetwork.Instance,
                loggers.CreateLogger<ProxyServer>(), ct);
            if (prometheus is not null)
            {
                Console.WriteLine($"metrics: http://{prometheus.EndPoint}/metrics");
            }

            AnsiConsole.MarkupLine(
                $"[green]proxy[/] {Markup.Escape($"http://{server.HttpEndPoint}  status: http://{server.HttpEndPoint}{options.StatusPath}")}");
            if (server.SocksEndPoint is { } se)
            {
                AnsiConsole.MarkupLine($"[green]socks5[/] {Markup.Escape(se.ToString())}");
            }

            Console.WriteLine("Ctrl+C stops; SIGHUP re-reads --allow and --auth.");
            // SIGHUP: the client networks and credentials again, from the command line and --config's file as
            // they are now; open connections and tunnels stay.
            await CliServing.UntilStoppedAsync(loggers.CreateLogger("natkit.proxy.reload"),
                again => server.Reload(AllowedClients(again), Credentials(again)), ct);
            var drain = serving.Drain(parse);
            await server.StopAcceptingAsync(); // before saying so: from here a new client is refused
            var atStop = server.ActiveConnections;
            if (atStop > 0 && drain > TimeSpan.Zero)
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"draining: {atStop} connection(s) may finish within {drain.TotalSeconds:0.#} s; no new ones are accepted"));
            }

            var left = await server.DrainAsync(drain);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"stopped: {left} connection(s) cut, {Math.Max(0, atStop - left)} finished while draining"));
            return 0;
        });
        return cmd;
    }

    internal static IPEndPoint ParseEndPoint(string text, string option) => CliFlags.EndPoint(text, 3128, option);

    /// <summary>The parent proxy and its credentials; a user without a password takes it from
    /// NATKIT_PARENT_PASSWORD, so it need not appear in the process list.</summary>
    private static (DnsEndPoint? Parent, NetworkCredential? Credentials) ParseParent(string? text)
    {
        if (text is null)
        {
            return (null, null);
        }

        if (!ProxyOptions.TryParseParent(text, out var parent, out var credentials, out var error))
        {
            // the text may hold a password: the message names the problem, not the value
            throw new CliException($"--parent: {error}");
        }

        if (credentials is { Password.Length: 0 } &&
            Environment.GetEnvironmentVariable("NATKIT_PARENT_PASSWORD") is { Length: > 0 } password)
        {
            credentials = new NetworkCredential(credentials.UserName, password);
        }

        return (parent, credentials);
    }

    private static IReadOnlySet<int> ParsePorts(string text, string option)
    {
        if (text.Equals("any", StringComparison.OrdinalIgnoreCase))
        {
            return ProxyOptions.AnyPort;
        }

        var ports = new HashSet<int>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var p) || p is < 1 or > 65535)
            {
                throw new CliException($"{option}: '{part}' is not a port");
            }

            ports.Add(p);
        }

        return ports.Count > 0 ? ports : throw new CliException($"{option}: no port given");
    }

    private static TimeSpan Seconds(double value, string option) => value > 0
        ? TimeSpan.FromSeconds(value)
        : throw new CliException($"{option} must be a positive number of seconds");

    private static double Rate(double value, string option) => double.IsFinite(value) && value >= 0
        ? value
        : throw new CliException($"{option} must be 0 or a positive number of bytes per second");
}
