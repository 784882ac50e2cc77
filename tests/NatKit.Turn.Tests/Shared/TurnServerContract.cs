using System.Buffers.Binary;
using System.Net;
using NatKit.Net;
using NatKit.Turn.Client;
using NatKit.Turn.Policy;
using NatKit.Turn.Protocol;
using NatKit.Turn.Server;

namespace NatKit.Turn.Tests.Shared;

/// <summary>Where a TURN contract test runs: a client, the server and a peer, each on a network with its address
/// (no NAT between them, so a mapped address is the client socket's own), a second peer address that gets no
/// permission, and the relay policy that allows the peers.</summary>
public sealed record TurnNetworks(INetwork Client, IPAddress ClientAddress, INetwork Server, IPAddress ServerAddress,
    INetwork Peer, IPAddress PeerAddress, IPAddress StrangerAddress, PeerPolicy Policy);

/// <summary>
/// The TURN server's relaying suite, written once (docs/testing.md, "One suite, two networks") and run on
/// <see cref="SystemNetwork"/> over loopback (<see cref="TurnServerOnLoopback"/>: UDP clients are served by the
/// direct path's poller threads there) and in the in-memory lab in virtual time (<see cref="TurnServerInTheLab"/>:
/// the asynchronous loops, the lab's small TCP). Allocation rules, auth, quotas and timers on a fake clock are
/// TurnServerTests'; NAT and virtual-time behaviour is TurnLabTests'. Only public API, plus the two counters that
/// say which data path served (<see cref="AssertDataPath"/>).
/// </summary>
public abstract class TurnServerContract
{
    public const string User = "alice";
    public const string Password = "wonderland";

    /// <summary>Runs <paramref name="body"/> with the networks (on the lab's loop, in virtual time, for the lab).</summary>
    protected abstract void Run(Func<TurnNetworks, Task> body);

    /// <summary>The server's UDP and TCP port (0 for any on loopback).</summary>
    protected abstract int ServerPort { get; }

    /// <summary>Checks which data path serves the UDP clients: the poller threads with
    /// <paramref name="relays"/> relay sockets on the real network, the async loops (no poller) in the lab.</summary>
    protected abstract void AssertDataPath(TurnServer server, int relays);

    /// <summary>Bounds a shutdown by the wall clock where there is one.</summary>
    protected abstract Task PromptlyAsync(Task task);

    private TurnServerOptions Options(TurnNetworks n) => new()
    {
        UdpListen = [new IPEndPoint(n.ServerAddress, ServerPort)],
        TcpListen = [new IPEndPoint(n.ServerAddress, ServerPort)],
        RelayAddress = n.ServerAddress,
        Users = new Dictionary<string, string> { [User] = Password, ["bob"] = "builder" },
        Policy = n.Policy,
        UnauthenticatedRequestsPerSecond = 0,
    };

    private static Task<TurnServer> StartAsync(TurnNetworks n, TurnServerOptions options) =>
        TurnServer.StartAsync(n.Server, options);

    /// <summary>UDP clients bind the client's own address, not the wildcard, so that their local endpoint is what the
    /// server sees (the lab's wildcard-bound sockets report 0.0.0.0, as real ones do).</summary>
    private static TurnClientOptions ClientOptions(TurnNetworks n, TurnServer server,
        TurnTransport transport = TurnTransport.Udp) =>
        new(transport == TurnTransport.Udp ? server.UdpEndPoints[0] : server.TcpEndPoints[0], User, Password)
        {
            Transport = transport,
            KeepAlive = false,
            LocalEndPoint = transport == TurnTransport.Udp ? new IPEndPoint(n.ClientAddress, 0) : null,
        };

    private static Task<TurnClient> AllocateAsync(TurnNetworks n, TurnServer server, CancellationToken ct,
        TurnTransport transport = TurnTransport.Udp) =>
        TurnClient.AllocateAsync(n.Client, ClientOptions(n, server, transport), ct);

    /// <summary>A safety net so a broken test fails instead of hanging (never a wait for success).</summary>
    private static CancellationTokenSource Deadline(TurnNetworks n) => new(TimeSpan.FromSeconds(20), n.Client.TimeProvider);

    private static async Task<(byte[] Data, IPEndPoint From)> ReceiveAsync(IDatagramSocket socket, CancellationToken ct)
    {
        var buffer = new byte[65536];
        var d = await socket.ReceiveFromAsync(buffer, ct);
        return (buffer[..d.Length], d.RemoteEndPoint);
    }

    private static async Task<(byte[] Data, IPEndPoint From)> ReceiveAsync(TurnClient client, CancellationToken ct)
    {
        var buffer = new byte[65536];
        var r = await client.ReceiveAsync(buffer, ct);
        return (buffer[..r.Length], r.Peer);
    }

    /// <summary>Sends <paramref name="count"/> numbered packets from one client to the other's relayed address,
    /// one at a time, and checks each arrives whole, in order, from the sender's relayed address.</summary>
    private static async Task RelayAsync(TurnClient from, TurnClient to, int count, int size, CancellationToken ct,
        IPEndPoint? ignore = null)
    {
        var payload = new byte[size];
        var buffer = new byte[2048];
        for (var i = 0; i < count; i++)
        {
            BinaryPrimitives.WriteInt32BigEndian(payload, i);
            payload[^1] = (byte)i;
            await from.SendAsync(payload, to.RelayedEndPoint, ct);
            var got = await to.ReceiveAsync(buffer, ct);
            while (got.Peer.Equals(ignore))
            {
                got = await to.ReceiveAsync(buffer, ct);
            }

            Assert.Equal(size, got.Length);
            Assert.Equal(i, BinaryPrimitives.ReadInt32BigEndian(buffer));
            Assert.Equal((byte)i, buffer[size - 1]);
            Assert.Equal(from.RelayedEndPoint, got.Peer);
        }
    }

    [Fact]
    public void Rfc8656_7_Allocate_GivesARelayInTheRange_AndTheMappedAddress() => Run(async n =>
    {
        using var cts = Deadline(n);
        await using var server = await StartAsync(n, Options(n));
        await using var c = await AllocateAsync(n, server, cts.Token);
        Assert.Equal(n.ServerAddress, c.RelayedEndPoint.Address);
        Assert.InRange(c.RelayedEndPoint.Port, 49152, 65535);
        Assert.Equal(c.LocalEndPoint, c.MappedEndPoint);
        Assert.Equal(TimeSpan.FromSeconds(600), c.Lifetime);
        Assert.Equal(1, server.AllocationCount);
    });

    [Theory]
    [InlineData(TurnTransport.Udp)]
    [InlineData(TurnTransport.Tcp)]
    public void Rfc8656_10_SendAndDataIndications_RelayBothWays(TurnTransport transport) => Run(async n =>
    {
        using var cts = Deadline(n);
        await using var server = await StartAsync(n, Options(n));
        await using var c = await AllocateAsync(n, server, cts.Token, transport);
        await using var peer = await n.Peer.BindUdpAsync(new IPEndPoint(n.PeerAddress, 0));
        await c.CreatePermissionAsync(n.PeerAddress, cts.Token);

        await c.SendAsync("hello peer"u8.ToArray(), peer.LocalEndPoint, cts.Token);
        var (data, from) = await ReceiveAsync(peer, cts.Token);
        Assert.Equal("hello peer"u8.ToArray(), data);
        Assert.Equal(c.RelayedEndPoint, from);

        await peer.SendToAsync("hello client"u8.ToArray(), c.RelayedEndPoint, cts.Token);
        var (back, sender) = await ReceiveAsync(c, cts.Token);
        Assert.Equal("hello client"u8.ToArray(), back);
        Assert.Equal(peer.LocalEndPoint, sender);
    });

    [Theory]
    [InlineData(TurnTransport.Udp, 10)]
    [InlineData(TurnTransport.Tcp, 13)] // not a multiple of 4: pads over streams
    public void Rfc8656_12_ChannelData_RelaysBothWays(TurnTransport transport, int size) => Run(async n =>
    {
        using var cts = Deadline(n);
        await using var server = await StartAsync(n, Options(n));
        await using var c = await AllocateAsync(n, server, cts.Token, transport);
        await using var peer = await n.Peer.BindUdpAsync(new IPEndPoint(n.PeerAddress, 0));
        var number = await c.BindChannelAsync(peer.LocalEndPoint, cts.Token);
        Assert.Equal(TurnLimits.FirstChannel, number);
        var payload = Enumerable.Range(0, size).Select(i => (byte)i).ToArray();
        for (var i = 0; i < 3; i++)
        {
            await c.SendAsync(payload, peer.LocalEndPoint, cts.Token);
            Assert.Equal(payload, (await ReceiveAsync(peer, cts.Token)).Data);
            await peer.SendToAsync(payload, c.RelayedEndPoint, cts.Token);
            var (back, from) = await ReceiveAsync(c, cts.Token);
            Assert.Equal(payload, back);
            Assert.Equal(peer.LocalEndPoint, from);
        }
    });

    [Fact]
    public void Rfc8656_10_3_PeerWithoutPermission_IsDropped() => Run(async n =>
    {
        using var cts = Deadline(n);
        await using var server = await StartAsync(n, Options(n));
        await using var c = await AllocateAsync(n, server, cts.Token);
        await using var peer = await n.Peer.BindUdpAsync(new IPEndPoint(n.PeerAddress, 0));
        await using var stranger = await n.Peer.BindUdpAsync(new IPEndPoint(n.StrangerAddress, 0));
        await c.CreatePermissionAsync(n.PeerAddress, cts.Token);
        await stranger.SendToAsync("intruder"u8.ToArray(), c.RelayedEndPoint, cts.Token);
        await peer.SendToAsync("friend"u8.ToArray(), c.RelayedEndPoint, cts.Token);
        var (data, from) = await ReceiveAsync(c, cts.Token);
        Assert.Equal("friend"u8.ToArray(), data); // the stranger's datagram, sent first, never arrived
        Assert.Equal(peer.LocalEndPoint, from);
    });

    [Fact]
    public void TwoUdpClients_RelayIndicationsAndChannelsBothWays_OnTheNetworksDataPath() => Run(async n =>
    {
        using var cts = Deadline(n);
        await using var server = await StartAsync(n, Options(n) with { TcpListen = [] });
        await using var a = await AllocateAsync(n, server, cts.Token);
        await using var b = await AllocateAsync(n, server, cts.Token);
        AssertDataPath(server, relays: 2);
        await a.CreatePermissionAsync(b.RelayedEndPoint.Address, cts.Token);
        await b.CreatePermissionAsync(a.RelayedEndPoint.Address, cts.Token);

        // no channel yet: Send indication in, Data indication out
        await RelayAsync(a, b, 20, 100, cts.Token);
        await RelayAsync(b, a, 20, 101, cts.Token);

        // channels: ChannelData both hops, odd lengths included
        await a.BindChannelAsync(b.RelayedEndPoint, cts.Token);
        await b.BindChannelAsync(a.RelayedEndPoint, cts.Token);
        await RelayAsync(a, b, 100, 161, cts.Token);
        await RelayAsync(b, a, 100, 1200, cts.Token);
    });

    [Fact]
    public void DeletedAllocation_LeavesTheDataPath_AndNewOnesStillRelay() => Run(async n =>
    {
        using var cts = Deadline(n);
        await using var server = await StartAsync(n, Options(n) with { TcpListen = [] });
        await using var b = await AllocateAsync(n, server, cts.Token);
        for (var round = 0; round < 3; round++)
        {
            var a = await AllocateAsync(n, server, cts.Token);
            AssertDataPath(server, relays: 2);
            await a.BindChannelAsync(b.RelayedEndPoint, cts.Token);
            await b.BindChannelAsync(a.RelayedEndPoint, cts.Token);
            await RelayAsync(a, b, 10, 64, cts.Token);
            await RelayAsync(b, a, 10, 64, cts.Token);
            await a.DeallocateAsync(cts.Token);
            Assert.Equal(1, server.AllocationCount);
            AssertDataPath(server, relays: 1);
            await a.DisposeAsync();
        }
    });

    [Fact]
    public void Dispose_StopsTheServerPromptly_AndDropsItsAllocations() => Run(async n =>
    {
        using var cts = Deadline(n);
        var server = await StartAsync(n, Options(n) with { TcpListen = [] });
        var a = await AllocateAsync(n, server, cts.Token);
        await PromptlyAsync(server.DisposeAsync().AsTask());
        Assert.Equal(0, server.AllocationCount);
        await a.DisposeAsync();
    });

    [Fact]
    public void RandomAndMutatedDatagrams_ToListenerAndRelays_NeverStopTheDataPath() => Run(async n =>
    {
        using var cts = Deadline(n);
        await using var server = await StartAsync(n, Options(n) with { TcpListen = [] });
        await using var a = await AllocateAsync(n, server, cts.Token);
        await using var b = await AllocateAsync(n, server, cts.Token);
        await a.BindChannelAsync(b.RelayedEndPoint, cts.Token);
        await b.BindChannelAsync(a.RelayedEndPoint, cts.Token);

        // a stranger: garbage, ChannelData-shaped garbage, truncated STUN, to the listener and to both relayed
        // addresses (permissions are per IP address, so what it sends from the clients' address to those is relayed
        // as Data indications, and ignored below)
        await using var stranger = await n.Client.BindUdpAsync(new IPEndPoint(n.ClientAddress, 0));
        var random = new Random(1234);
        var targets = new[] { server.UdpEndPoints[0], a.RelayedEndPoint, b.RelayedEndPoint };
        for (var i = 0; i < 600; i++)
        {
            var datagram = new byte[random.Next(0, 300)];
            random.NextBytes(datagram);
            if (datagram.Length >= 4 && i % 3 == 0)
            {
                datagram[0] = (byte)(0x40 + random.Next(0, 0x40)); // channel number range
                BinaryPrimitives.WriteUInt16BigEndian(datagram.AsSpan(2), (ushort)random.Next(0, 400));
            }
            else if (datagram.Length >= 20 && i % 3 == 1)
            {
                datagram[0] = 0; // a STUN header with a random method, length and cookie
            }

            await stranger.SendToAsync(datagram, targets[i % targets.Length], cts.Token);
        }

        // still relaying, both directions
        await RelayAsync(a, b, 20, 64, cts.Token, stranger.LocalEndPoint);
        await RelayAsync(b, a, 20, 64, cts.Token, stranger.LocalEndPoint);
    });
}
