using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;

namespace NatKit.Net.Internal;

/// <summary>A UDP socket over System.Net.Sockets using the pooled, allocation-free SocketAddress overloads.</summary>
internal sealed partial class SocketDatagram : IDatagramSocket, ISocketBuffers
{
    private readonly Socket _socket;
    private readonly SocketAddress _receiveAddress;
    private readonly EndPointCache _endPoints = new();

    public SocketDatagram(Socket socket)
    {
        _socket = socket;
        LocalEndPoint = (IPEndPoint)socket.LocalEndPoint!;
        _receiveAddress = new SocketAddress(socket.AddressFamily);
    }

    public IPEndPoint LocalEndPoint { get; }

    public ValueTask<int> SendToAsync(ReadOnlyMemory<byte> datagram, IPEndPoint remoteEndPoint,
        CancellationToken cancellationToken = default)
    {
        var address = _endPoints.GetSocketAddress(remoteEndPoint, _socket.AddressFamily);
        return _socket.SendToAsync(datagram, SocketFlags.None, address, cancellationToken);
    }

    // Pooled builder: a receive that has to wait reuses its state machine box instead of allocating one.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<ReceivedDatagram> ReceiveFromAsync(Memory<byte> buffer,
        CancellationToken cancellationToken = default)
    {
        while (true)
        {
            try
            {
                var n = await _socket.ReceiveFromAsync(buffer, SocketFlags.None, _receiveAddress, cancellationToken)
                    .ConfigureAwait(false);
                return new ReceivedDatagram(n, _endPoints.GetEndPoint(_receiveAddress));
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionReset
                                                or SocketError.MessageSize)
            {
                // An ICMP error for an earlier send, or a datagram larger than the buffer: neither ends the
                // socket. Keep receiving.
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.OperationAborted)
            {
                throw new ObjectDisposedException(nameof(SocketDatagram), e);
            }
        }
    }

    public bool TrySetBufferSizes(int receiveBytes, int sendBytes)
    {
        try
        {
            if (receiveBytes > 0)
            {
                _socket.ReceiveBufferSize = receiveBytes;
            }

            if (sendBytes > 0)
            {
                _socket.SendBufferSize = sendBytes;
            }

            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    public void Dispose() => _socket.Dispose();

    public ValueTask DisposeAsync()
    {
        _socket.Dispose();
        return ValueTask.CompletedTask;
    }
}
