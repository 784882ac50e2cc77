using System.CommandLine;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using NatKit.Net;
using NatKit.Stun.Server;
using NatKit.Turn.Policy;
using NatKit.Turn.Server;
using Microsoft.Extensions.Logging;
using Spectre.Console;

namespace NatKit.Cli.Commands;

/// <summary>`natkit turn serve`: a TURN relay (RFC 8656), safe by default.</summary>
internal sealed class TurnCommands : IVerbGroup
{
    public Command Create()
    {
        var turn = new Command("turn", "TURN relay (RFC 8656) with a deny-by-default peer policy.");
        turn.Subcommands.Add(Serve());
        return turn;
    }

    private static Command Serve()
    {
        var defaults = new TurnServerOptions();
        var cmd = new Command("serve", "Run a TURN server (loopback unless --listen says otherwise).");
        var listen = new Option<string[]>("--listen") { Description = "UDP listen ADDRESS[:PORT] (repeatable; default 127.0.0.1:3478)." };
        var tcp = new Option<string[]>("--tcp") { Description = "TCP listen ADDRESS[:PORT] (repeatable)." };
        var tls = new Option<string[]>("--tls") { Description = "TLS listen ADDRESS[:PORT] (repeatable; needs --tls-cert)." };
        var tlsCert = new Option<string?>("--tls-cert") { Description = "Certificate: PKCS#12 file, or PEM with --tls-key." };
        var tlsKey = new Option<string?>("--tls-key") { Description = "PEM private key for a PEM --tls-cert." };
        var relay = new Option<string>("--relay") { Description = "IPv4 address relay sockets bind.", DefaultValueFactory = _ => "127.0.0.1" };
        var relay6 = new Option<string?>("--relay6") { Description = "IPv6 address for IPv6 relays (none: IPv6 relays refused with 440)." };
        var external = new Option<string?>("--external-ip") { Description = "IPv4 address announced in XOR-RELAYED-ADDRESS (behind a 1:1 NAT)." };
        var ports = new Option<string>("--ports") { Description = "Relay port range MIN-MAX.", DefaultValueFactory = _ => $"{defaults.MinPort}-{defaults.MaxPort}" };
        var realm = new Option<string>("--realm") { Description = "Realm for long-term credentials.", DefaultValueFactory = _ => defaults.Realm };
        var users = new Option<string[]>("--user") { Description = "Long-term credentials NAME:PASSWORD (repeatable)." };
        var secret = new Option<string?>("--secret") { Description = "TURN REST API shared secret (usernames expiry:user); or set NATKIT_TURN_SECRET, or use --secret-file, to keep it out of the process list." };
        var secretFile = new Option<string?>("--secret-file") { Description = "File holding the REST API shared secret (its first line)." };
        var usersFile = new Option<string?>("--users-file") { Description = "File of NAME:PASSWORD lines ('#' comments), added to --user; re-read on SIGHUP." };
        var config = CliConfig.CreateOption();
        var allow = new Option<string[]>("--allow") { Description = "Allow peers CIDR[:PORT[-PORT]] (repeatable), e.g. 127.0.0.0/8 for a lab." };
        var deny = new Option<string[]>("--deny") { Description = "Deny peers CIDR[:PORT[-PORT]] (repeatable); deny wins over allow." };
        var maxAllocations = new Option<int>("--max-allocations") { Description = "Allocations in total.", DefaultValueFactory = _ => defaults.MaxAllocations };
        var maxPerUser = new Option<int>("--max-allocations-per-user") { Description = "Allocations per user.", DefaultValueFactory = _ => defaults.MaxAllocationsPerUser };
        var bandwidth = new Option<long>("--bandwidth") { Description = "Bytes per second per allocation (0: unlimited).", DefaultValueFactory = _ => defaults.BandwidthBytesPerSecond };
        var unauth = new Option<int>("--unauth-rate") { Description = "Unauthenticated requests per second per source (0: unlimited).", DefaultValueFactory = _ => defaults.UnauthenticatedRequestsPerSecond };
        var maxLifetime = new Option<int>("--max-lifetime") { Description = "Longest allocation lifetime, seconds.", DefaultValueFactory = _ => (int)defaults.MaxLifetime.TotalSeconds };
        var maxTcp = new Option<int>("--max-tcp-connections") { Description = "TCP and TLS client connections held at once; more are closed on accept.", DefaultValueFactory = _ => defaults.MaxTcpConnections };
        var maxTcpPerIp = new Option<int>("--max-tcp-connections-per-ip") { Description = "TCP and TLS client connections from one source address.", DefaultValueFactory = _ => defaults.MaxTcpConnectionsPerAddress };
        var tcpHandshake = new Option<int>("--tcp-handshake-timeout") { Description = "Seconds a new TCP/TLS connection has for its TLS handshake and first whole STUN message.", DefaultValueFactory = _ => (int)defaults.TcpHandshakeTimeout.TotalSeconds };
        var tcpIdle = new Option<int>("--tcp-idle-timeout") { Description = "Seconds a TCP/TLS connection without a live allocation may go without a whole STUN message.", DefaultValueFactory = _ => (int)defaults.TcpIdleTimeout.TotalSeconds };
        foreach (var o in new Option[]
                 {
                     config, listen, tcp, tls, tlsCert, tlsKey, relay, relay6, external, ports, realm, users, usersFile, secret,
                     secretFile, allow, deny,
                     maxAllocations, maxPerUser, bandwidth, unauth, maxLifetime, maxTcp, maxTcpPerIp, tcpHandshake, tcpIdle,
                 })
        {
            cmd.Options.Add(o);
        }

        Dictionary<string, string> Users(ParseResult p) => StunCommands.ParseUsers(p.GetValue(users), p.GetValue(usersFile));

        PeerPolicy Policy(ParseResult p) => new(Rules(p.GetValue(allow), "--allow"), Rules(p.GetValue(deny), "--deny"));

        var (logging, metrics, serving) = ServerFlags.AddTo(cmd);
        cmd.SetAction(async (parse, ct) =>
        {
            using var loggers = logging.Create(parse);
            serving.Drain(parse); // a bad --drain-timeout stops start-up, not the stop
            var userMap = Users(parse);
            var sharedSecret = parse.GetValue(secret) ?? (parse.GetValue(secretFile) is { } sf ? SecretFrom(sf)
                : Environment.GetEnvironmentVariable("NATKIT_TURN_SECRET") is { Length: > 0 } env ? env : null);
            var tcpLimits = StunCommands.TcpConnectionFlags(parse.GetValue(maxTcp), parse.GetValue(maxTcpPerIp),
                parse.GetValue(tcpHandshake), parse.GetValue(tcpIdle));

            var (min, max) = CliFlags.PortRange(parse.GetValue(ports)!, "--ports");
            if (userMap.Count == 0 && sharedSecret is null)
            {
                throw new CliException("turn serve needs --user NAME:PASSWORD or --secret SECRET: it does not run as an open relay.");
            }

            if (parse.GetValue(tls) is { Length: > 0 } && parse.GetValue(tlsCert) is null)
            {
                throw new CliException("--tls needs --tls-cert: a PKCS#12 file, or a PEM certificate with --tls-key.");
            }

            var realmText = parse.GetValue(realm)!;
            if (realmText.Length is 0 or > 127)
            {
                throw new CliException($"--realm '{realmText}': must be 1-127 characters.");
            }

            if (parse.GetValue(maxLifetime) < (int)defaults.DefaultLifetime.TotalSeconds)
            {
                throw new CliException($"--max-lifetime {parse.GetValue(maxLifetime)}: must be at least {defaults.DefaultLifetime.TotalSeconds:0} seconds, the default lifetime RFC 8656 gives an allocation.");
            }

            using var cert = StunCommands.LoadCertificate(parse.GetValue(tlsCert), parse.GetValue(tlsKey));
            var options = new TurnServerOptions
            {
                UdpListen = parse.GetValue(listen) is { Length: > 0 } l
                    ? EndPoints(l, StunServerOptions.DefaultPort, "--listen")
                    : defaults.UdpListen,
                TcpListen = EndPoints(parse.GetValue(tcp), StunServerOptions.DefaultPort, "--tcp"),
                TlsListen = EndPoints(parse.GetValue(tls), StunServerOptions.DefaultTlsPort, "--tls"),
                Certificate = cert,
                RelayAddress = CliFlags.Address(parse.GetValue(relay), "--relay", AddressFamily.InterNetwork,
                    "IPv4 relays bind it; give an IPv6 one with --relay6")!,
                RelayAddressV6 = CliFlags.Address(parse.GetValue(relay6), "--relay6", AddressFamily.InterNetworkV6,
                    "IPv6 relays bind it; --relay is the IPv4 one"),
                ExternalAddress = CliFlags.Address(parse.GetValue(external), "--external-ip", AddressFamily.InterNetwork,
                    "it is announced as the relayed address of IPv4 allocations (IPv6 relays announce --relay6)"),
                MinPort = min,
                MaxPort = max,
                Realm = parse.GetValue(realm)!,
                Users = userMap,
                SharedSecret = sharedSecret,
                Policy = Policy(parse),
                MaxAllocations = CliFlags.Positive(parse.GetValue(maxAllocations), "--max-allocations"),
                MaxAllocationsPerUser = CliFlags.Positive(parse.GetValue(maxPerUser), "--max-allocations-per-user"),
                BandwidthBytesPerSecond = CliFlags.NotNegative(parse.GetValue(bandwidth), "--bandwidth", "unlimited"),
                UnauthenticatedRequestsPerSecond = CliFlags.NotNegative(parse.GetValue(unauth), "--unauth-rate", "unlimited"),
                MaxLifetime = TimeSpan.FromSeconds(parse.GetValue(maxLifetime)),
                MaxTcpConnections = tcpLimits.Max,
                MaxTcpConnectionsPerAddress = tcpLimits.PerAddress,
                TcpHandshakeTimeout = tcpLimits.Handshake,
                TcpIdleTimeout = tcpLimits.Idle,
            };
            await using var prometheus = await metrics.StartAsync(parse, ct);
            await using var server = await TurnServer.StartAsync(SystemNetwork.Instance, options,
                loggers.CreateLogger<TurnServer>(), ct);
            if (prometheus is not null)
            {
                Console.WriteLine($"metrics: http://{prometheus.EndPoint}/metrics");
            }

            var table = new Table().AddColumns("transport", "endpoint");
            foreach (var e in server.UdpEndPoints)
            {
                table.AddTextRow("udp", e.ToString());
            }

            foreach (var e in server.TcpEndPoints)
            {
                table.AddTextRow("tcp", e.ToString());
            }

            foreach (var e in server.TlsEndPoints)
            {
                table.AddTextRow("tls", e.ToString());
            }

            AnsiConsole.Write(table);
            if (server.TcpEndPoints.Count + server.TlsEndPoints.Count > 0)
            {
                Console.WriteLine(
                    $"tcp/tls: at most {options.MaxTcpConnections} connections ({options.MaxTcpConnectionsPerAddress} per address); closed after {options.TcpHandshakeTimeout.TotalSeconds:0} s without a first STUN message, {options.TcpIdleTimeout.TotalSeconds:0} s idle without an allocation.");
            }

            foreach (var line in Banner(options, server.UdpEndPoints.Concat(server.TcpEndPoints).Concat(server.TlsEndPoints).ToList(),
                         options.SharedSecret is null ? $"{userMap.Count} user(s)" : "REST shared secret" + (userMap.Count > 0 ? $" and {userMap.Count} user(s)" : "")))
            {
                Console.WriteLine(line);
            }

            Console.WriteLine("Ctrl+C stops.");
            // SIGHUP: the users (--user, --users-file) and peer rules (--allow, --deny) again, from the command line
            // and --config's file as they are now; allocations stay.
            await CliServing.UntilStoppedAsync(loggers.CreateLogger("natkit.turn.reload"),
                again => server.Reload(Users(again), Policy(again)), ct);
            var drain = serving.Drain(parse);
            var atStop = server.AllocationCount;
            var draining = server.DrainAsync(drain); // refuses new allocations from its first step, before any await
            if (atStop > 0 && drain > TimeSpan.Zero)
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"draining: {atStop} allocation(s) may run up to {drain.TotalSeconds:0.#} s; new ones are refused (508)"));
            }

            var left = await draining;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"stopped: {left} allocation(s) released, {Math.Max(0, atStop - left)} ended by their clients while draining"));
            return 0;
        });
        return cmd;
    }

    /// <summary>What the operator should see before serving: where relays bind and what they announce, IPv6,
    /// the peer rules in force (the built-in denied ranges too), and a warning when clients elsewhere would get a
    /// loopback relayed address they cannot reach.</summary>
    internal static List<string> Banner(TurnServerOptions options, IReadOnlyList<IPEndPoint> listening, string credentials)
    {
        var announced = options.ExternalAddress is { } ext ? $", announced as {ext}" : "";
        var lines = new List<string>
        {
            $"relay {options.RelayAddress}{announced}, ports {options.MinPort}-{options.MaxPort}; IPv6 relay " +
            (options.RelayAddressV6 is { } v6 ? v6.ToString() : "off (IPv6 allocations refused with 440; --relay6 turns it on)") +
            $"; realm {options.Realm}, {credentials}",
            $"peers allowed: [{string.Join(", ", options.Policy.Allow)}]; denied: [{string.Join(", ", options.Policy.Deny)}]" +
            $", the server's own addresses, and unless allowed: {string.Join(", ", PeerPolicy.DeniedRanges.Select(r => $"{r.Prefix} ({r.Name})"))}",
        };
        var publicListener = listening.FirstOrDefault(e => !IPAddress.IsLoopback(e.Address));
        if (publicListener is not null && IPAddress.IsLoopback(options.RelayAddress) && options.ExternalAddress is null)
        {
            lines.Add($"warning: listening on {publicListener} but relaying from loopback {options.RelayAddress}: clients elsewhere would get a relayed address they cannot reach; set --relay to this host's address (and --external-ip behind a 1:1 NAT).");
        }

        return lines;
    }

    private static string SecretFrom(string path)
    {
        try
        {
            return File.ReadLines(path).FirstOrDefault()?.Trim() is { Length: > 0 } line
                ? line
                : throw new CliException($"--secret-file {path}: the file is empty; put the shared secret on its first line.");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliException($"--secret-file {path}: cannot be read ({e.Message.TrimEnd('.')}).");
        }
    }

    private static List<IPEndPoint> EndPoints(string[]? texts, int defaultPort, string option) =>
        (texts ?? []).Select(t => CliFlags.EndPoint(t, defaultPort, option)).ToList();

    internal static List<PeerRule> Rules(string[]? texts, string option)
    {
        var rules = new List<PeerRule>();
        foreach (var t in texts ?? [])
        {
            foreach (var part in t.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                rules.Add(PeerRule.TryParse(part, out var r)
                    ? r
                    : throw new CliException($"{option} {part}: expected CIDR[:PORT[-PORT]], like 10.0.0.0/8 or [::1]:5000"));
            }
        }

        return rules;
    }

}
