using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using NatKit.Net;
using NatKit.Traversal;
using NatKit.Traversal.Peer;
using NatKit.Traversal.Rendezvous;

namespace NatKit.Cli.Commands;

/// <summary>`natkit peer run`: a node from its config, with the servers' operator flags (which win over the config's
/// keys of the same names), SIGHUP reload of what can change live, and a drain on SIGINT/SIGTERM.</summary>
internal sealed partial class PeerCommands
{
    private static Command Run()
    {
        var config = new Option<string>("--config")
        {
            Description = "The node's YAML or JSON config: key, name, listen, rendezvous, stun, turn, peers, expose, forward, " +
                          "known-peers-only, control, and log-level, log-format, metrics-listen, drain-timeout as the flags " +
                          "(docs/peer.md has an example). SIGHUP re-reads its peers, expose and forward.",
            Required = true,
        };
        var listen = new Option<string?>("--listen")
        {
            Description = "The node's UDP ADDRESS:PORT for uTP and the traversal (wins over the config's listen; port 0: any).",
        };
        var cmd = new Command("run", "Run a node from its config until SIGINT/SIGTERM (open pipes may finish within " +
                                     "--drain-timeout): prints its node id and public endpoint once ready.")
        {
            config, listen,
        };
        var (logging, metrics, serving) = ServerFlags.AddTo(cmd);
        cmd.SetAction(async (parse, ct) =>
        {
            var file = parse.GetValue(config)!;
            PeerConfig Read() => parse.GetValue(listen) is { } l
                ? ReadConfig(file) with { Listen = CliFlags.EndPoint(l, PeerNetworkOptions.DefaultListen.Port, "--listen") }
                : ReadConfig(file);
            string? Flag(Option option, PeerConfig settings) => FlagOrKey(parse, option, settings);

            var settings = Read();
            var drain = FromKey(parse, serving.DrainTimeout, settings, file, text => text is null ? serving.Drain(parse) : DrainTime(text));
            using var loggers = FromKey(parse, logging.Level, settings, file,
                level => FromKey(parse, logging.Format, settings, file,
                    format => CliLogging.Create(level ?? parse.GetValue(logging.Level)!, format ?? parse.GetValue(logging.Format)!)));
            using var identity = LoadKey(settings, file);
            var options = ToOptions(settings, file);
            var log = loggers.CreateLogger("natkit.peer");
            var peers = new PeerTable(settings.Peers);
            var host = peers.CreateHost(identity, settings.Name, log);
            await using var prometheus = await FromKey(parse, metrics.Listen, settings, file,
                text => CliMetrics.StartAsync(text, ct));
            await using var node = new PeerNetwork(SystemNetwork.Instance, host, options);
            try
            {
                await node.StartAsync(ct);
            }
            catch (Exception e) when (e is RendezvousException or TraversalException)
            {
                CliOutput.Error($"--config {file}: the node could not start: {Sentence(e.Message)}");
                return 1;
            }
            catch (IOException e)
            {
                throw new CliException($"--config {file}: the node could not start: {Sentence(e.Message)}");
            }

            ControlSocket control;
            try
            {
                control = ControlSocket.Listen(settings.ControlPath(Environment), (command, _) => Task.FromResult(command == "status"
                    ? PeerStatusReport.ToJson(PeerStatusReport.From(node.Status(), host.GetKnownNodes()))
                    : JsonSerializer.Serialize(new { error = $"unknown command '{command}'; the one command is status" })));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new CliException($"--config {file}: control: {Sentence(e.Message)}");
            }

            await using var listening = control;
            if (prometheus is not null)
            {
                Console.WriteLine($"metrics: http://{prometheus.EndPoint}/metrics");
            }

            var forwards = ForwardList(node, host);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"natkit peer: node {node.Id} ({settings.Name}) ready; udp {node.LocalEndPoint}, public {node.GetPublicEndPoint()?.ToString() ?? "unknown"}, " +
                $"nat {node.Traversal?.Profile}, relay {node.Traversal?.Relay?.RelayedEndPoint?.ToString() ?? "none"}; " +
                $"forward {(forwards.Length == 0 ? "none" : forwards)}; expose {(node.Exposed.Count == 0 ? "none" : string.Join(", ", node.Exposed.Select(e => $"{e.Name} -> {e.Target}")))}; " +
                $"control {control.Path}"));

            // SIGHUP: the config file again; what can change live is applied, the rest refused in one logged sentence
            var running = settings;
            Option[] restartOnly = [logging.Level, logging.Format, metrics.Listen, serving.DrainTimeout];
            await CliServing.UntilStoppedAsync(log, _ =>
            {
                var next = Read();
                var fixedKeys = FixedKeysChanged(running, next);
                fixedKeys.AddRange(restartOnly.Where(o => Flag(o, running) != Flag(o, next)).Select(o => o.Name[2..]));
                if (fixedKeys.Count > 0)
                {
                    throw new CliException($"--config {file}: {string.Join(", ", fixedKeys)} cannot change while the node runs; restart it for that.");
                }

                Reload(node, peers, host, next, ToOptions(next, file), file, log);
                running = next;
            }, ct);

            // SIGINT/SIGTERM: no new pipe (forwarded ports closed, peers' requests refused), the open ones may finish
            var open = node.Pipes.Count;
            var draining = node.DrainAsync(drain);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"natkit peer: draining: {open} pipe(s) may finish within {drain.TotalSeconds:0.###} s"));
            var cut = await draining;
            await node.StopAsync();
            Console.WriteLine($"natkit peer: stopped; {cut} pipe(s) cut, {Math.Max(0, open - cut)} finished while draining");
            return 0;
        });
        return cmd;
    }

    private static PeerNetworkOptions ToOptions(PeerConfig settings, string file)
    {
        try
        {
            return settings.ToOptions(Environment).Validate();
        }
        catch (Exception e) when (e is PeerConfigException or ArgumentException)
        {
            throw new CliException($"--config {file}: {Sentence(e.Message)}");
        }
    }

    /// <summary>The node's settings that need a restart, named by their keys where <paramref name="next"/> differs.</summary>
    private static List<string> FixedKeysChanged(PeerConfig running, PeerConfig next)
    {
        var changed = new List<string>();
        void Check(bool same, string key)
        {
            if (!same)
            {
                changed.Add(key);
            }
        }

        Check(running.Key == next.Key, "key");
        Check(running.Name == next.Name, "name");
        Check(running.Listen.Equals(next.Listen), "listen");
        Check(running.Rendezvous.Equals(next.Rendezvous), "rendezvous");
        Check(running.Stun.SequenceEqual(next.Stun), "stun");
        Check(running.Turn == next.Turn, "turn");
        Check(running.KnownPeersOnly == next.KnownPeersOnly, "known-peers-only");
        Check(running.ControlPath(Environment) == next.ControlPath(Environment), "control");
        return changed;
    }

    /// <summary>Applies a re-read config to the running node: its services and forwards first (all or nothing), then
    /// its known peers (a peer no longer listed, or listed with a new key, loses its pipes and links).</summary>
    private static void Reload(PeerNetwork node, PeerTable peers, PeerNetworkHost host, PeerConfig next,
        PeerNetworkOptions options, string file, ILogger log)
    {
        PeerNetworkChanges changes;
        try
        {
            // a signal handler's thread: blocking it does not hold up the node
            changes = node.ReconfigureAsync(options.Expose, options.Forward).GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is NetworkException or ArgumentException or ObjectDisposedException)
        {
            throw new CliException($"--config {file}: {Sentence(e.Message).TrimEnd('.')}; nothing was changed.");
        }

        var removed = peers.Replace(next.Peers);
        var cut = 0;
        foreach (var id in removed)
        {
            cut += node.DisconnectAsync(id).GetAwaiter().GetResult();
        }

        log.LogInformation(
            "reloaded: {Peers} peer(s), {Removed} removed ({Cut} of their pipe(s) closed); {Exposed} exposed service(s); " +
            "forwards {Opened} opened, {Closed} closed, {Changed} changed, {Kept} kept; {PipesClosed} pipe(s) closed by the change; " +
            "forward {Forwards}",
            next.Peers.Count, removed.Count, cut, options.Expose.Count, changes.ForwardsOpened, changes.ForwardsClosed,
            changes.ForwardsChanged, changes.ForwardsKept, changes.PipesClosed, ForwardList(node, host) is { Length: > 0 } f ? f : "none");
    }

    /// <summary>The forwarded ports as the banner and the reload log show them: LISTEN -> PEER/SERVICE, ...</summary>
    private static string ForwardList(PeerNetwork node, PeerNetworkHost host) => string.Join(", ", node.Forwards.Select(f =>
        $"{f.Listen} -> {host.GetPeer(f.Peer)?.Name ?? f.Peer.ToShortString()}/{f.Service}"));

    /// <summary>A flag's value when the command line gives it, else the config's key of the same name, else null.</summary>
    private static string? FlagOrKey(ParseResult parse, Option option, PeerConfig settings) =>
        parse.GetResult(option) is OptionResult { Implicit: false, Tokens.Count: > 0 } given
            ? given.Tokens[0].Value
            : settings.ProgramKeys.GetValueOrDefault(option.Name[2..]);

    /// <summary>Reads <see cref="FlagOrKey"/>'s text; a mistake in a value from the config names the file and the key.</summary>
    private static T FromKey<T>(ParseResult parse, Option option, PeerConfig settings, string file, Func<string?, T> read)
    {
        var fromFile = parse.GetResult(option) is not OptionResult { Implicit: false };
        try
        {
            return read(FlagOrKey(parse, option, settings));
        }
        catch (CliException e) when (fromFile && e.Message.StartsWith(option.Name, StringComparison.Ordinal))
        {
            throw new CliException($"--config {file}: {e.Message[2..]}");
        }
    }

    private static TimeSpan DrainTime(string text) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) ? CliServing.Drain(seconds)
        : throw new CliException($"--drain-timeout {text}: expected a number of seconds (0: stop at once).");
}
