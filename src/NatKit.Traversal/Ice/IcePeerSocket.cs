using System.Buffers;
using System.Net;
using NatKit.Net;

namespace NatKit.Traversal.Ice;

/// <summary>
/// The application's datagram path to the peer: sends go to the selected pair's remote candidate from its local
/// base's socket (whatever destination is passed), and datagrams that are not STUN from any valid pair's remote
/// candidate come back. <see cref="ReceivedDatagram.RemoteEndPoint"/> is always the remote candidate of the first
/// selected pair, so a protocol that keys its connection by the peer's address (uTP) sees one peer even when the
/// path moves from the relay to a direct pair. A send while no pair is selected (before
/// <see cref="IceTransport.Connected"/>, or after consent was lost: RFC 7675 forbids data on that path) is dropped
/// and returns 0, as a datagram lost on the way would be.
/// </summary>
public sealed class IcePeerSocket : IPushDatagramSocket
{
    private readonly IceTransport _transport;
    private int _disposed;

    internal IcePeerSocket(IceTransport transport)
    {
        _transport = transport;
    }

    public IPEndPoint LocalEndPoint => _transport.LocalEndPoint;

    /// <summary>The peer as this socket reports it (the first selected pair's remote candidate); null before.</summary>
    public IPEndPoint? RemoteEndPoint => _transport.PeerEndPoint;

    public ValueTask<int> SendToAsync(ReadOnlyMemory<byte> datagram, IPEndPoint remoteEndPoint,
        CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        cancellationToken.ThrowIfCancellationRequested();
        if (_transport.Route() is not { } route)
        {
            return ValueTask.FromResult(0);
        }

        _transport.Send(route.Socket, datagram, route.Destination);
        return ValueTask.FromResult(datagram.Length);
    }

    public async ValueTask<ReceivedDatagram> ReceiveFromAsync(Memory<byte> buffer,
        CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        while (true)
        {
            IceTransport.Inbound item;
            try
            {
                item = await _transport.Inbox.ReadAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (System.Threading.Channels.ChannelClosedException)
            {
                throw new ObjectDisposedException(nameof(IcePeerSocket));
            }

            try
            {
                if (item.Length > buffer.Length)
                {
                    continue; // larger than the buffer: dropped, never cut short (IDatagramSocket's contract)
                }

                item.Buffer.AsSpan(0, item.Length).CopyTo(buffer.Span);
                return new ReceivedDatagram(item.Length, _transport.PeerEndPoint ?? new IPEndPoint(IPAddress.Any, 0));
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(item.Buffer);
            }
        }
    }

    /// <summary>Pushes the peer's datagrams to <paramref name="receiver"/> inline, on the thread that received them
    /// (the shared socket's loop): no copy, no queue. A <see cref="DatagramMultiplexer"/> over this socket (uTP's)
    /// does this.</summary>
    public Task PushToAsync(IDatagramReceiver receiver, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        return _transport.PushToAsync(receiver, cancellationToken);
    }

    /// <summary>Stops this view; the transport (and its sockets) belong to their owner.</summary>
    public void Dispose() => Interlocked.Exchange(ref _disposed, 1);

    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }
}
