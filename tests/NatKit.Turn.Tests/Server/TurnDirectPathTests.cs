using System.Buffers.Binary;
using System.Net;
using NatKit.Net;
using NatKit.Turn.Client;
using NatKit.Turn.Policy;
using NatKit.Turn.Server;

namespace NatKit.Turn.Tests.Server;

/// <summary>
/// The server on the real network (loopback), where it serves UDP clients from its poller threads instead of
/// an async loop per socket: relaying both ways, with channels and with indications, allocations coming and
/// going, and shutdown.
/// </summary>
public sealed class TurnDirectPathTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private static Task<TurnServer> StartAsync() =>
        TurnServer.StartAsync(SystemNetwork.Instance, new TurnServerOptions
        {
            UdpListen = [new IPEndPoint(IPAddress.Loopback, 0)],
            Users = new Dictionary<string, string> { ["alice"] = "secret" },
            Policy = new PeerPolicy(allow: [PeerRule.Parse("127.0.0.0/8")]),
            UnauthenticatedRequestsPerSecond = 0,
        });

    private static Task<TurnClient> AllocateAsync(TurnServer server, CancellationToken ct) =>
        TurnClient.AllocateAsync(SystemNetwork.Instance,
            new TurnClientOptions(server.UdpEndPoints[0], "alice", "secret") { KeepAlive = false }, ct);

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
    public async Task RealNetwork_UdpClients_AreServedByPollerThreads_RelayingIndicationsAndChannelsBothWays()
    {
        using var cts = new CancellationTokenSource(Timeout);
        await using var server = await StartAsync();
        Assert.True(server.DirectThreadCount >= 2);
        await using var a = await AllocateAsync(server, cts.Token);
        await using var b = await AllocateAsync(server, cts.Token);
        Assert.Equal(2, server.PolledRelayCount);
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
    }

    [Fact]
    public async Task RealNetwork_DeletedAllocation_LeavesThePoller_AndNewOnesStillRelay()
    {
        using var cts = new CancellationTokenSource(Timeout);
        await using var server = await StartAsync();
        await using var b = await AllocateAsync(server, cts.Token);
        for (var round = 0; round < 3; round++)
        {
            var a = await AllocateAsync(server, cts.Token);
            Assert.Equal(2, server.PolledRelayCount);
            await a.BindChannelAsync(b.RelayedEndPoint, cts.Token);
            await b.BindChannelAsync(a.RelayedEndPoint, cts.Token);
            await RelayAsync(a, b, 10, 64, cts.Token);
            await RelayAsync(b, a, 10, 64, cts.Token);
            await a.DeallocateAsync(cts.Token);
            Assert.Equal(1, server.AllocationCount);
            Assert.Equal(1, server.PolledRelayCount);
        }
    }

    [Fact]
    public async Task RealNetwork_Dispose_StopsThePollerThreadsPromptly()
    {
        using var cts = new CancellationTokenSource(Timeout);
        var server = await StartAsync();
        var a = await AllocateAsync(server, cts.Token);
        await server.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(0, server.AllocationCount);
        await a.DisposeAsync();
    }

    [Fact]
    public async Task RealNetwork_RandomAndMutatedDatagrams_ToListenerAndRelays_NeverStopThePollerThreads()
    {
        using var cts = new CancellationTokenSource(Timeout);
        await using var server = await StartAsync();
        await using var a = await AllocateAsync(server, cts.Token);
        await using var b = await AllocateAsync(server, cts.Token);
        await a.BindChannelAsync(b.RelayedEndPoint, cts.Token);
        await b.BindChannelAsync(a.RelayedEndPoint, cts.Token);

        // a stranger on loopback: garbage, ChannelData-shaped garbage, truncated STUN, to the listener and to
        // both relayed addresses (permissions are per IP address, so what it sends to those is relayed as Data
        // indications, and ignored below)
        using var stranger = await SystemNetwork.Instance.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0));
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
    }
}
