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
