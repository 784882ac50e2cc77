using System.Net;
using System.Net.Sockets;

namespace NatKit.Net.Internal;

internal sealed class SocketStreamConnection : IStreamConnection, IKernelStreamRelay, ITcpCongestionControl, IStreamReadiness,
    IStreamAbort
{
    private readonly Socket _socket;

    public SocketStreamConnection(Socket socket)
    {
        _socket = socket;
        LocalEndPoint = EndPointCache.Unmap((IPEndPoint)socket.LocalEndPoint!);
        RemoteEndPoint = EndPointCache.Unmap((IPEndPoint)socket.RemoteEndPoint!);
        Stream = new NetworkStream(socket, ownsSocket: true);
    }

    public Stream Stream { get; }

    public IPEndPoint LocalEndPoint { get; }

    public IPEndPoint RemoteEndPoint { get; }

    public void ShutdownSend()
    {
        try
        {
            _socket.Shutdown(SocketShutdown.Send);
        }
        catch (SocketException)
        {
            // already reset by the peer: nothing left to half-close
        }
        catch (ObjectDisposedException)
        {
        }
    }

    public ValueTask DisposeAsync() => Stream.DisposeAsync();

    // An abortive close (linger 0: RST, the send queue freed). Not through the NetworkStream, whose disposal shuts
    // the socket down first: that queues a FIN behind the unsent bytes, and a peer that drains them in time sees a
    // clean end instead of the reset.
    public void Abort() => _socket.Close(0);

    public string? CongestionControl => TcpCongestion.Get(_socket);

    public void SetCongestionControl(string algorithm) => TcpCongestion.Set(_socket, algorithm);

    public bool ReadWouldNotBlock
    {
        get
        {
            try
            {
                return _socket.Poll(0, SelectMode.SelectRead);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                return true;
            }
        }
    }

    public Task? TryRelay(IStreamConnection other, Action<bool, long> moved, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(other);
        ArgumentNullException.ThrowIfNull(moved);
        return other is SocketStreamConnection peer && !ReferenceEquals(peer, this)
            ? SpliceRelay.TryStart(_socket, peer._socket, moved, cancellationToken)
            : null;
    }
}

internal sealed class SocketStreamListener : IStreamListener, ITcpCongestionControl
{
    private readonly Socket _socket;

    public SocketStreamListener(Socket socket)
    {
        _socket = socket;
        LocalEndPoint = (IPEndPoint)socket.LocalEndPoint!;
    }

    public IPEndPoint LocalEndPoint { get; }

    public string? CongestionControl => TcpCongestion.Get(_socket);

    public void SetCongestionControl(string algorithm) => TcpCongestion.Set(_socket, algorithm);

    public async ValueTask<IStreamConnection> AcceptAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            var accepted = await _socket.AcceptAsync(cancellationToken).ConfigureAwait(false);
            accepted.NoDelay = true;
            return new SocketStreamConnection(accepted);
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.OperationAborted)
        {
            throw new ObjectDisposedException(nameof(SocketStreamListener), e);
        }
        catch (SocketException e)
        {
            // A connection that was reset before it was accepted, too many open files, ...: the listener lives on.
            throw new NetworkException(e.SocketErrorCode, $"accept on {LocalEndPoint} failed: {e.Message}", e);
        }
    }

    public ValueTask DisposeAsync()
    {
        _socket.Dispose();
        return ValueTask.CompletedTask;
    }
}
