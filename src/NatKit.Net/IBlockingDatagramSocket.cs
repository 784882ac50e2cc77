using System.Net;

namespace NatKit.Net;

/// <summary>
/// Optional capability of a datagram socket that can also be driven synchronously, by a thread dedicated to it
/// (the real network's UDP sockets offer it; the lab's need not). A busy server's receive/answer loop on such a
/// thread makes two system calls per batch of datagrams (Linux: recvmmsg, sendmmsg) and nothing else: no
/// completion callback, no thread-pool hop, no continuation. Callers that find it absent use <see cref="IDatagramSocket"/>'s asynchronous methods instead.
/// The rules are those of <see cref="IDatagramSocket"/>: one receive at a time (synchronous or not), sends may
/// overlap it; endpoints come from the same per-socket cache, so a known peer allocates nothing.
/// </summary>
public interface IBlockingDatagramSocket
{
    /// <summary>
    /// Blocks until one datagram arrives and copies it into <paramref name="buffer"/>; one larger than the buffer
    /// is dropped and the call waits for the next, as <see cref="IDatagramSocket.ReceiveFromAsync"/> does.
    /// Disposing the socket from another thread ends a blocked call with <see cref="ObjectDisposedException"/>.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The socket was closed (before or during the call).</exception>
    /// <exception cref="NetworkException">The system reported an error that does not close the socket.</exception>
    ReceivedDatagram Receive(Span<byte> buffer);

    /// <summary>Sends one datagram, blocking only while the kernel's send buffer is full. Returns bytes sent.</summary>
    /// <exception cref="ObjectDisposedException">The socket was closed.</exception>
    /// <exception cref="NetworkException">The system refused the datagram (no route, a broadcast, ...).</exception>
    int Send(ReadOnlySpan<byte> datagram, IPEndPoint remoteEndPoint);

    /// <summary>
    /// Blocks until at least one datagram arrives, then takes, without waiting further, as many as are already
    /// queued, up to <paramref name="batch"/>'s capacity, into its slots from 0. Returns how many. A datagram
    /// larger than a slot is skipped, as <see cref="Receive"/> skips it. On Linux this is one recvmmsg call.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The socket was closed (before or during the call).</exception>
    /// <exception cref="NetworkException">The system reported an error that does not close the socket.</exception>
    int ReceiveBatch(DatagramBatch batch);

    /// <summary>
    /// Sends the datagrams in slots 0 to <paramref name="count"/> - 1 of <paramref name="batch"/> (on Linux with
    /// as few sendmmsg calls as the kernel allows). A datagram the system refuses (no route, a broadcast) is
    /// skipped and the rest still go. Returns how many were sent.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The socket was closed.</exception>
    int SendBatch(DatagramBatch batch, int count);
}
