using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using NatKit.Net;
using NatKit.Stun.Server;

namespace NatKit.Stun.Tests;

public class StunServerResilienceTests
{
    [Fact]
    public async Task SendRefusedByTheOs_LosesOnlyThatReply_AndTheServerGoesOn()
    {
        var socket = new ScriptedSocket();
        var network = new ScriptedNetwork(socket);
        await using var server = await StunServer.StartAsync(network, new StunServerOptions
        {
            Primary = new IPEndPoint(IPAddress.Loopback, 3478),
            EnableTcp = false,
        });
        var request = new StunMessage(StunMethods.Binding, StunClass.Request, StunTransactionId.NewRandom(), []).ToArray();
        socket.Incoming.Writer.TryWrite((request, new IPEndPoint(IPAddress.Broadcast, 9)));
        socket.Incoming.Writer.TryWrite((request, new IPEndPoint(IPAddress.Loopback, 5000)));
        var (_, to) = await socket.Sent.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 5000), to);
        Assert.Equal(1, socket.Refused);
    }

    private sealed class ScriptedNetwork(ScriptedSocket socket) : INetwork
    {
        public TimeProvider TimeProvider => TimeProvider.System;

        public IReadOnlyList<IPAddress> LocalAddresses => [IPAddress.Loopback];

        public ValueTask<IDatagramSocket> BindUdpAsync(IPEndPoint localEndPoint, CancellationToken cancellationToken = default) =>
            ValueTask.FromResult<IDatagramSocket>(socket);

        public ValueTask<IStreamListener> ListenTcpAsync(IPEndPoint localEndPoint, int backlog = 512,
            CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public ValueTask<IStreamConnection> ConnectTcpAsync(IPEndPoint remoteEndPoint, IPEndPoint? localEndPoint = null,
            CancellationToken cancellationToken = default) => throw new NotSupportedException();
    }

    /// <summary>Datagrams the test feeds in; sends to the broadcast address fail as the kernel's EACCES would.</summary>
    private sealed class ScriptedSocket : IDatagramSocket
    {
        public Channel<(byte[] Data, IPEndPoint From)> Incoming { get; } = Channel.CreateUnbounded<(byte[], IPEndPoint)>();

        public Channel<(byte[] Data, IPEndPoint To)> Sent { get; } = Channel.CreateUnbounded<(byte[], IPEndPoint)>();

        public int Refused { get; private set; }

        public IPEndPoint LocalEndPoint { get; } = new(IPAddress.Loopback, 3478);

        public ValueTask<int> SendToAsync(ReadOnlyMemory<byte> datagram, IPEndPoint remoteEndPoint,
            CancellationToken cancellationToken = default)
        {
            if (remoteEndPoint.Address.Equals(IPAddress.Broadcast))
            {
                Refused++;
                throw new SocketException((int)SocketError.AccessDenied);
            }

            Sent.Writer.TryWrite((datagram.ToArray(), remoteEndPoint));
            return ValueTask.FromResult(datagram.Length);
        }

        public async ValueTask<ReceivedDatagram> ReceiveFromAsync(Memory<byte> buffer,
            CancellationToken cancellationToken = default)
        {
            var (data, from) = await Incoming.Reader.ReadAsync(cancellationToken);
            data.CopyTo(buffer);
            return new ReceivedDatagram(data.Length, from);
        }

        public void Dispose() => Incoming.Writer.TryComplete();

        public ValueTask DisposeAsync()
        {
            Dispose();
            return ValueTask.CompletedTask;
        }
    }
}

/// <summary>Port 0: the kernel picks the UDP port and the server binds the same number for TCP, which something else
/// may hold; the server picks again instead of failing.</summary>
public class StunServerEphemeralPortTests
{
    [Fact]
    public async Task EphemeralPort_TakenForTcp_IsPickedAgain_AndTheFirstUdpSocketIsReleased()
    {
        var network = new TcpBusyOnceNetwork();
        await using var server = await StunServer.StartAsync(network, new StunServerOptions
        {
            Primary = new IPEndPoint(IPAddress.Loopback, 0),
            RateLimitPerSecond = 0,
        });
        // At least one retry; more when the kernel's next pick is also held for TCP by another test running beside
        // this one (CI saw three).
        Assert.InRange(network.ListenAttempts, 2, 9);
        Assert.Equal(server.UdpEndPoints[0].Port, server.TcpEndPoint!.Port);
        Assert.True(network.FirstUdpDisposed);
    }

    [Fact]
    public async Task FixedPort_TakenForTcp_IsAnError_NotARetry()
    {
        var network = new TcpBusyOnceNetwork();
        var e = await Assert.ThrowsAsync<NetworkException>(() => StunServer.StartAsync(network, new StunServerOptions
        {
            Primary = new IPEndPoint(IPAddress.Loopback, StunPortsForTests.FreeUdpPort()),
            RateLimitPerSecond = 0,
        }));
        Assert.Equal(SocketError.AddressAlreadyInUse, e.Error);
        Assert.Equal(1, network.ListenAttempts);
    }

    private static class StunPortsForTests
    {
        public static int FreeUdpPort()
        {
            using var s = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            return ((IPEndPoint)s.LocalEndPoint!).Port;
        }
    }

    /// <summary>The real network, except that the first TCP listen reports the port in use.</summary>
    private sealed class TcpBusyOnceNetwork : INetwork
    {
        private IDatagramSocket? _firstUdp;

        public int ListenAttempts { get; private set; }

        public bool FirstUdpDisposed
        {
            get
            {
                try
                {
                    _ = _firstUdp!.SendToAsync(new byte[1], new IPEndPoint(IPAddress.Loopback, 9)).AsTask().GetAwaiter().GetResult();
                    return false;
                }
                catch (ObjectDisposedException)
                {
                    return true;
                }
            }
        }

        public TimeProvider TimeProvider => TimeProvider.System;

        public IReadOnlyList<IPAddress> LocalAddresses => SystemNetwork.Instance.LocalAddresses;

        public async ValueTask<IDatagramSocket> BindUdpAsync(IPEndPoint localEndPoint, CancellationToken cancellationToken = default)
        {
            var socket = await SystemNetwork.Instance.BindUdpAsync(localEndPoint, cancellationToken);
            _firstUdp ??= socket;
            return socket;
        }

        public ValueTask<IStreamListener> ListenTcpAsync(IPEndPoint localEndPoint, int backlog = 512,
            CancellationToken cancellationToken = default) =>
            ++ListenAttempts == 1
                ? throw new NetworkException(SocketError.AddressAlreadyInUse, $"cannot listen on TCP {localEndPoint}: in use")
                : SystemNetwork.Instance.ListenTcpAsync(localEndPoint, backlog, cancellationToken);

        public ValueTask<IStreamConnection> ConnectTcpAsync(IPEndPoint remoteEndPoint, IPEndPoint? localEndPoint = null,
            CancellationToken cancellationToken = default) =>
            SystemNetwork.Instance.ConnectTcpAsync(remoteEndPoint, localEndPoint, cancellationToken);
    }
}
