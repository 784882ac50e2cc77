using System.CommandLine;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using NatKit.Net;
using NatKit.Stun.Client;
using NatKit.Stun.Discovery;
using NatKit.Stun.Server;
using Spectre.Console;

namespace NatKit.Cli.Commands;

/// <summary>`natkit stun probe`: NAT behaviour discovery against a server, and how a server named on the command line is found.</summary>
internal sealed partial class StunCommands
{
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
                LocalAddress = CliFlags.Address(parse.GetValue(local), "--local"),
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
            var addresses = await SystemNetwork.ResolveAsync(host, ct);
            var pick = addresses.FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork) ??
                       addresses.FirstOrDefault() ?? throw new CliException($"{host}: no address");
            return new IPEndPoint(pick, port);
        }
        catch (NetworkException e)
        {
            throw new CliException(e.Message);
        }
    }
}
