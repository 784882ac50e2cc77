using System.Net;
using System.Text;
using NatKit.Lab;
using NatKit.Net;

namespace NatKit.Scenarios.Reachability;

/// <summary>One sender/receiver-address pair of a <see cref="UdpReachability"/> run.</summary>
/// <param name="From">The sending host.</param>
/// <param name="To">The receiving host.</param>
/// <param name="ToAddress">The address the sender aimed at.</param>
/// <param name="Sent">Datagrams sent.</param>
/// <param name="Received">Datagrams that arrived.</param>
/// <param name="SeenAs">The source the receiver saw (the sender's address after every NAT on the way), or null.</param>
/// <param name="Echoed">Echoes that made it back to the sender.</param>
public sealed record ReachabilityCell(string From, string To, IPAddress ToAddress, int Sent, int Received,
    IPEndPoint? SeenAs, int Echoed);

/// <summary>
/// `natkit lab run`'s scenario: every host binds a UDP port and sends a few datagrams to every address of every
/// other host; each receiver echoes what it gets. The result says what got through, how the receiver saw the
/// sender (its address after the NATs on the way) and whether the echo found its way back.
/// </summary>
public static class UdpReachability
{
    public static IReadOnlyList<ReachabilityCell> Run(VirtualNetwork lab, int port = 5000, int rounds = 3,
        TimeSpan? interval = null)
    {
        ArgumentNullException.ThrowIfNull(lab);
        var gap = interval ?? TimeSpan.FromMilliseconds(200);
        var hosts = lab.Hosts;
        var cells = new Dictionary<(string From, string To, IPAddress Address), Counts>();
        return lab.Run(async () =>
        {
            var sockets = new Dictionary<LabHost, IDatagramSocket>();
            foreach (var h in hosts)
            {
                sockets[h] = await h.BindUdpAsync(new IPEndPoint(IPAddress.Any, port));
            }

            var receivers = hosts.Select(h => ReceiveAsync(h, sockets[h])).ToList();
            for (var round = 0; round < rounds; round++)
            {
                foreach (var from in hosts)
                {
                    foreach (var to in hosts)
                    {
                        if (to == from) continue;
                        foreach (var address in to.LocalAddresses)
                        {
                            var c = Cell(from.Name, to.Name, address);
                            c.Sent++;
                            var message = Encoding.ASCII.GetBytes($"to {to.Name} {address} from {from.Name}");
                            await sockets[from].SendToAsync(message, new IPEndPoint(address, port));
                        }
                    }
                }

                await Task.Delay(gap, lab.TimeProvider);
            }

            await Task.WhenAll(receivers);
            foreach (var s in sockets.Values) s.Dispose();
            return (IReadOnlyList<ReachabilityCell>)cells
                .Select(kv => new ReachabilityCell(kv.Key.From, kv.Key.To, kv.Key.Address, kv.Value.Sent,
                    kv.Value.Received, kv.Value.SeenAs, kv.Value.Echoed))
                .OrderBy(c => c.From, StringComparer.Ordinal).ThenBy(c => c.To, StringComparer.Ordinal)
                .ToList();
        });

        Counts Cell(string from, string to, IPAddress address)
        {
            if (!cells.TryGetValue((from, to, address), out var c))
            {
                cells[(from, to, address)] = c = new Counts();
            }

            return c;
        }

        async Task ReceiveAsync(LabHost host, IDatagramSocket socket)
        {
            var buffer = new byte[2048];
            while (true)
            {
                using var idle = new CancellationTokenSource(gap * 5, lab.TimeProvider);
                ReceivedDatagram d;
                try
                {
                    d = await socket.ReceiveFromAsync(buffer, idle.Token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                var text = Encoding.ASCII.GetString(buffer, 0, d.Length).Split(' ');
                if (text.Length != 5 || !IPAddress.TryParse(text[2], out var address))
                {
                    continue;
                }

                var c = Cell(text[4], text[1], address);
                if (text[0] == "to")
                {
                    c.Received++;
                    c.SeenAs = d.RemoteEndPoint;
                    text[0] = "echo";
                    await socket.SendToAsync(Encoding.ASCII.GetBytes(string.Join(' ', text)), d.RemoteEndPoint);
                }
                else if (text[0] == "echo" && text[4] == host.Name)
                {
                    c.Echoed++;
                }
            }
        }
    }

    private sealed class Counts
    {
        public int Sent;
        public int Received;
        public IPEndPoint? SeenAs;
        public int Echoed;
    }
}
