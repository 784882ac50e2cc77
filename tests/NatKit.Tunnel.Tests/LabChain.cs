using System.Net;
using System.Text;
using NatKit.Lab;
using NatKit.Nat.Ports;
using NatKit.Packets;
using NatKit.Tunnel.Client;
using NatKit.Tunnel.Framing;
using NatKit.Tunnel.Relay;
using NatKit.Tunnel.Server;
using NatKit.Tunnel.Transport;

namespace NatKit.Tunnel.Tests;

/// <summary>A tunnel client's inside in the lab: a lab port (the gateway of a LAN whose hosts reach the world only
/// through the tunnel) and the lab's pump driver without a NAT between it and the link.</summary>
internal sealed class LabClientInside(VirtualNetwork lab, LabPort port) : ITunnelClientInside
{
    public LabPacketPumpDriver? Driver { get; private set; }

    public Task StartAsync(TunnelWelcome welcome, ISignalingPacketPort link, CancellationToken cancellationToken)
    {
        Driver = new LabPacketPumpDriver(lab, null, port, link);
        return Task.CompletedTask;
    }

    public Task MoveAsync(TunnelWelcome welcome, CancellationToken cancellationToken) => Task.CompletedTask;

    public ValueTask DisposeAsync()
    {
        Driver?.Stop();
        return ValueTask.CompletedTask;
    }
}

/// <summary>
/// The reference's whole chain in the in-memory lab (no root, virtual time): a web server on the lab's internet; the
/// tunnel server on the internet, its NAT engine between the sessions and a lab port that owns the external address
/// 198.51.100.1; a relay on a LAN behind a NAT router; and clients on that LAN, each with an inside LAN 10.1.1.0/24
/// whose only gateway is the client's lab port (the TUN device's part), so its app host at 10.1.1.2 reaches the world
/// only through client -> relay -> server. Every WebSocket is NatKit's handshake over lab TCP.
/// </summary>
internal sealed class LabChain
{
    public const string Token = "lab-token";
    public static readonly IPEndPoint WebHttp = new(IPAddress.Parse("203.0.113.10"), 80);
    public static readonly IPEndPoint WebUdp = new(IPAddress.Parse("203.0.113.10"), 5353);
    public static readonly Ipv4Address External = Ipv4Address.Parse("198.51.100.1");

    private readonly LabSegment _lan;
    private int _clients;

    public LabChain(int seed = 7)
    {
        Lab = new VirtualNetwork(seed);
        var internet = Lab.AddSegment("internet");
        _lan = Lab.AddSegment("lan", "192.168.60.0/24");
        Lab.AddRouter("lan-nat", Nat.NatPresets.RfcRecommended, _lan, "192.168.60.254", internet, "198.51.100.60");
        Web = Lab.AddHost("web", internet, "203.0.113.10");
        ServerHost = Lab.AddHost("server", internet, "203.0.113.1");
        ServerOutside = Lab.AddPort("server-outside", internet, gateway: false, External.ToString());
        RelayHost = Lab.AddHost("relay", _lan, "192.168.60.1");
        Server = new TunnelServer(new TunnelServerOptions
        {
            Tokens = [Token],
            Pool = Ipv4Prefix.Parse("10.99.0.0/24"),
            ExternalAddresses = [External],
            AllowClientAddresses = true,
        }, Lab.TimeProvider, Lab.Scheduler.SynchronizationContext);
        ServerDriver = new LabPacketPumpDriver(Lab, Server.Engine, Server.Inside, ServerOutside);
        Server.Start(ServerDriver, () => ServerDriver.Now);
    }

    public VirtualNetwork Lab { get; }

    public LabHost Web { get; }

    public LabHost ServerHost { get; }

    public LabPort ServerOutside { get; }

    public LabHost RelayHost { get; }

    public TunnelServer Server { get; }

    public LabPacketPumpDriver ServerDriver { get; }

    public TunnelRelay? Relay { get; private set; }

    public List<IAsyncDisposable> Owned { get; } = [];

    /// <summary>The server's and the relay's endpoints, the web server (HTTP bodies by path, a UDP echo).</summary>
    public async Task StartAsync()
    {
        Owned.Add(await TunnelStreamEndpoint.StartAsync(ServerHost, new IPEndPoint(ServerHost.Address, 8080), Server));
        Relay = new TunnelRelay(new TunnelUri(false, "203.0.113.1", 8080, "/tunnel"), dial: TunnelSockets.Over(RelayHost),
            time: Lab.TimeProvider);
        Owned.Add(await TunnelStreamEndpoint.StartAsync(RelayHost, new IPEndPoint(RelayHost.Address, 8081), Relay.ServeAsync,
            TimeSpan.FromSeconds(10)));
        var http = await Web.ListenTcpAsync(WebHttp);
        Owned.Add(http);
        _ = ServeHttpAsync(http);
        var udp = await Web.BindUdpAsync(WebUdp);
        _ = EchoUdpAsync(udp);
    }

    /// <summary>The body the web server sends for <paramref name="path"/>: seeded bytes, different per path.</summary>
    public static byte[] Body(string path)
    {
        var body = new byte[path == "/small" ? 100 : 100_000];
        new Random(path.GetHashCode(StringComparison.Ordinal) & 0x7FFFFFFF).NextBytes(body);
        return body;
    }

    private static async Task ServeHttpAsync(Net.IStreamListener listener)
    {
        while (true)
        {
            Net.IStreamConnection connection;
            try
            {
                connection = await listener.AcceptAsync();
            }
            catch (ObjectDisposedException)
            {
                return;
            }

            _ = ServeOneAsync(connection);
        }

        static async Task ServeOneAsync(Net.IStreamConnection connection)
        {
            await using (connection)
            {
                var head = await WebSocketHandshake.ReadRequestAsync(connection.Stream);
                if (head is not null)
                {
                    await WebSocketHandshake.RespondAsync(connection.Stream, 200, "OK", "application/octet-stream", Body(head.Path));
                }
            }
        }
    }

    /// <summary>Echoes each datagram with the source it came from in front (what the internet saw).</summary>
    private static async Task EchoUdpAsync(Net.IDatagramSocket socket)
    {
        var buffer = new byte[2048];
        while (true)
        {
            var r = await socket.ReceiveFromAsync(buffer);
            var answer = Encoding.ASCII.GetBytes(r.RemoteEndPoint + " ").Concat(buffer[..r.Length]).ToArray();
            await socket.SendToAsync(answer, r.RemoteEndPoint);
        }
    }

    /// <summary>A client on the LAN: its machine dials the relay, its inside LAN 10.1.1.0/24 has the client's lab port
    /// as gateway at 10.1.1.1, and an app host at 10.1.1.2 (or a raw port there, for packets no lab host sends, such
    /// as ICMP echo requests). The inside keeps the lab's 1500-byte MTU: lab TCP sends no MSS option, so a smaller
    /// inside MTU than the web server's would drop its full-sized segments.</summary>
    public LabClient AddClient(bool rawApp = false, string token = Token)
    {
        var n = ++_clients;
        var machine = Lab.AddHost($"c{n}", _lan, $"192.168.60.{10 + n}");
        var inside = Lab.AddSegment($"c{n}-inside", "10.1.1.0/24");
        var port = Lab.AddPort($"c{n}-tun", inside, gateway: true, "10.1.1.1");
        LabHost? app = rawApp ? null : Lab.AddHost($"c{n}-app", inside, "10.1.1.2");
        var raw = rawApp ? Lab.AddPort($"c{n}-raw", inside, gateway: false, "10.1.1.2") : null;
        var labInside = new LabClientInside(Lab, port);
        var client = new TunnelClient(new TunnelClientOptions
        {
            Server = new TunnelUri(false, "192.168.60.1", 8081, "/tunnel"),
            Token = token,
            RequestedAddress = Ipv4Address.Parse("10.1.1.2"),
            Offloads = false,
        }, Lab.TimeProvider, labInside, TunnelSockets.Over(machine), Lab.Scheduler.SynchronizationContext);
        return new LabClient(client, labInside, port, app, raw, Lab.TimeProvider);
    }

    /// <summary>An HTTP/1.1 GET from <paramref name="host"/> to the web server: the status line and the body.</summary>
    public static async Task<(string Status, byte[] Body)> GetAsync(LabHost host, string path)
    {
        await using var connection = await host.ConnectTcpAsync(WebHttp);
        await connection.Stream.WriteAsync(Encoding.ASCII.GetBytes($"GET {path} HTTP/1.1\r\nHost: 203.0.113.10\r\nConnection: close\r\n\r\n"));
        using var all = new MemoryStream();
        var buffer = new byte[16384];
        int n;
        while ((n = await connection.Stream.ReadAsync(buffer)) > 0)
        {
            all.Write(buffer, 0, n);
        }

        var bytes = all.ToArray();
        var end = bytes.AsSpan().IndexOf("\r\n\r\n"u8);
        Assert.True(end > 0, "no HTTP head in the answer");
        var head = Encoding.ASCII.GetString(bytes, 0, end);
        return (head.Split("\r\n")[0], bytes[(end + 4)..]);
    }
}

/// <summary>One client of a <see cref="LabChain"/>.</summary>
internal sealed record LabClient(TunnelClient Client, LabClientInside Inside, LabPort Port, LabHost? App, LabPort? Raw,
    TimeProvider Time)
{
    private readonly CancellationTokenSource _stop = new(Timeout.InfiniteTimeSpan, Time);
    private Task? _running;

    /// <summary>Starts the client and waits for its first welcome.</summary>
    public async Task<TunnelWelcome> ConnectAsync()
    {
        var welcomed = new TaskCompletionSource<TunnelWelcome>();
        Client.Connected = w => welcomed.TrySetResult(w);
        Client.Disconnected = reason => welcomed.TrySetException(new InvalidOperationException(reason));
        _running = Client.RunAsync(_stop.Token);
        return await welcomed.Task;
    }

    /// <summary>Stops the client. The cancellation comes from a lab timer, so its callbacks run as a lab event (no
    /// context current) and what they complete stays on the loop (docs/lab.md, rule 3).</summary>
    public async Task StopAsync()
    {
        _stop.CancelAfter(TimeSpan.FromTicks(1));
        if (_running is not null)
        {
            await _running;
        }

        await Client.DisposeAsync();
    }
}
