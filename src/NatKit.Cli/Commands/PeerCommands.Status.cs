using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using NatKit.Net;
using NatKit.Traversal.Peer;
using Spectre.Console;

namespace NatKit.Cli.Commands;

/// <summary>`natkit peer status [--watch]`: asks a running node over its control socket and prints what it says.</summary>
internal sealed partial class PeerCommands
{
    private static Command Status()
    {
        var name = new Option<string>("--name")
        {
            Description = "The node's name (its config's name:), which names its control socket.",
            DefaultValueFactory = _ => PeerConfig.DefaultName,
        };
        var control = new Option<string?>("--control") { Description = "The node's control socket (its config's control:), instead of --name's." };
        var json = new Option<bool>("--json") { Description = "Print the status as a JSON array of named records (node, peer, pipe, forward, expose)." };
        var watch = new Option<bool>("--watch") { Description = "Ask again every --interval until Ctrl+C: redraws the tables on a terminal; with --json, one array per line each time." };
        var interval = new Option<double?>("--interval") { Description = "Seconds between two asks with --watch (default 1; 0.1 to 3600)." };
        var cmd = new Command("status", "Show a running node: its id, public endpoint, peers and their paths (direct or relay), pipes with bytes each way and age.")
        {
            name, control, json, watch, interval,
        };
        cmd.SetAction(async (parse, ct) =>
        {
            var every = parse.GetValue(interval);
            if (every is not null && !parse.GetValue(watch))
            {
                throw new CliException($"--interval {every.Value.ToString(CultureInfo.InvariantCulture)}: only with --watch.");
            }

            if (every is < 0.1 or > 3600 || (every is { } e && double.IsNaN(e)))
            {
                throw new CliException($"--interval {every.Value.ToString(CultureInfo.InvariantCulture)}: must be 0.1 to 3600 seconds.");
            }

            var flag = parse.GetValue(control) is null ? "--name" : "--control";
            var path = parse.GetValue(control) ?? PeerConfig.DefaultControlPath(parse.GetValue(name)!, Environment);
            async Task<IReadOnlyList<PeerStatusRecord>?> AskAsync()
            {
                string answer;
                try
                {
                    answer = await ControlSocket.AskAsync(path, "status", "`natkit peer run`", ct);
                }
                catch (IOException e)
                {
                    throw new CliException($"{flag} {(flag == "--name" ? parse.GetValue(name) : path)}: {Sentence(e.Message)}");
                }

                try
                {
                    return PeerStatusReport.FromJson(answer);
                }
                catch (JsonException)
                {
                    CliOutput.Error($"{path} answered something that is not a node's status: {answer.Trim()}");
                    return null;
                }
            }

            if (!parse.GetValue(watch))
            {
                if (await AskAsync() is not { } records)
                {
                    return 1;
                }

                if (parse.GetValue(json))
                {
                    Console.WriteLine(PeerStatusReport.ToJson(records));
                }
                else
                {
                    AnsiConsole.Write(Render(records));
                }

                return 0;
            }

            return await WatchAsync(AskAsync, parse.GetValue(json), TimeSpan.FromSeconds(every ?? 1), ct);
        });
        return cmd;
    }

    /// <summary>`status --watch`: asks every <paramref name="every"/> until Ctrl+C (exit 0). JSON: one array per line;
    /// a terminal: the tables redrawn in place; redirected: each snapshot after the last.</summary>
    private static async Task<int> WatchAsync(Func<Task<IReadOnlyList<PeerStatusRecord>?>> ask, bool json, TimeSpan every,
        CancellationToken ct)
    {
        try
        {
            if (json || Console.IsOutputRedirected)
            {
                while (true)
                {
                    if (await ask() is not { } records)
                    {
                        return 1;
                    }

                    if (json)
                    {
                        Console.WriteLine(PeerStatusReport.ToJson(records));
                    }
                    else
                    {
                        AnsiConsole.Write(Render(records));
                        Console.WriteLine();
                    }

                    Console.Out.Flush();
                    await Task.Delay(every, ct);
                }
            }

            var first = await ask();
            if (first is null)
            {
                return 1;
            }

            var failed = false;
            await AnsiConsole.Live(Render(first)).StartAsync(async live =>
            {
                while (true)
                {
                    await Task.Delay(every, ct);
                    if (await ask() is not { } records)
                    {
                        failed = true;
                        return;
                    }

                    live.UpdateTarget(Render(records));
                }
            });
            return failed ? 1 : 0;
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            return 0;
        }
    }

    private static Rows Render(IReadOnlyList<PeerStatusRecord> records)
    {
        var parts = new List<Spectre.Console.Rendering.IRenderable>();
        foreach (var n in records.OfType<PeerStatusNode>())
        {
            var table = new Table().AddColumns("node", "value");
            table.AddTextRow("id", n.Id);
            table.AddTextRow("name", n.Name);
            table.AddTextRow("udp", n.LocalEndPoint);
            table.AddTextRow("public", n.PublicEndPoint ?? "unknown");
            table.AddTextRow("nat", n.Nat);
            table.AddTextRow("relay", n.Relay ?? "none");
            parts.Add(table);
        }

        var peers = new Table().AddColumns("peer", "id", "known", "path", "method", "endpoint", "rtt ms");
        foreach (var p in records.OfType<PeerStatusPeer>())
        {
            peers.AddTextRow(p.Name ?? "", p.Id, p.Known ? "yes" : "no", p.Path ?? "not connected", p.Method ?? "",
                p.EndPoint ?? "", p.RttMilliseconds?.ToString("0.###", CultureInfo.InvariantCulture) ?? "");
        }

        parts.Add(peers);
        var pipes = new Table().AddColumns("pipe", "peer", "kind", "service", "path", "bytes to peer", "bytes from peer", "age s");
        foreach (var p in records.OfType<PeerStatusPipe>())
        {
            pipes.AddTextRow(p.Id.ToString(CultureInfo.InvariantCulture), p.PeerName ?? p.Peer, p.Kind, p.Service, p.Path,
                p.BytesToPeer.ToString("N0", CultureInfo.InvariantCulture), p.BytesFromPeer.ToString("N0", CultureInfo.InvariantCulture),
                p.AgeSeconds.ToString("0.0", CultureInfo.InvariantCulture));
        }

        pipes.Caption($"{records.OfType<PeerStatusPipe>().Count()} pipe(s)");
        parts.Add(pipes);
        foreach (var f in records.OfType<PeerStatusForward>())
        {
            parts.Add(new Text($"forward {f.Listen} -> {f.PeerName ?? f.Peer}/{f.Service}"));
        }

        foreach (var e in records.OfType<PeerStatusExposed>())
        {
            parts.Add(new Text($"expose {e.Name} -> {e.Target} ({(e.Peers is null ? "every peer let in" : string.Join(", ", e.Peers))})"));
        }

        return new Rows(parts);
    }
}
