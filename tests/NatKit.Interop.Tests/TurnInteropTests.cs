using System.Globalization;
using System.Net;
using NatKit.Net;
using NatKit.TestSupport;
using NatKit.Turn.Client;
using NatKit.Turn.Policy;
using NatKit.Turn.Server;

namespace NatKit.Interop.Tests;

/// <summary>NatKit's TURN server against coturn's test client and peer, and NatKit's TURN client against coturn's
/// server, all on loopback.</summary>
public class TurnInteropTests
{
    private static readonly TimeSpan PeerTimeout = TimeSpan.FromSeconds(90);

    private static string S(int n) => n.ToString(CultureInfo.InvariantCulture);

    private static Task<TurnServer> StartNatKitAsync(int port, string? secret = null) =>
        TurnServer.StartAsync(SystemNetwork.Instance, new TurnServerOptions
        {
            UdpListen = [new IPEndPoint(IPAddress.Loopback, port)],
            TcpListen = [new IPEndPoint(IPAddress.Loopback, port)],
            Users = secret is null ? new Dictionary<string, string> { ["ninefingers"] = "youhavetoberealistic" } : new Dictionary<string, string>(),
            SharedSecret = secret,
            // turnutils_peer listens on loopback: the relay must be told it may go there.
            Policy = new PeerPolicy(allow: [PeerRule.Parse("127.0.0.0/8")]),
            UnauthenticatedRequestsPerSecond = 0,
        });

    /// <summary>Runs turnutils_uclient through NatKit to turnutils_peer and checks every message came back.</summary>
    private static async Task UclientThroughNatKitAsync(string? secret, params string[] flags)
    {
        var port = StunPorts.FreePair();
        var peerPort = StunPorts.FreePair();
        await using var server = await StartNatKitAsync(port, secret);
        await using var peer = ExternalProcess.Start("turnutils_peer", ["-L", "127.0.0.1", "-p", S(peerPort)]);
        var args = new List<string>(flags);
        args.AddRange(secret is null
            ? ["-u", "ninefingers", "-w", "youhavetoberealistic"]
            : ["-W", secret, "-u", "someone"]);
        args.AddRange(["-p", S(port), "-e", "127.0.0.1", "-r", S(peerPort), "-n", "40", "-m", "4", "-l", "170", "-z", "5",
            "127.0.0.1"]);
        var (_, output, errors) = await ExternalProcess.RunAsync("turnutils_uclient", args, PeerTimeout);
        var all = output + errors;
        Assert.Contains("tot_send_msgs=160, tot_recv_msgs=160", all, StringComparison.Ordinal);
        Assert.Contains("Total lost packets 0 (0.000000%)", all, StringComparison.Ordinal);
    }

    [PeerFact("turnutils_uclient", "turnutils_peer")]
    public Task CoturnUclient_Channels_ThroughNatKit_NoLoss() => UclientThroughNatKitAsync(null);

    [PeerFact("turnutils_uclient", "turnutils_peer")]
    public Task CoturnUclient_SendIndications_ThroughNatKit_NoLoss() => UclientThroughNatKitAsync(null, "-s");

    [PeerFact("turnutils_uclient", "turnutils_peer")]
    public Task CoturnUclient_RestSecret_ThroughNatKit_NoLoss() => UclientThroughNatKitAsync("logen");

    [PeerFact("turnutils_uclient", "turnutils_peer")]
    public Task CoturnUclient_Tcp_ThroughNatKit_NoLoss() => UclientThroughNatKitAsync(null, "-t");

    [PeerFact("turnutils_uclient", "turnutils_peer")]
    public Task CoturnUclient_DontFragment_ThroughNatKit_NoLoss() => UclientThroughNatKitAsync(null, "-g");

    [PeerTheory("turnserver")]
    [InlineData(TurnTransport.Udp)]
    [InlineData(TurnTransport.Tcp)]
    public async Task NatKitClient_AgainstCoturn_ChannelsAndIndications(TurnTransport transport)
    {
        await using var coturn = await TurnCoturn.StartAsync();
        await using var client = await TurnClient.AllocateAsync(SystemNetwork.Instance,
            new TurnClientOptions(coturn.EndPoint, TurnCoturn.User, TurnCoturn.Password)
            {
                Transport = transport,
                InitialRto = TimeSpan.FromMilliseconds(200),
            });
        Assert.Equal(IPAddress.Loopback, client.RelayedEndPoint.Address);
        await using var peer = await SystemNetwork.Instance.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        var buffer = new byte[2048];
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));

        // Send/Data indications first.
        await client.CreatePermissionAsync(IPAddress.Loopback, cts.Token);
        await client.SendAsync("via indication"u8.ToArray(), peer.LocalEndPoint, cts.Token);
        var d = await peer.ReceiveFromAsync(buffer, cts.Token);
        Assert.Equal("via indication", System.Text.Encoding.UTF8.GetString(buffer, 0, d.Length));
        Assert.Equal(client.RelayedEndPoint, d.RemoteEndPoint);
        await peer.SendToAsync("data indication"u8.ToArray(), client.RelayedEndPoint, cts.Token);
        var r = await client.ReceiveAsync(buffer, cts.Token);
        Assert.Equal("data indication", System.Text.Encoding.UTF8.GetString(buffer, 0, r.Length));
        Assert.Equal(peer.LocalEndPoint, r.Peer);

        // Then a channel, with an odd size that needs padding over TCP.
        await client.BindChannelAsync(peer.LocalEndPoint, cts.Token);
        for (var i = 0; i < 20; i++)
        {
            var payload = new byte[13 + i];
            payload[0] = (byte)i;
            await client.SendAsync(payload, peer.LocalEndPoint, cts.Token);
            d = await peer.ReceiveFromAsync(buffer, cts.Token);
            Assert.Equal(payload.Length, d.Length);
            Assert.Equal(i, buffer[0]);
            await peer.SendToAsync(payload, client.RelayedEndPoint, cts.Token);
            r = await client.ReceiveAsync(buffer, cts.Token);
            Assert.Equal(payload.Length, r.Length);
        }

        await client.RefreshAsync(TimeSpan.FromSeconds(900), cts.Token);
        Assert.Equal(TimeSpan.FromSeconds(900), client.Lifetime);
        await client.DeallocateAsync(cts.Token);
    }

    [PeerFact("turnserver")]
    public async Task NatKitClient_AgainstCoturn_WrongPassword_Gets401()
    {
        await using var coturn = await TurnCoturn.StartAsync();
        var e = await Assert.ThrowsAsync<TurnException>(() => TurnClient.AllocateAsync(SystemNetwork.Instance,
            new TurnClientOptions(coturn.EndPoint, TurnCoturn.User, "wrong") { InitialRto = TimeSpan.FromMilliseconds(200) }));
        Assert.Equal(401, e.Code);
    }
}

/// <summary>coturn's turnserver as a TURN relay: loopback only, loopback peers allowed, long-term credentials
/// (the rest of the setup is <see cref="StunCoturn"/>'s: no config file, CLI, TLS or DTLS, temp dir, free port).</summary>
internal static class TurnCoturn
{
    public const string User = "ninefingers";
    public const string Password = "youhavetoberealistic";

    public static Task<StunCoturn> StartAsync() => StunCoturn.StartAsync((_, _) =>
    [
        "--relay-ip", "127.0.0.1", "--min-port", "50000", "--max-port", "59999", "--allow-loopback-peers",
        "--lt-cred-mech", "--user", User + ":" + Password, "--realm", "natkit.test",
    ]);
}
