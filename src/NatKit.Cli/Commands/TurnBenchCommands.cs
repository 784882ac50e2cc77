using System.CommandLine;
using System.Globalization;
using NatKit.Bench.Turn;
using NatKit.Net;
using NatKit.Turn.Client;
using NatKit.Turn.Load;
using Spectre.Console;

namespace NatKit.Cli.Commands;

/// <summary>`natkit bench turn SERVER`: ChannelData relayed between pairs of allocations; packets/s and loss.
/// scripts/bench-turn-vs-coturn runs it against NatKit's server and coturn's side by side.</summary>
internal sealed class TurnBenchCommands : IVerbGroup
{
    public string? Parent => "bench";

    public Command Create()
    {
        var cmd = new Command("turn", "Relay ChannelData between pairs of allocations on a TURN server: packets/s and loss.");
        var server = new Argument<string>("server") { Description = "SERVER[:PORT] (port 3478 by default)." };
        var user = new Option<string>("--user") { Description = "NAME:PASSWORD.", DefaultValueFactory = _ => "bench:bench" };
        var pairs = new Option<int>("--pairs") { Description = "Pairs of allocations (each sends to the other's relayed address).", DefaultValueFactory = _ => 16 };
        var duration = new Option<double>("--duration") { Description = "Seconds to send.", DefaultValueFactory = _ => 10 };
        var size = new Option<int>("--size") { Description = "Payload bytes per packet.", DefaultValueFactory = _ => 160 };
        var window = new Option<int>("--window") { Description = "Packets in flight per sender.", DefaultValueFactory = _ => 16 };
        var tcp = new Option<bool>("--tcp") { Description = "Talk to the server over TCP instead of UDP." };
        var json = new Option<bool>("--json") { Description = "One JSON array of named records (the one --json shape) instead of a table." };
        var label = new Option<string?>("--label") { Description = "Name for this run in the output (e.g. natkit, coturn)." };
        var hold = new Option<int>("--hold")
        {
            Description = "Instead of relaying: make this many allocations, hold them, and report the server's memory per allocation (needs --server-pid).",
        };
        var serverPid = new Option<int>("--server-pid") { Description = "The server's process id, to read its resident memory (Linux /proc)." };
        cmd.Arguments.Add(server);
        foreach (var o in new Option[] { user, pairs, duration, size, window, tcp, json, label, hold, serverPid })
        {
            cmd.Options.Add(o);
        }

        cmd.SetAction(async (parse, ct) =>
        {
            var endpoint = await StunCommands.ResolveLoadTargetAsync(parse.GetValue(server)!, ct);

            var (username, password) = StunCommands.ParseUser(parse.GetValue(user)!);
            var client = new TurnClientOptions(endpoint, username, password)
            {
                Transport = parse.GetValue(tcp) ? TurnTransport.Tcp : TurnTransport.Udp,
                InitialRto = TimeSpan.FromMilliseconds(250),
            };
            var options = new TurnLoadOptions
            {
                Pairs = parse.GetValue(pairs),
                Duration = TimeSpan.FromSeconds(parse.GetValue(duration)),
                PayloadSize = parse.GetValue(size),
                Window = parse.GetValue(window),
            };
            try
            {
                options.Validate();
            }
            catch (ArgumentException e)
            {
                throw new CliException(e.Message);
            }

            var name = parse.GetValue(label) ?? endpoint.ToString();
            var inv = CultureInfo.InvariantCulture;
            if (parse.GetValue(hold) > 0)
            {
                await HoldAsync(client, options, parse.GetValue(hold), parse.GetValue(serverPid), name, parse.GetValue(json), ct);
                return 0;
            }

            TurnLoadResult result;
            try
            {
                result = await new TurnLoadGenerator(SystemNetwork.Instance, client, options).RunAsync(null, ct);
            }
            catch (TurnException e)
            {
                throw new CliException($"{endpoint}: {e.Message}");
            }

            if (parse.GetValue(json))
            {
                CliJson.WriteRecords([BenchJson.Record(name, new
                {
                    pairs = options.Pairs, sent = result.Sent, received = result.Received, lost = result.Lost,
                    lossPercent = Math.Round(result.LossPercent, 3), seconds = Math.Round(result.Elapsed.TotalSeconds, 3),
                    packetsPerSecond = Math.Round(result.ReceivedPerSecond),
                })]);
            }
            else
            {
                var table = new Table().AddColumns("server", "pairs", "sent", "received", "lost", "loss %", "relayed packets/s");
                table.AddTextRow(name, options.Pairs.ToString(inv), result.Sent.ToString(inv), result.Received.ToString(inv),
                    result.Lost.ToString(inv), result.LossPercent.ToString("0.###", inv), result.ReceivedPerSecond.ToString("0", inv));
                AnsiConsole.Write(table);
            }

            return 0;
        });
        return cmd;
    }

    private static async Task HoldAsync(TurnClientOptions client, TurnLoadOptions options, int count, int pid,
        string name, bool json, CancellationToken ct)
    {
        if (pid <= 0)
        {
            throw new CliException("--hold needs --server-pid PID to read the server's memory.");
        }

        TurnMemoryResult r;
        try
        {
            r = await TurnMemoryBenchmark.HoldAsync(client, options, count, pid, ct);
        }
        catch (TurnException e)
        {
            throw new CliException($"allocating: {e.Message}");
        }
        catch (IOException e)
        {
            throw new CliException($"--server-pid {pid}: {e.Message}");
        }

        var inv = CultureInfo.InvariantCulture;
        if (json)
        {
            CliJson.WriteRecords([BenchJson.Record(name, new
            {
                allocations = r.Allocations, rssBeforeBytes = r.ResidentBefore, rssAfterBytes = r.ResidentAfter,
                bytesPerAllocation = Math.Round(r.BytesPerAllocation),
            })]);
        }
        else
        {
            var table = new Table().AddColumns("server", "allocations held", "RSS before", "RSS after", "bytes per allocation");
            table.AddTextRow(name, r.Allocations.ToString(inv), r.ResidentBefore.ToString(inv), r.ResidentAfter.ToString(inv),
                r.BytesPerAllocation.ToString("0", inv));
            AnsiConsole.Write(table);
        }
    }
}
