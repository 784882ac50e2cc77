using System.CommandLine;
using System.Globalization;
using System.Net.Http.Json;
using System.Net.Sockets;
using NatKit.Tunnel.Server;
using Spectre.Console;

namespace NatKit.Cli.Commands;

/// <summary>`natkit tunnel sessions|flows`: a running server's tables, read from its control socket.</summary>
internal sealed partial class TunnelCommands
{
    private static Command Sessions()
    {
        var name = new Option<string>("--name") { Description = "The server's name (control socket /run/natkit/NAME.tunnel.sock).", DefaultValueFactory = _ => "tunnel" };
        var json = new Option<bool>("--json") { Description = "Print JSON instead of a table." };
        var sessions = new Command("sessions", "List a running tunnel server's sessions.") { name, json };
        sessions.SetAction(async (parse, ct) =>
        {
            var list = await GetAsync<List<TunnelSessionInfo>>(parse.GetValue(name)!, "/sessions", ct);
            if (parse.GetValue(json))
            {
                CliJson.WriteRecords(list, s => s.Id.ToString("N"));
                return 0;
            }

            var table = new Table().AddColumns("session", "inside", "client address", "from", "in pkts/bytes", "out pkts/bytes", "spoofed", "reconnects");
            foreach (var s in list)
            {
                table.AddTextRow(s.Id.ToString("N")[..8], s.InsideAddress, s.ClientAddress, s.Remote ?? "-",
                    $"{s.PacketsIn}/{s.BytesIn}", $"{s.PacketsOut}/{s.BytesOut}",
                    s.Spoofed.ToString(CultureInfo.InvariantCulture), s.Reconnects.ToString(CultureInfo.InvariantCulture));
            }

            table.Caption($"{list.Count} session(s)");
            AnsiConsole.Write(table);
            return 0;
        });
        return sessions;
    }

    private static Command Flows()
    {
        var name = new Option<string>("--name") { Description = "The server's name.", DefaultValueFactory = _ => "tunnel" };
        var json = new Option<bool>("--json") { Description = "Print JSON instead of a table." };
        var flows = new Command("flows", "List a running tunnel server's NAT flows, with their sessions.") { name, json };
        flows.SetAction(async (parse, ct) =>
        {
            var list = await GetAsync<List<TunnelFlowInfo>>(parse.GetValue(name)!, "/flows", ct);
            if (parse.GetValue(json))
            {
                CliJson.WriteRecords(list, f => $"{f.Protocol} {f.Inside} {f.Remote}");
                return 0;
            }

            var table = new Table().AddColumns("session", "proto", "inside", "outside", "remote", "tcp", "expires");
            foreach (var f in list)
            {
                table.AddTextRow(f.Session, f.Protocol, f.Inside, f.Outside, f.Remote, f.Protocol == "tcp" ? f.TcpState : "",
                    (f.ExpiresInMilliseconds / 1000.0).ToString("0.0", CultureInfo.InvariantCulture) + "s");
            }

            table.Caption($"{list.Count} flow(s)");
            AnsiConsole.Write(table);
            return 0;
        });
        return flows;
    }

    private static async Task<T> GetAsync<T>(string name, string path, CancellationToken ct)
    {
        var socket = ControlPath(name);
        if (!File.Exists(socket))
        {
            throw new CliException($"--name {name}: no tunnel server of that name runs here ({socket} is missing)");
        }

        using var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, token) =>
            {
                var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                await s.ConnectAsync(new UnixDomainSocketEndPoint(socket), token);
                return new NetworkStream(s, ownsSocket: true);
            },
        };
        using var http = new HttpClient(handler);
        try
        {
            return await http.GetFromJsonAsync<T>(new Uri("http://natkit" + path), ct)
                   ?? throw new CliException($"{socket} answered nothing");
        }
        catch (HttpRequestException e)
        {
            throw new CliException($"--name {name}: {socket}: {e.Message}");
        }
    }
}
