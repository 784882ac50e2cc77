using System.Net;
using NatKit.Net;
using NatKit.Turn.Client;
using NatKit.Turn.Policy;
using NatKit.Turn.Server;

namespace NatKit.Turn.Tests.Support;

/// <summary>A TURN server on loopback (UDP and TCP, ephemeral ports) with a test clock, a peer socket, and
/// helpers to make clients. Everything is closed on dispose.</summary>
public sealed class TurnHarness : IAsyncDisposable
{
    public const string User = "alice";
    public const string Password = "wonderland";

    private readonly List<IAsyncDisposable> _owned = [];

    private TurnHarness(ManualTimeProvider time, INetwork network, TurnServer server)
    {
        Time = time;
        Network = network;
        Server = server;
    }

    public ManualTimeProvider Time { get; }

    public INetwork Network { get; }

    public TurnServer Server { get; }

    public IPEndPoint Udp => Server.UdpEndPoints[0];

    public IPEndPoint Tcp => Server.TcpEndPoints[0];

    /// <summary>Loopback is denied by default; most tests relay to a loopback peer, so they allow it.</summary>
    public static PeerPolicy AllowLoopback { get; } = new(allow: [PeerRule.Parse("127.0.0.0/8"), PeerRule.Parse("::1")]);

    public static async Task<TurnHarness> StartAsync(Func<TurnServerOptions, TurnServerOptions>? configure = null,
        Microsoft.Extensions.Logging.ILogger? logger = null)
    {
        var time = new ManualTimeProvider();
        var network = new ClockedNetwork(time);
        var options = new TurnServerOptions
        {
            UdpListen = [new IPEndPoint(IPAddress.Loopback, 0)],
            TcpListen = [new IPEndPoint(IPAddress.Loopback, 0)],
            Users = new Dictionary<string, string> { [User] = Password, ["bob"] = "builder" },
            Policy = AllowLoopback,
            RelayAddressV6 = IPAddress.IPv6Loopback,
            UnauthenticatedRequestsPerSecond = 0,
        };
        options = configure?.Invoke(options) ?? options;
        var server = await TurnServer.StartAsync(network, options, logger);
        return new TurnHarness(time, network, server);
    }

    public TurnClientOptions ClientOptions(string user = User, string password = Password,
        TurnTransport transport = TurnTransport.Udp) =>
        new(transport == TurnTransport.Udp ? Udp : Tcp, user, password)
        {
            Transport = transport,
            KeepAlive = false,
            InitialRto = TimeSpan.FromSeconds(5), // fake time: never fires; a lost response is a test failure
        };

    public async Task<TurnClient> ClientAsync(TurnClientOptions? options = null)
    {
        using var cts = Deadline();
        var c = await TurnClient.AllocateAsync(Network, options ?? ClientOptions(), cts.Token);
        _owned.Add(c);
        return c;
    }

    public async Task<IDatagramSocket> PeerAsync(IPAddress? address = null)
    {
        var s = await SystemNetwork.Instance.BindUdpAsync(new IPEndPoint(address ?? IPAddress.Loopback, 0));
        _owned.Add(s);
        return s;
    }

    /// <summary>A safety net so a broken test fails instead of hanging (never a wait for success).</summary>
    public static CancellationTokenSource Deadline() => new(TimeSpan.FromSeconds(10));

    public async ValueTask DisposeAsync()
    {
        foreach (var o in _owned)
        {
            await o.DisposeAsync();
        }

        await Server.DisposeAsync();
    }
}
