using System.CommandLine;
using System.Globalization;
using NatKit.Net;
using NatKit.Traversal.Redis;
using NatKit.Traversal.Rendezvous;
using Spectre.Console;

namespace NatKit.Cli.Commands;

/// <summary>`natkit rendezvous serve`: the rendezvous service (docs/rendezvous.md), loopback unless told otherwise.</summary>
internal sealed class RendezvousCommands : IVerbGroup
{
    public Command Create()
    {
        var rendezvous = new Command("rendezvous",
            "Rendezvous service: nodes register signed candidates, look each other up and start punching together.");
        rendezvous.Subcommands.Add(Serve());
        return rendezvous;
    }

    private static Command Serve()
    {
        var d = new RendezvousServerOptions();
        var cmd = new Command("serve", "Run a rendezvous service on one UDP port (it answers STUN Binding there too).");
        var listen = new Option<string>("--listen")
        {
            Description = "UDP ADDRESS[:PORT] to listen on.",
            DefaultValueFactory = _ => $"127.0.0.1:{RendezvousServerOptions.DefaultPort}",
        };
        var redis = new Option<string?>("--redis")
        {
            Description = "Share the registry with other instances through Redis: redis://[:PASSWORD@]HOST[:PORT][/DB].",
        };
        var maxRegistrations = Int("--max-registrations", "Registrations held at once.", d.MaxRegistrations);
        var perAddress = Int("--max-registrations-per-address", "Registrations from one IP address.",
            d.MaxRegistrationsPerAddress);
        var rate = Int("--rate-limit", "Requests per second from one IP address (beyond it: silence).",
            d.RequestsPerSecondPerAddress);
        var rateTable = Int("--rate-limit-table", "Source addresses the rate limiter tracks (a fixed table).",
            d.RateLimitTableSize);
        var minLifetime = Int("--min-lifetime", "Shortest registration lifetime granted, seconds.",
            (int)d.MinLifetime.TotalSeconds);
        var maxLifetime = Int("--max-lifetime", "Longest registration lifetime granted, seconds.",
            (int)d.MaxLifetime.TotalSeconds);
        var window = Int("--timestamp-window", "How far a signed timestamp may be from this clock, seconds.",
            (int)d.TimestampWindow.TotalSeconds);
        var maxPending = Int("--max-pending", "Connection attempts in progress at once.", d.MaxPendingConnections);
        var perNode = Int("--max-pending-per-node", "Connection attempts one node may have in progress.",
            d.MaxPendingConnectionsPerNode);
        var connectTimeout = Int("--connect-timeout", "Seconds a connection attempt may take from Connect to Start.",
            (int)d.ConnectTimeout.TotalSeconds);
        var software = new Option<string?>("--software")
        {
            Description = "SOFTWARE attribute in Binding responses (empty: none).",
            DefaultValueFactory = _ => d.Software,
        };
        var serving = new CliServing();
        foreach (var o in new Option[]
                 {
                     listen, redis, maxRegistrations, perAddress, rate, rateTable, minLifetime, maxLifetime, window,
                     maxPending, perNode, connectTimeout, software,
                 })
        {
            cmd.Options.Add(o);
        }

        serving.AddTo(cmd);
        cmd.SetAction(async (parse, ct) =>
        {
            var drain = serving.Drain(parse);
            var sw = parse.GetValue(software);
            var options = new RendezvousServerOptions
            {
                Listen = CliFlags.EndPoint(parse.GetValue(listen)!, RendezvousServerOptions.DefaultPort,
                    "--listen"),
                MaxRegistrations = parse.GetValue(maxRegistrations),
                MaxRegistrationsPerAddress = parse.GetValue(perAddress),
                RequestsPerSecondPerAddress = parse.GetValue(rate),
                RateLimitTableSize = parse.GetValue(rateTable),
                MinLifetime = Seconds(parse.GetValue(minLifetime), "--min-lifetime"),
                MaxLifetime = Seconds(parse.GetValue(maxLifetime), "--max-lifetime"),
                TimestampWindow = Seconds(parse.GetValue(window), "--timestamp-window"),
                MaxPendingConnections = parse.GetValue(maxPending),
                MaxPendingConnectionsPerNode = parse.GetValue(perNode),
                ConnectTimeout = Seconds(parse.GetValue(connectTimeout), "--connect-timeout"),
                Software = string.IsNullOrEmpty(sw) ? null : sw,
            };
            Validate(options, parse);

            var redisUrl = parse.GetValue(redis);
            await using var shared = redisUrl is null ? null : await ConnectRedisAsync(redisUrl, ct);
            await using var server = await RendezvousServer.StartAsync(SystemNetwork.Instance, options, shared,
                cancellationToken: ct);
            var table = new Table().AddColumns("setting", "value");
            table.AddRow("udp", Markup.Escape(server.LocalEndPoint.ToString()));
            table.AddRow("instance", Markup.Escape(server.Handler.Instance));
            table.AddRow("registry", redisUrl is null ? "in memory" : "shared through Redis");
            table.AddRow("registrations", $"{options.MaxRegistrations} ({options.MaxRegistrationsPerAddress} per address)");
            table.AddRow("lifetime", $"{options.MinLifetime.TotalSeconds:0}-{options.MaxLifetime.TotalSeconds:0} s");
            table.AddRow("rate limit", $"{options.RequestsPerSecondPerAddress}/s per address");
            table.AddRow("attempts", $"{options.MaxPendingConnections} ({options.MaxPendingConnectionsPerNode} per node), {options.ConnectTimeout.TotalSeconds:0} s each");
            AnsiConsole.Write(table);
            AnsiConsole.MarkupLine("Ctrl+C stops");
            await CliServing.UntilStoppedAsync(Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, reload: null, ct);
            var atStop = server.ConnectionAttempts;
            var draining = server.DrainAsync(drain); // refuses new attempts from its first step: before it says so
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"draining: {atStop} connection attempt(s) may finish within {drain.TotalSeconds:0.###} s; new ones are refused (508)"));
            var left = await draining;
            var m = server.Metrics;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"stopped: {left} attempt(s) cut, {Math.Max(0, atStop - left)} finished while draining; datagrams {m.Datagrams}, " +
                $"registrations {m.Registrations}, lookups {m.Lookups}, connects {m.Connects}, started {m.Started}, " +
                $"refused {m.Refusals}, rate-limited {m.RateLimited}"));
            return 0;
        });
        return cmd;
    }

    private static Option<int> Int(string name, string description, int defaultValue) =>
        new(name) { Description = description, DefaultValueFactory = _ => defaultValue };

    private static TimeSpan Seconds(int value, string flag) =>
        value is > 0 and <= 86400
            ? TimeSpan.FromSeconds(value)
            : throw new CliException($"{flag} {value}: must be 1 to 86400 seconds");

    /// <summary>The options' own validation, its field names turned into the flags that set them.</summary>
    private static void Validate(RendezvousServerOptions options, ParseResult parse)
    {
        try
        {
            options.Validate();
        }
        catch (ArgumentException e)
        {
            var flag = e.ParamName switch
            {
                nameof(RendezvousServerOptions.MaxRegistrations) => "--max-registrations",
                nameof(RendezvousServerOptions.MaxRegistrationsPerAddress) => "--max-registrations-per-address",
                nameof(RendezvousServerOptions.RequestsPerSecondPerAddress) => "--rate-limit",
                nameof(RendezvousServerOptions.RateLimitTableSize) => "--rate-limit-table",
                nameof(RendezvousServerOptions.MinLifetime) or nameof(RendezvousServerOptions.MaxLifetime) =>
                    "--min-lifetime/--max-lifetime",
                nameof(RendezvousServerOptions.TimestampWindow) => "--timestamp-window",
                nameof(RendezvousServerOptions.MaxPendingConnections) => "--max-pending",
                nameof(RendezvousServerOptions.MaxPendingConnectionsPerNode) => "--max-pending-per-node",
                nameof(RendezvousServerOptions.ConnectTimeout) => "--connect-timeout",
                _ => null,
            };
            if (flag is null)
            {
                throw;
            }

            // "Field: rule" becomes "--flag VALUE: rule".
            var colon = e.Message.IndexOf(": ", StringComparison.Ordinal);
            var rule = colon < 0 ? e.Message : e.Message[(colon + 2)..];
            var paren = rule.IndexOf(" (Parameter", StringComparison.Ordinal);
            rule = (paren < 0 ? rule : rule[..paren]).Replace("MinLifetime", "--min-lifetime", StringComparison.Ordinal);
            var value = flag.Contains('/', StringComparison.Ordinal)
                ? string.Create(CultureInfo.InvariantCulture,
                    $"{options.MinLifetime.TotalSeconds}/{options.MaxLifetime.TotalSeconds}")
                : parse.Tokens.SkipWhile(t => t.Value != flag).Skip(1).FirstOrDefault()?.Value;
            throw new CliException(value is null ? $"{flag}: {rule}" : $"{flag} {value}: {rule}");
        }
    }

    private static async Task<IRendezvousSharedRegistry> ConnectRedisAsync(string url, CancellationToken ct)
    {
        try
        {
            return await RedisRendezvousRegistry.ConnectAsync(url).WaitAsync(ct);
        }
        catch (Exception e) when (e is FormatException or IOException)
        {
            throw new CliException($"--redis {e.Message}");
        }
    }
}
