using System.CommandLine;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using NatKit.Net;
using NatKit.Stun.Client;
using NatKit.Stun.Discovery;
using NatKit.Stun.Server;
using Microsoft.Extensions.Logging;
using Spectre.Console;

namespace NatKit.Cli.Commands;

/// <summary>`natkit stun serve` (an RFC 8489/5780 server) and `natkit stun probe` (NAT behaviour discovery).</summary>
internal sealed partial class StunCommands : IVerbGroup
{
    private const string InlineCompletionsVariable = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    public Command Create()
    {
        var stun = new Command("stun", "STUN server and NAT behaviour discovery (RFC 8489, RFC 5780).");
        stun.Subcommands.Add(Serve());
        stun.Subcommands.Add(Probe());
        return stun;
    }

    private static Command Serve()
    {
        var cmd = new Command("serve", "Run a STUN server (loopback unless --listen says otherwise).");
        var listen = new Option<string>("--listen")
        {
            Description = "Primary address and port.",
            DefaultValueFactory = _ => "127.0.0.1:3478",
        };
        var alternate = new Option<string?>("--alternate")
        {
            Description = "Alternate address: turns on RFC 5780 mode (four UDP sockets, CHANGE-REQUEST, OTHER-ADDRESS).",
        };
        var alternatePort = new Option<int>("--alternate-port")
        {
            Description = "Alternate port (default: primary port + 1).",
        };
        var advertise = new Option<string?>("--advertise")
        {
            Description = "Public address of the primary address behind a 1:1 NAT (reported in RESPONSE-ORIGIN/OTHER-ADDRESS).",
        };
        var advertiseAlternate = new Option<string?>("--advertise-alternate")
        {
            Description = "Public address of the alternate address behind a 1:1 NAT.",
        };
        var noUdp = new Option<bool>("--no-udp") { Description = "Do not serve UDP." };
        var noTcp = new Option<bool>("--no-tcp") { Description = "Do not serve TCP." };
        var tlsCert = new Option<string?>("--tls-cert")
        {
            Description = "Serve TLS with this certificate (PKCS#12 file, or PEM with --tls-key).",
        };
        var tlsKey = new Option<string?>("--tls-key") { Description = "PEM private key for a PEM --tls-cert." };
        var tlsPort = new Option<int>("--tls-port")
        {
            Description = "TLS port.",
            DefaultValueFactory = _ => StunServerOptions.DefaultTlsPort,
        };
        var users = new Option<string[]>("--user")
        {
            Description = "Credentials NAME:PASSWORD (repeatable). Without --realm: short-term; with it: long-term. Re-read on SIGHUP.",
            AllowMultipleArgumentsPerToken = false,
        };
        var usersFile = new Option<string?>("--users-file")
        {
            Description = "File of NAME:PASSWORD lines ('#' comments), added to --user (kept out of the process list); re-read on SIGHUP.",
        };
        var realm = new Option<string?>("--realm") { Description = "Realm for long-term credentials." };
        var rate = new Option<int>("--rate-limit")
        {
            Description = "Requests per second per source address (0: unlimited). Re-read on SIGHUP.",
            DefaultValueFactory = _ => new StunServerOptions().RateLimitPerSecond,
        };
        var software = new Option<string?>("--software")
        {
            Description = "SOFTWARE attribute (empty: none).",
            DefaultValueFactory = _ => "NatKit",
        };
        var inline = new Option<bool>("--inline-completions")
        {
            Description = "Run socket completions on the I/O thread instead of the thread pool (this server never " +
                          "blocks; about a third more requests/s on loopback). Sets " + InlineCompletionsVariable + ".",
            DefaultValueFactory = _ => true,
        };
        var redirect = new Option<string?>("--redirect")
        {
            Description = "Answer every Binding request with 300 Try Alternate to ADDRESS:PORT (RFC 8489 section 10).",
        };
        var defaults = new StunServerOptions();
        var maxTcp = new Option<int>("--max-tcp-connections")
        {
            Description = "TCP and TLS connections held at once; more are closed on accept.",
            DefaultValueFactory = _ => defaults.MaxTcpConnections,
        };
        var maxTcpPerIp = new Option<int>("--max-tcp-connections-per-ip")
        {
            Description = "TCP and TLS connections from one source address.",
            DefaultValueFactory = _ => defaults.MaxTcpConnectionsPerAddress,
        };
        var tcpHandshake = new Option<int>("--tcp-handshake-timeout")
        {
            Description = "Seconds a new TCP/TLS connection has for its TLS handshake and first whole STUN message.",
            DefaultValueFactory = _ => (int)defaults.TcpHandshakeTimeout.TotalSeconds,
        };
        var tcpIdle = new Option<int>("--tcp-idle-timeout")
        {
            Description = "Seconds a TCP/TLS connection may go without a whole STUN message (a trickle of bytes does not count).",
            DefaultValueFactory = _ => (int)defaults.TcpIdleTimeout.TotalSeconds,
        };
        foreach (var o in new Option[]
                 {
                     CliConfig.CreateOption(), listen, alternate, alternatePort, advertise, advertiseAlternate, noUdp, noTcp, tlsCert, tlsKey,
                     tlsPort, users, usersFile, realm, rate, software, redirect, inline, maxTcp, maxTcpPerIp, tcpHandshake, tcpIdle,
                 })
        {
            cmd.Options.Add(o);
        }

        var logging = new CliLogging();
        logging.AddTo(cmd);
        var metrics = new CliMetrics();
        metrics.AddTo(cmd);
        cmd.SetAction(async (parse, ct) =>
        {
            using var loggers = logging.Create(parse);
            if (parse.GetValue(inline))
            {
                UseInlineCompletions();
            }

            var userMap = ParseUsers(parse.GetValue(users), parse.GetValue(usersFile));
            var tcpLimits = TcpConnectionFlags(parse.GetValue(maxTcp), parse.GetValue(maxTcpPerIp),
                parse.GetValue(tcpHandshake), parse.GetValue(tcpIdle));

            using var cert = LoadCertificate(parse.GetValue(tlsCert), parse.GetValue(tlsKey));
            var sw = parse.GetValue(software);
            var options = new StunServerOptions
            {
                Primary = CliFlags.EndPoint(parse.GetValue(listen)!, StunServerOptions.DefaultPort, "--listen"),
                AlternateAddress = CliFlags.Address(parse.GetValue(alternate), "--alternate"),
                AlternatePort = CliFlags.NotNegative(parse.GetValue(alternatePort), "--alternate-port", "primary port + 1"),
                AdvertisedPrimaryAddress = CliFlags.Address(parse.GetValue(advertise), "--advertise"),
                AdvertisedAlternateAddress = CliFlags.Address(parse.GetValue(advertiseAlternate), "--advertise-alternate"),
                EnableUdp = !parse.GetValue(noUdp),
                EnableTcp = !parse.GetValue(noTcp),
                TlsCertificate = cert,
                TlsPort = CliFlags.NotNegative(parse.GetValue(tlsPort), "--tls-port", "any free port"),
                Users = userMap,
                Realm = parse.GetValue(realm),
                RateLimitPerSecond = CliFlags.NotNegative(parse.GetValue(rate), "--rate-limit", "unlimited"),
                Software = string.IsNullOrEmpty(sw) ? null : sw,
                RedirectTo = parse.GetValue(redirect) is { } r
                    ? CliFlags.EndPoint(r, StunServerOptions.DefaultPort, "--redirect")
                    : null,
                MaxTcpConnections = tcpLimits.Max,
                MaxTcpConnectionsPerAddress = tcpLimits.PerAddress,
                TcpHandshakeTimeout = tcpLimits.Handshake,
                TcpIdleTimeout = tcpLimits.Idle,
            };
            CheckServeFlags(options);
            await using var prometheus = await metrics.StartAsync(parse, ct);
            await using var server = await StunServer.StartAsync(SystemNetwork.Instance, options,
                loggers.CreateLogger<StunServer>(), ct);
            if (prometheus is not null)
            {
                Console.WriteLine($"metrics: http://{prometheus.EndPoint}/metrics");
            }

            var table = new Table().AddColumns("transport", "endpoint", "role");
            var roles = new[] { "primary", "primary address, alternate port", "alternate address, primary port", "alternate" };
            for (var i = 0; i < server.UdpEndPoints.Count; i++)
            {
                table.AddTextRow("udp", server.UdpEndPoints[i].ToString(), roles[i]);
            }

            if (server.TcpEndPoint is not null)
            {
                table.AddTextRow("tcp", server.TcpEndPoint.ToString(), "primary");
            }

            if (server.TlsEndPoint is not null)
            {
                table.AddTextRow("tls", server.TlsEndPoint.ToString(), "primary");
            }

            AnsiConsole.Write(table);
            if (server.TcpEndPoint is not null || server.TlsEndPoint is not null)
            {
                Console.WriteLine(
                    $"tcp/tls: at most {options.MaxTcpConnections} connections ({options.MaxTcpConnectionsPerAddress} per address); closed after {options.TcpHandshakeTimeout.TotalSeconds:0} s without a first STUN message, {options.TcpIdleTimeout.TotalSeconds:0} s without another.");
            }

            AnsiConsole.MarkupLine(userMap.Count == 0 ? "no credentials required; Ctrl+C stops"
                : $"{(options.Realm is null ? "short-term" : "long-term")} credentials for {userMap.Count} user(s); Ctrl+C stops");
            // nothing to drain: every answer is one message, sent before the next is read. SIGHUP re-reads the
            // users and the rate limit from the command line and --config's file as they are now.
            await CliServing.UntilStoppedAsync(loggers.CreateLogger("natkit.stun"), again =>
            {
                var newUsers = ParseUsers(again.GetValue(users), again.GetValue(usersFile));
                if (options.Realm is not null && newUsers.Count == 0)
                {
                    throw new CliException("--user/--users-file: a reload must leave at least one user while --realm is set.");
                }

                server.Reload(newUsers, CliFlags.NotNegative(again.GetValue(rate), "--rate-limit", "unlimited"));
            }, ct);
            var totals = server.Metrics;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"stopped: requests {totals.Requests}, responses {totals.Responses}, dropped {totals.Dropped}"));
            return 0;
        });
        return cmd;
    }

    /// <summary>
    /// Socket completions run on the I/O thread instead of hopping to the thread pool: right for loops that never
    /// block (the STUN server, the load generator). The runtime reads the variable when the first socket is made,
    /// so this must run before any; a value the user set wins.
    /// </summary>
    internal static void UseInlineCompletions()
    {
        if (Environment.GetEnvironmentVariable(InlineCompletionsVariable) is null)
        {
            Environment.SetEnvironmentVariable(InlineCompletionsVariable, "1");
        }
    }
}
