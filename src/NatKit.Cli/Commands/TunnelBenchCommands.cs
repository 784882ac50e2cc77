using System.CommandLine;
using System.Globalization;
using System.Net.WebSockets;
using NatKit.Packets;
using NatKit.Tunnel.Client;
using NatKit.Tunnel.Framing;
using NatKit.Tunnel.Transport;

namespace NatKit.Cli.Commands;

/// <summary>`natkit bench tunnel-sessions`: opens many tunnel sessions at a server and holds them, so the server's
/// memory per session can be read off its process (scripts/bench-tunnel-vs-openvpn does).</summary>
internal sealed class TunnelBenchCommands : IVerbGroup
{
    public string? Parent => "bench";

    public Command Create()
    {
        var url = new Argument<string>("URL") { Description = "The tunnel server's ws:// URL (yours: this opens many connections)." };
        var token = new Option<string>("--token") { Description = "The server's token.", Required = true };
        var sessions = new Option<int>("--sessions") { Description = "Sessions to open.", DefaultValueFactory = _ => 1000 };
        var parallel = new Option<int>("--parallel") { Description = "Handshakes in flight at once.", DefaultValueFactory = _ => 32 };
        var hold = new Option<int>("--hold") { Description = "Seconds to hold the sessions open once all are up.", DefaultValueFactory = _ => 5 };
        var command = new Command("tunnel-sessions", "Open many tunnel sessions at a server (hello and welcome each) and hold them.")
        {
            url, token, sessions, parallel, hold,
        };
        command.SetAction(async (parse, ct) =>
        {
            if (!TunnelUri.TryParse(parse.GetValue(url), out var uri, out var error))
            {
                throw new CliException("URL: " + error);
            }

            var count = parse.GetValue(sessions);
            if (count is < 1 or > 1_000_000 || parse.GetValue(parallel) < 1)
            {
                throw new CliException("--sessions must be 1-1000000 and --parallel at least 1");
            }

            var sockets = new WebSocket[count];
            var refused = 0;
            var started = TimeProvider.System.GetTimestamp();
            await Parallel.ForAsync(0, count, new ParallelOptions { MaxDegreeOfParallelism = parse.GetValue(parallel), CancellationToken = ct }, async (i, token2) =>
            {
                var socket = await TunnelSockets.ConnectAsync(uri, cancellationToken: token2);
                try
                {
                    _ = await TunnelClient.HandshakeAsync(socket, new TunnelHello(TunnelMessage.Version, TunnelFeatures.None,
                        Guid.Empty, Ipv4Address.Any, parse.GetValue(token)!), token2);
                    sockets[i] = socket;
                }
                catch (TunnelRefusedException)
                {
                    Interlocked.Increment(ref refused);
                    socket.Dispose();
                }
            });
            var elapsed = TimeProvider.System.GetElapsedTime(started);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"natkit bench tunnel-sessions: holding {count - refused} sessions ({refused} refused), opened in {elapsed.TotalSeconds:0.0} s"));
            await Task.Delay(TimeSpan.FromSeconds(parse.GetValue(hold)), ct);
            foreach (var s in sockets)
            {
                s?.Abort();
                s?.Dispose();
            }

            return refused == 0 ? 0 : 1;
        });
        return command;
    }
}
