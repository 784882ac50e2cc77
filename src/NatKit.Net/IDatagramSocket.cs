using System.Net;

namespace NatKit.Net;

/// <summary>
/// A bound UDP socket. One receive at a time; sends may overlap receives. Neither allocates in the steady
/// state: endpoints are cached per socket, so a datagram from a known peer yields the same
/// <see cref="IPEndPoint"/> instance.
/// </summary>
public interface IDatagramSocket : IAsyncDisposable, IDisposable
{
    IPEndPoint LocalEndPoint { get; }

    /// <summary>Sends one datagram. Returns the number of bytes sent.</summary>
    ValueTask<int> SendToAsync(ReadOnlyMemory<byte> datagram, IPEndPoint remoteEndPoint,
        CancellationToken cancellationToken = default);

    /// <summary>Receives one datagram into <paramref name="buffer"/>. A datagram larger than the buffer is dropped,
    /// never cut short, and the receive goes on to the next one (the real network and the lab alike).</summary>
    /// <exception cref="ObjectDisposedException">The socket was closed.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    ValueTask<ReceivedDatagram> ReceiveFromAsync(Memory<byte> buffer, CancellationToken cancellationToken = default);
}

/// <summary>The result of a receive: how many bytes landed in the buffer, and who sent them.</summary>
public readonly record struct ReceivedDatagram(int Length, IPEndPoint RemoteEndPoint);
