using System.CommandLine;
using System.Globalization;
using NatKit.Net;
using NatKit.Stun.Load;
using Spectre.Console;

namespace NatKit.Cli.Commands;

/// <summary>`natkit bench stun SERVER`: Binding requests from many sockets; requests/s and latency percentiles.
/// scripts/bench-stun-vs-coturn runs it against NatKit's server and coturn's side by side.</summary>
internal sealed class StunBenchCommands : IVerbGroup
{
    public string? Parent => "bench";

    public Command Create()
    {
        var cmd = new Command("stun", "Load a STUN server with Binding requests: requests/s and latency percentiles.");
        var server = new Argument<string>("server") { Description = "SERVER[:PORT] (port 3478 by default)." };
        var sockets = new Option<int>("--sockets")
        {
            Description = "UDP sockets, each with one request outstanding.",
            DefaultValueFactory = _ => 32,
        };
        var duration = new Option<double>("--duration")
        {
            Description = "Seconds to run.",
            DefaultValueFactory = _ => 10,
        };
        var requests = new Option<long>("--requests")
        {
            Description = "Stop after this many requests (0: no limit).",
        };
        var timeout = new Option<int>("--timeout")
        {
            Description = "Milliseconds before a request counts as lost.",
            DefaultValueFactory = _ => 1000,
        };
        var json = new Option<bool>("--json") { Description = "One JSON array of named records (the one --json shape) instead of a table." };
        var label = new Option<string?>("--label") { Description = "Name for this run in the output (e.g. natkit, coturn)." };
        cmd.Arguments.Add(server);
        foreach (var o in new Option[] { sockets, duration, requests, timeout, json, label })
        {
            cmd.Options.Add(o);
        }

        cmd.SetAction(async (parse, ct) =>
        {
            StunCommands.UseInlineCompletions();
            var endpoint = await StunCommands.ResolveLoadTargetAsync(parse.GetValue(server)!, ct);

            var options = new StunLoadOptions
            {
                Sockets = parse.GetValue(sockets),
                Duration = TimeSpan.FromSeconds(parse.GetValue(duration)),
                MaxRequests = parse.GetValue(requests),
                Timeout = TimeSpan.FromMilliseconds(parse.GetValue(timeout)),
            };
            try
            {
                options.Validate();
            }
            catch (ArgumentException e)
            {
                throw new CliException(e.Message);
            }

            var generator = new StunLoadGenerator(SystemNetwork.Instance, endpoint, options);
            var result = await generator.RunAsync(ct);
            var name = parse.GetValue(label) ?? endpoint.ToString();
            var inv = CultureInfo.InvariantCulture;
            if (parse.GetValue(json))
            {
                CliJson.WriteRecords([BenchJson.Record(name, new
                {
                    requests = result.Requests, responses = result.Responses, lost = result.Lost,
                    seconds = Math.Round(result.Elapsed.TotalSeconds, 3), responsesPerSecond = Math.Round(result.ResponsesPerSecond),
                    p50Us = Math.Round(result.P50.TotalMicroseconds), p90Us = Math.Round(result.P90.TotalMicroseconds),
                    p99Us = Math.Round(result.P99.TotalMicroseconds), maxUs = Math.Round(result.Max.TotalMicroseconds),
                })]);
            }
            else
            {
                var table = new Table().AddColumns("server", "requests", "responses", "lost", "responses/s", "p50", "p90",
                    "p99", "max");
                table.AddRow(Markup.Escape(name), result.Requests.ToString(inv), result.Responses.ToString(inv),
                    result.Lost.ToString(inv), result.ResponsesPerSecond.ToString("0", inv), Ms(result.P50),
                    Ms(result.P90), Ms(result.P99), Ms(result.Max));
                AnsiConsole.Write(table);
            }

            return result.Responses > 0 ? 0 : 1;
        });
        return cmd;
    }

    private static string Ms(TimeSpan t) => t.TotalMilliseconds.ToString("0.000", CultureInfo.InvariantCulture) + " ms";
}
