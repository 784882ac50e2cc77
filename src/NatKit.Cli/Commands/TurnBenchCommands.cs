using System.CommandLine;
using System.Globalization;
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
        var json = new Option<bool>("--json") { Description = "One JSON line instead of a table." };
        var label = new Option<string?>("--label") { Description = "Name for this run in the output (e.g. natkit, coturn)." };
        cmd.Arguments.Add(server);
        foreach (var o in new Option[] { user, pairs, duration, size, window, tcp, json, label })
        {
            cmd.Options.Add(o);
        }

        cmd.SetAction(async (parse, ct) =>
        {
            var endpoint = await StunCommands.ResolveAsync(parse.GetValue(server)!, ct);
            if (!System.Net.IPAddress.IsLoopback(endpoint.Address))
            {
                AnsiConsole.MarkupLine("[yellow]note:[/] loading a non-loopback server: make sure it is yours.");
            }

            var credentials = parse.GetValue(user)!;
            var colon = credentials.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0)
            {
                throw new CliException($"--user {credentials}: expected NAME:PASSWORD");
            }

            var client = new TurnClientOptions(endpoint, credentials[..colon], credentials[(colon + 1)..])
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

            TurnLoadResult result;
            try
            {
                result = await new TurnLoadGenerator(SystemNetwork.Instance, client, options).RunAsync(null, ct);
            }
            catch (TurnException e)
            {
                throw new CliException($"{endpoint}: {e.Message}");
            }

            var name = parse.GetValue(label) ?? endpoint.ToString();
            var inv = CultureInfo.InvariantCulture;
            if (parse.GetValue(json))
            {
                Console.WriteLine(string.Create(inv,
                    $"{{\"label\":\"{name}\",\"pairs\":{options.Pairs},\"sent\":{result.Sent},\"received\":{result.Received},\"lost\":{result.Lost},\"lossPercent\":{result.LossPercent:0.###},\"seconds\":{result.Elapsed.TotalSeconds:0.###},\"packetsPerSecond\":{result.ReceivedPerSecond:0}}}"));
            }
            else
            {
                var table = new Table().AddColumns("server", "pairs", "sent", "received", "lost", "loss %", "relayed packets/s");
                table.AddRow(name, options.Pairs.ToString(inv), result.Sent.ToString(inv), result.Received.ToString(inv),
                    result.Lost.ToString(inv), result.LossPercent.ToString("0.###", inv), result.ReceivedPerSecond.ToString("0", inv));
                AnsiConsole.Write(table);
            }

            return 0;
        });
        return cmd;
    }
}
