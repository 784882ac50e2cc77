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
internal sealed class StunCommands : IVerbGroup
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
                Primary = ParseEndPoint(parse.GetValue(listen)!, StunServerOptions.DefaultPort, "--listen"),
                AlternateAddress = ParseAddress(parse.GetValue(alternate), "--alternate"),
                AlternatePort = CliFlags.NotNegative(parse.GetValue(alternatePort), "--alternate-port", "primary port + 1"),
                AdvertisedPrimaryAddress = ParseAddress(parse.GetValue(advertise), "--advertise"),
                AdvertisedAlternateAddress = ParseAddress(parse.GetValue(advertiseAlternate), "--advertise-alternate"),
                EnableUdp = !parse.GetValue(noUdp),
                EnableTcp = !parse.GetValue(noTcp),
                TlsCertificate = cert,
                TlsPort = CliFlags.NotNegative(parse.GetValue(tlsPort), "--tls-port", "any free port"),
                Users = userMap,
                Realm = parse.GetValue(realm),
                RateLimitPerSecond = CliFlags.NotNegative(parse.GetValue(rate), "--rate-limit", "unlimited"),
                Software = string.IsNullOrEmpty(sw) ? null : sw,
                RedirectTo = parse.GetValue(redirect) is { } r
                    ? ParseEndPoint(r, StunServerOptions.DefaultPort, "--redirect")
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

    private static Command Probe()
    {
        var cmd = new Command("probe", "Discover this host's NAT behaviour against an RFC 5780 STUN server.");
        var server = new Argument<string>("server") { Description = "SERVER[:PORT] (port 3478 by default)." };
        var json = new Option<bool>("--json") { Description = "Print a JSON array with one record, named by the server, instead of a table." };
        var lifetime = new Option<bool>("--lifetime")
        {
            Description = "Also measure the idle binding lifetime (binary search; takes minutes).",
        };
        var lifetimeMax = new Option<int>("--lifetime-max")
        {
            Description = "Longest idle time tried, in seconds.",
            DefaultValueFactory = _ => 300,
        };
        var rto = new Option<int>("--rto")
        {
            Description = "Initial retransmission timeout in ms.",
            DefaultValueFactory = _ => 250,
        };
        var tries = new Option<int>("--requests")
        {
            Description = "Requests per transaction (RFC 8489 Rc; 7 is the RFC default, probes use fewer).",
            DefaultValueFactory = _ => 4,
        };
        var local = new Option<string?>("--local") { Description = "Local address to send from." };
        cmd.Arguments.Add(server);
        foreach (var o in new Option[] { json, lifetime, lifetimeMax, rto, tries, local })
        {
            cmd.Options.Add(o);
        }

        cmd.SetAction(async (parse, ct) =>
        {
            var endpoint = await ResolveAsync(parse.GetValue(server)!, ct);
            var options = new NatDiscoveryOptions
            {
                LocalAddress = ParseAddress(parse.GetValue(local), "--local"),
                Client = new StunClientOptions
                {
                    InitialRto = TimeSpan.FromMilliseconds(Positive(parse.GetValue(rto), "--rto")),
                    RequestCount = Positive(parse.GetValue(tries), "--requests"),
                    LastWaitMultiplier = 4,
                },
                MeasureBindingLifetime = parse.GetValue(lifetime),
                BindingLifetimeMax = TimeSpan.FromSeconds(Positive(parse.GetValue(lifetimeMax), "--lifetime-max")),
            };
            NatBehavior result;
            if (parse.GetValue(json))
            {
                result = await new NatBehaviorDiscovery(SystemNetwork.Instance, endpoint, options).RunAsync(ct);
                CliJson.WriteRecords([(parse.GetValue(server)!, result.ToJson())]);
            }
            else
            {
                result = await AnsiConsole.Status().StartAsync($"probing {Markup.Escape(endpoint.ToString())} ...",
                    _ => new NatBehaviorDiscovery(SystemNetwork.Instance, endpoint, options).RunAsync(ct));
                AnsiConsole.Write(RenderBehavior(result));
            }

            return result.Reachable ? 0 : 1;
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

    /// <summary>The behaviour report as a table (also used by `natkit lab probe`).</summary>
    internal static Table RenderBehavior(NatBehavior b)
    {
        var table = new Table().AddColumns("property", "value");
        table.AddRow("server", Markup.Escape(b.Server.ToString()));
        table.AddRow("reachable", b.Reachable ? "yes" : "[red]no[/]");
        table.AddRow("RFC 5780 server", b.ServerSupportsRfc5780 ? "yes" : "no");
        table.AddRow("local endpoint", Markup.Escape(b.LocalEndPoint?.ToString() ?? "-"));
        table.AddRow("mapped endpoint", Markup.Escape(b.MappedEndPoint?.ToString() ?? "-"));
        table.AddRow("mapping", $"{NatBehavior.ShortName(b.Mapping)} ({b.Mapping})");
        table.AddRow("filtering", $"{NatBehavior.ShortName(b.Filtering)} ({b.Filtering})");
        table.AddRow("hairpinning", YesNo(b.Hairpinning));
        table.AddRow("port preserved", YesNo(b.PortPreserved));
        table.AddRow("binding lifetime", b.BindingLifetime is { } l
            ? (b.BindingLifetimeIsLowerBound ? ">= " : "") + l.TotalSeconds.ToString("0.#", CultureInfo.InvariantCulture) + " s"
            : "not measured");
        foreach (var n in b.Notes)
        {
            table.AddRow("note", Markup.Escape(n));
        }

        return table;
    }

    private static string YesNo(bool? value) => value switch { true => "yes", false => "no", null => "not tested" };

    private static int Positive(int value, string name) => CliFlags.Positive(value, name);

    /// <summary>The values of the TCP/TLS connection flags that `stun serve` and `turn serve` share
    /// (--max-tcp-connections, --max-tcp-connections-per-ip, --tcp-handshake-timeout, --tcp-idle-timeout),
    /// checked so a mistake names the flag.</summary>
    internal static (int Max, int PerAddress, TimeSpan Handshake, TimeSpan Idle) TcpConnectionFlags(int max,
        int perAddress, int handshakeSeconds, int idleSeconds)
    {
        const int maxSeconds = 49 * 24 * 3600; // a timer's longest due time is 49.7 days
        Positive(max, "--max-tcp-connections");
        if (perAddress < 1 || perAddress > max)
        {
            throw new CliException($"--max-tcp-connections-per-ip must be 1 to --max-tcp-connections ({max})");
        }

        if (handshakeSeconds is < 1 or > maxSeconds)
        {
            throw new CliException($"--tcp-handshake-timeout must be 1 to {maxSeconds} seconds");
        }

        if (idleSeconds is < 1 or > maxSeconds)
        {
            throw new CliException($"--tcp-idle-timeout must be 1 to {maxSeconds} seconds");
        }

        return (max, perAddress, TimeSpan.FromSeconds(handshakeSeconds), TimeSpan.FromSeconds(idleSeconds));
    }

    /// <summary>--user NAME:PASSWORD values (repeatable) and --users-file's lines as one map; shared by the STUN
    /// and TURN servers.</summary>
    internal static Dictionary<string, string> ParseUsers(string[]? values, string? usersFile = null)
    {
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var u in values ?? [])
        {
            var (name, password) = ParseUser(u);
            map[name] = password;
        }

        if (usersFile is not null)
        {
            foreach (var (name, password) in CliConfig.ReadUsers(usersFile, "--users-file"))
            {
                map[name] = password;
            }
        }

        return map;
    }

    /// <summary>One --user NAME:PASSWORD value.</summary>
    internal static (string Name, string Password) ParseUser(string text)
    {
        var colon = text.IndexOf(':', StringComparison.Ordinal);
        return colon > 0
            ? (text[..colon], text[(colon + 1)..])
            : throw new CliException($"--user {text}: expected NAME:PASSWORD");
    }

    /// <summary>See <see cref="CliFlags.EndPoint"/>.</summary>
    internal static IPEndPoint ParseEndPoint(string text, int defaultPort, string option) =>
        CliFlags.EndPoint(text, defaultPort, option);

    /// <summary>See <see cref="CliFlags.Address(string?, string)"/>.</summary>
    internal static IPAddress? ParseAddress(string? text, string option) => CliFlags.Address(text, option);

    /// <summary>The server a load generator is pointed at (<see cref="ResolveAsync"/>), with a note when it is
    /// not on loopback.</summary>
    internal static async Task<IPEndPoint> ResolveLoadTargetAsync(string text, CancellationToken ct)
    {
        var endpoint = await ResolveAsync(text, ct);
        if (!IPAddress.IsLoopback(endpoint.Address))
        {
            AnsiConsole.MarkupLine("[yellow]note:[/] loading a non-loopback server: make sure it is yours.");
        }

        return endpoint;
    }

    /// <summary>SERVER[:PORT] with a host name or an address; port 3478 when absent.</summary>
    internal static async Task<IPEndPoint> ResolveAsync(string text, CancellationToken ct)
    {
        if (!text.StartsWith('[') && text.Count(c => c == ':') > 1)
        {
            return CliFlags.EndPoint(text, StunServerOptions.DefaultPort, "SERVER"); // IPv6 alone; ::1:3478 refused
        }

        if (IPAddress.TryParse(text, out var address) && !text.Contains("]:", StringComparison.Ordinal))
        {
            return new IPEndPoint(address, StunServerOptions.DefaultPort);
        }

        if (IPEndPoint.TryParse(text, out var ep))
        {
            return ep;
        }

        var host = text;
        var port = StunServerOptions.DefaultPort;
        var colon = text.LastIndexOf(':');
        if (colon > 0)
        {
            if (!int.TryParse(text.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out port) ||
                port is < 1 or > 65535)
            {
                throw new CliException($"{text}: bad port");
            }

            host = text[..colon];
        }

        try
        {
            var addresses = await Dns.GetHostAddressesAsync(host, ct);
            var pick = addresses.FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork) ??
                       addresses.FirstOrDefault() ?? throw new CliException($"{host}: no address");
            return new IPEndPoint(pick, port);
        }
        catch (SocketException e)
        {
            throw new CliException($"{host}: {e.Message}");
        }
    }

    /// <summary>What StunServerOptions.Validate would refuse, said in flags: run before the server starts.</summary>
    internal static void CheckServeFlags(StunServerOptions o)
    {
        var family = o.Primary.AddressFamily;
        var listen = $"--listen is {CliFlags.Family(family)}";
        if (o.AlternateAddress is { } alt)
        {
            if (alt.AddressFamily != family)
            {
                throw new CliException($"--alternate {alt}: must be an {CliFlags.Family(family)} address like --listen ({o.Primary.Address}); RFC 5780 tests need both of one family.");
            }

            if (alt.Equals(o.Primary.Address))
            {
                throw new CliException($"--alternate {alt}: must be a second address of this host, not the --listen address.");
            }
        }

        if (o.AdvertisedPrimaryAddress is { } adv && adv.AddressFamily != family)
        {
            throw new CliException($"--advertise {adv}: must be an {CliFlags.Family(family)} address because {listen}; it is the public address of --listen.");
        }

        if (o.AdvertisedAlternateAddress is { } advAlt)
        {
            if (o.AlternateAddress is null)
            {
                throw new CliException($"--advertise-alternate {advAlt}: needs --alternate, the address it stands for.");
            }

            if (advAlt.AddressFamily != family)
            {
                throw new CliException($"--advertise-alternate {advAlt}: must be an {CliFlags.Family(family)} address because {listen}.");
            }
        }

        if (o.AlternatePort > 65535 || (o.AlternatePort != 0 && o.AlternatePort == o.Primary.Port))
        {
            throw new CliException($"--alternate-port {o.AlternatePort}: must be 1-65535 and differ from the --listen port ({o.Primary.Port}).");
        }

        if (o.TlsPort > 65535)
        {
            throw new CliException($"--tls-port {o.TlsPort}: port is out of range; use 1-65535.");
        }

        if (!o.EnableUdp && !o.EnableTcp && o.TlsCertificate is null)
        {
            throw new CliException("--no-udp with --no-tcp leaves nothing to serve: drop one, or add --tls-cert.");
        }

        if (o.Realm is not null && o.Users.Count == 0)
        {
            throw new CliException($"--realm {o.Realm}: long-term credentials need at least one --user NAME:PASSWORD.");
        }
    }

    /// <summary>--tls-cert and --tls-key: a PKCS#12 file alone, a PEM certificate with its key (in --tls-key or in
    /// the same file).</summary>
    internal static X509Certificate2? LoadCertificate(string? cert, string? key)
    {
        if (cert is null)
        {
            return key is null
                ? null
                : throw new CliException($"--tls-key {key}: needs --tls-cert, the certificate this key belongs to.");
        }

        if (!File.Exists(cert))
        {
            throw new CliException($"--tls-cert {cert}: no such file.");
        }

        if (key is not null && !File.Exists(key))
        {
            throw new CliException($"--tls-key {key}: no such file.");
        }

        var text = File.ReadAllText(cert);
        var pem = text.Contains("-----BEGIN ", StringComparison.Ordinal);
        if (pem && key is null && !text.Contains("PRIVATE KEY-----", StringComparison.Ordinal))
        {
            throw new CliException($"--tls-cert {cert}: a PEM certificate needs its private key; give it with --tls-key KEY.pem.");
        }

        if (!pem && key is not null)
        {
            throw new CliException($"--tls-key {key}: is only for a PEM --tls-cert, and {cert} is not PEM (a PKCS#12 file holds its own key: drop --tls-key).");
        }

        try
        {
            if (!pem)
            {
                return X509CertificateLoader.LoadPkcs12FromFile(cert, null);
            }

            using var fromPem = X509Certificate2.CreateFromPemFile(cert, key);
            return X509CertificateLoader.LoadPkcs12(fromPem.Export(X509ContentType.Pfx), null);
        }
        catch (System.Security.Cryptography.CryptographicException e)
        {
            var what = pem ? $"as a PEM certificate with the key in {key ?? cert}" : "as a PKCS#12 (.pfx) file without a password";
            throw new CliException($"--tls-cert {cert}: cannot be read {what} ({e.Message.TrimEnd('.')}); give a PKCS#12 file, or a PEM certificate with --tls-key.");
        }
    }
}
