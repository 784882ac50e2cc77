using System.CommandLine;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;
using NatKit.Linux;
using NatKit.Packets;
using NatKit.Tunnel.Client;
using NatKit.Tunnel.Relay;
using NatKit.Tunnel.Server;
using NatKit.Tunnel.Transport;
using Spectre.Console;

namespace NatKit.Cli.Commands;

/// <summary>
/// `natkit tunnel serve|connect|relay|sessions|flows`: IP over WebSocket. The server NATs its clients' packets with the
/// engine onto a TUN device; the client carries its TUN device's packets to it; the relay is a LAN hop that opens a
/// new WebSocket to the server for each client (and serves the browser relay page).
/// </summary>
internal sealed partial class TunnelCommands : IVerbGroup
{
    public Command Create()
    {
        var tunnel = new Command("tunnel", "IP over WebSocket: a client on a TUN device, relay hops, a server that NATs with the engine.");
        tunnel.Subcommands.Add(Serve());
        tunnel.Subcommands.Add(Connect());
        tunnel.Subcommands.Add(Relay());
        tunnel.Subcommands.Add(Sessions());
        tunnel.Subcommands.Add(Flows());
        return tunnel;
    }

    internal static string ControlPath(string name) => Path.Combine(GatewayControl.Directory, name + ".tunnel.sock");

    private static Command Serve()
    {
        var listen = new Option<string[]>("--listen") { Description = "ADDRESS[:PORT] to accept WebSockets on (port 8080 when absent); repeat for more.", DefaultValueFactory = _ => ["127.0.0.1:8080"], AllowMultipleArgumentsPerToken = true };
        var tokens = new Option<string[]>("--token") { Description = "A token clients must present; repeat for more.", AllowMultipleArgumentsPerToken = true };
        var tokenFile = new Option<FileInfo?>("--token-file") { Description = "A file of tokens, one a line (keeps them out of the process list)." };
        var pool = new Option<string>("--pool") { Description = "The inner prefix: its first address is the server's, the rest go to clients.", DefaultValueFactory = _ => "10.99.0.0/16" };
        var external = new Option<string[]>("--external") { Description = "The NAT's external address (routed to this machine); repeat for a pool.", Required = true, AllowMultipleArgumentsPerToken = true };
        var tun = new Option<string>("--tun") { Description = "The outside TUN device to create.", DefaultValueFactory = _ => "natkit-srv0" };
        var routes = new Option<string[]>("--route") { Description = "A route offered to clients (PREFIX, or 'default'); repeat for more.", DefaultValueFactory = _ => ["default"], AllowMultipleArgumentsPerToken = true };
        var preset = new Option<string>("--preset") { Description = "NAT behaviour preset.", DefaultValueFactory = _ => "rfc-recommended" };
        var policyFile = new Option<FileInfo?>("--policy") { Description = "JSON file of NAT policy knobs (overrides --preset)." };
        var maxFlows = new Option<int>("--max-flows-per-session") { Description = "Most NAT flows one session may hold (RFC 6888 REQ-4); 0 = none.", DefaultValueFactory = _ => 4096 };
        var maxPps = new Option<int>("--max-pps") { Description = "Most packets per second one session may send; 0 = none.", DefaultValueFactory = _ => 0 };
        var maxSessions = new Option<int>("--max-sessions") { Description = "Most sessions at once.", DefaultValueFactory = _ => 10_000 };
        var mtu = new Option<int>("--mtu") { Description = "The MTU clients set on their TUN devices.", DefaultValueFactory = _ => 1400 };
        var keepalive = new Option<int>("--keepalive") { Description = "Seconds between client keepalives; three silent ones end a session.", DefaultValueFactory = _ => 10 };
        var grace = new Option<int>("--resume-grace") { Description = "Seconds a disconnected session keeps its address and flows for a reconnect.", DefaultValueFactory = _ => 60 };
        var clientAddresses = new Option<bool>("--allow-client-addresses") { Description = "Let clients keep the inner address they ask for (each still gets its own inside the server)." };
        var cert = new Option<string?>("--tls-cert") { Description = "TLS certificate (PKCS#12, or PEM with --tls-key): serve wss://." };
        var key = new Option<string?>("--tls-key") { Description = "PEM private key for --tls-cert." };
        var name = new Option<string>("--name") { Description = "Name of the control socket /run/natkit/NAME.tunnel.sock (natkit tunnel sessions --name).", DefaultValueFactory = _ => "tunnel" };
        var noOffload = new Option<bool>("--no-offload") { Description = "Open the TUN device without virtio-net offloads, and take no offload messages." };
        var tuning = new DataPlaneCliOptions();
        var serving = new CliServing();
        var serve = new Command("serve", "Accept tunnel clients and NAT their packets onto a TUN device, until SIGINT/SIGTERM (then drain).")
        {
            listen, tokens, tokenFile, pool, external, tun, routes, preset, policyFile, maxFlows, maxPps, maxSessions,
            mtu, keepalive, grace, clientAddresses, cert, key, name, noOffload, tuning.Realtime, tuning.BatchPause,
        };
        serving.AddTo(serve);
        serve.SetAction(async (parse, ct) =>
        {
            var drain = serving.Drain(parse);
            var allTokens = (parse.GetValue(tokens) ?? []).ToList();
            if (parse.GetValue(tokenFile) is { } file)
            {
                if (!file.Exists)
                {
                    throw new CliException($"--token-file {file.FullName}: no such file");
                }

                allTokens.AddRange(File.ReadAllLines(file.FullName).Select(l => l.Trim()).Where(l => l.Length > 0));
            }

            if (allTokens.Count == 0)
            {
                throw new CliException("--token or --token-file: a tunnel server needs at least one token (it never runs open)");
            }

            var options = new TunnelServerOptions
            {
                Tokens = allTokens,
                Pool = Prefix(parse.GetValue(pool)!, "--pool"),
                ExternalAddresses = [.. parse.GetValue(external)!.Select(a => Ipv4Address.TryParse(a, out var x) ? x : throw new CliException($"--external {a}: not an IPv4 address"))],
                Routes = [.. parse.GetValue(routes)!.Select(r => Prefix(r == "default" ? "0.0.0.0/0" : r, "--route"))],
                Policy = GatewayCommands.Policy(parse.GetValue(preset)!, parse.GetValue(policyFile)),
                MaxFlowsPerSession = parse.GetValue(maxFlows),
                MaxPacketsPerSecond = parse.GetValue(maxPps),
                MaxSessions = parse.GetValue(maxSessions),
                Mtu = parse.GetValue(mtu),
                Keepalive = TimeSpan.FromSeconds(parse.GetValue(keepalive)),
                ResumeGrace = TimeSpan.FromSeconds(parse.GetValue(grace)),
                AllowClientAddresses = parse.GetValue(clientAddresses),
                Offloads = !parse.GetValue(noOffload),
            };
            if (options.Validate() is { } problem)
            {
                throw new CliException(problem);
            }

            var endpoints = parse.GetValue(listen)!.Select(l => CliFlags.EndPoint(l, 8080, "--listen")).ToList();
            var certificate = StunCommands.LoadCertificate(parse.GetValue(cert), parse.GetValue(key));
            var control = ControlPath(parse.GetValue(name)!);
            await using var host = await TunnelServerHost.StartAsync(options, parse.GetValue(tun)!, endpoints, certificate,
                control, parse.GetValue(noOffload) ? TunOffloads.None : TunOffloads.All, tuning.Read(parse), ct);
            Console.WriteLine($"natkit tunnel: serving {string.Join(", ", host.Urls)}; pool {options.Pool} (gateway {host.Server.Gateway}); NAT onto {host.Outside.Name} as {string.Join(",", options.ExternalAddresses)}; control {control}");
            await CliServing.UntilStoppedAsync(Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, reload: null, ct);
            var atStop = host.Server.Stats.Connected;
            var draining = host.Server.DrainAsync(drain); // refuses new sessions from its first step: before it says so
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"natkit tunnel: draining: {atStop} session(s) may run up to {drain.TotalSeconds:0.###} s; new sessions are refused"));
            var left = await draining;
            await host.StopAsync(TimeSpan.FromSeconds(1)); // a goodbye to each session left, then the endpoint
            var s = host.Server.Stats;
            Console.WriteLine($"natkit tunnel: stopped; {left} session(s) cut, {Math.Max(0, atStop - left)} ended by their clients while draining; " +
                              $"{s.Accepted} sessions accepted, {s.Refused} refused ({s.Unauthorized} wrong tokens), {s.Spoofed} spoofed packets dropped");
            return 0;
        });
        return serve;
    }

    private static Command Connect()
    {
        var url = new Argument<string>("URL") { Description = "The server's (or a relay's) ws:// or wss:// URL." };
        var token = new Option<string?>("--token") { Description = "The token the server expects." };
        var tokenFile = new Option<FileInfo?>("--token-file") { Description = "A file whose first line is the token." };
        var tun = new Option<string>("--tun") { Description = "The TUN device to create.", DefaultValueFactory = _ => "natkit0" };
        var routes = new Option<string[]?>("--route") { Description = "A route through the tunnel (PREFIX, or 'default': the server stays reachable the old way); repeat; none given: every route the server offers.", AllowMultipleArgumentsPerToken = true };
        var address = new Option<string?>("--address") { Description = "The inner address to keep (the server must allow client addresses)." };
        var insecure = new Option<bool>("--insecure") { Description = "Accept any server certificate (a test server's self-signed one)." };
        var noOffload = new Option<bool>("--no-offload") { Description = "No virtio-net offloads on the TUN device or the link." };
        var browser = new Option<string?>("--browser-listen") { Description = "ADDRESS:PORT: reach the server through a browser on the LAN instead of dialing it; open the relay page there with ?client=ws://ADDRESS:PORT/tunnel." };
        var connect = new Command("connect", "Carry this machine's packets through a tunnel server, reconnecting with backoff, until SIGINT/SIGTERM.")
        {
            url, token, tokenFile, tun, routes, address, insecure, noOffload, browser,
        };
        connect.SetAction(async (parse, ct) =>
        {
            if (!TunnelUri.TryParse(parse.GetValue(url), out var uri, out var error))
            {
                throw new CliException("URL: " + error);
            }

            var secret = parse.GetValue(token);
            if (parse.GetValue(tokenFile) is { } file)
            {
                secret = file.Exists ? File.ReadLines(file.FullName).FirstOrDefault()?.Trim() : throw new CliException($"--token-file {file.FullName}: no such file");
            }

            if (string.IsNullOrEmpty(secret))
            {
                throw new CliException("--token or --token-file: the server needs a token");
            }

            var requested = Ipv4Address.Any;
            if (parse.GetValue(address) is { } a && !Ipv4Address.TryParse(a, out requested))
            {
                throw new CliException($"--address {a}: not an IPv4 address");
            }

            await using var hop = parse.GetValue(browser) is { } b
                ? await BrowserHop.StartAsync([CliFlags.EndPoint(b, 8082, "--browser-listen")], ct)
                : null;
            if (hop is not null)
            {
                var page = new UriBuilder(uri.Secure ? "https" : "http", uri.Host, uri.Port, "/relay.html").Uri;
                Console.WriteLine($"natkit tunnel: waiting for the browser relay page: open {page}?client={Uri.EscapeDataString(hop.Urls[0])} in a browser on the LAN");
            }

            var options = new TunnelClientOptions
            {
                Browser = hop,
                Server = uri,
                Token = secret,
                TunName = parse.GetValue(tun)!,
                RequestedAddress = requested,
                Routes = parse.GetValue(routes) is { Length: > 0 } r ? [.. r.Select(x => Prefix(x == "default" ? "0.0.0.0/0" : x, "--route"))] : null,
                Offloads = !parse.GetValue(noOffload),
                Insecure = parse.GetValue(insecure),
            };
            TunnelClient? client = null;
            await using var owned = client = new TunnelClient(options)
            {
                Connected = w => Console.WriteLine($"natkit tunnel: connected (#{client!.Connections}) to {uri} as {w.AddressWithPrefix} via {w.Gateway}, MTU {w.Mtu}, offloads {w.Features}, session {w.SessionId:N}"),
                Disconnected = reason => Console.WriteLine($"natkit tunnel: disconnected ({reason}); reconnecting"),
            };
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
            var running = client.RunAsync(stop.Token);
            await Task.WhenAny(running, CliRunner.UntilStoppedAsync(stop.Token));
            await stop.CancelAsync();
            try
            {
                await running;
            }
            catch (TunnelRefusedException e)
            {
                throw new CliException(e.Message);
            }

            Console.WriteLine($"natkit tunnel: stopped after {client.Connections} connection(s)");
            return 0;
        });
        return connect;
    }

    private static Command Relay()
    {
        var listen = new Option<string[]>("--listen") { Description = "ADDRESS[:PORT] to accept clients on (port 8081 when absent); repeat for more.", DefaultValueFactory = _ => ["127.0.0.1:8081"], AllowMultipleArgumentsPerToken = true };
        var upstream = new Option<string>("--upstream") { Description = "The server's (or the next relay's) ws:// or wss:// URL.", Required = true };
        var insecure = new Option<bool>("--insecure") { Description = "Accept any certificate from the upstream." };
        var maxClients = new Option<int>("--max-clients") { Description = "Most clients relayed at once.", DefaultValueFactory = _ => 1024 };
        var cert = new Option<string?>("--tls-cert") { Description = "TLS certificate (PKCS#12, or PEM with --tls-key): accept wss://." };
        var key = new Option<string?>("--tls-key") { Description = "PEM private key for --tls-cert." };
        var relay = new Command("relay", "The LAN hop: a new WebSocket to the server for each client (and /relay.html for a browser), until SIGINT/SIGTERM.")
        {
            listen, upstream, insecure, maxClients, cert, key,
        };
        relay.SetAction(async (parse, ct) =>
        {
            if (!TunnelUri.TryParse(parse.GetValue(upstream), out var uri, out var error))
            {
                throw new CliException("--upstream: " + error);
            }

            if (parse.GetValue(maxClients) < 1)
            {
                throw new CliException("--max-clients: must be at least 1");
            }

            var hop = new TunnelRelay(uri, parse.GetValue(insecure), parse.GetValue(maxClients));
            var endpoints = parse.GetValue(listen)!.Select(l => CliFlags.EndPoint(l, 8081, "--listen")).ToList();
            var certificate = StunCommands.LoadCertificate(parse.GetValue(cert), parse.GetValue(key));
            await using var endpoint = await TunnelEndpoint.StartAsync(hop.ServeAsync, TimeSpan.FromSeconds(10), endpoints, certificate, cancellationToken: ct);
            Console.WriteLine($"natkit tunnel: relaying {string.Join(", ", endpoint.Urls)} -> {uri}");
            await CliRunner.UntilStoppedAsync(ct);
            var s = hop.Stats;
            Console.WriteLine($"natkit tunnel: relay stopped; {s.Accepted} clients, {s.UpstreamFailures} upstream failures");
            return 0;
        });
        return relay;
    }

    private static Ipv4Prefix Prefix(string text, string option) =>
        Ipv4Prefix.TryParse(text, out var p) ? p : throw new CliException($"{option} {text}: not an IPv4 prefix (a.b.c.d/n)");
}
