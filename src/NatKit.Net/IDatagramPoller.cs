using System.Diagnostics.CodeAnalysis;
using System.Net;

namespace NatKit.Net;

/// <summary>
/// Optional capability of a network (the real one on Linux; the lab need not offer it): a readiness set over
/// its datagram sockets, so a server can serve many sockets from one thread of its own (epoll and non-blocking
/// system calls) instead of an asynchronous receive loop per socket. Callers that find it absent, or whose
/// sockets are not <see cref="INonBlockingDatagramSocket"/>, use <see cref="IDatagramSocket"/>'s async methods.
/// </summary>
public interface IDatagramPollerSource
{
    /// <summary>Makes an empty readiness set; false if this system cannot.</summary>
    bool TryCreatePoller([NotNullWhen(true)] out IDatagramPoller? poller);
}

/// <summary>
/// A set of datagram sockets to wait on, each with a caller-chosen token. Readiness is level-triggered: a socket
/// with datagrams still queued is reported again by the next <see cref="Wait"/>. Add, Remove and Wake may be
/// called from any thread; Wait from one thread at a time. A socket closed while in the set leaves it.
/// </summary>
public interface IDatagramPoller : IDisposable
{
    /// <summary>Adds a socket of the network that made this poller. False if the socket cannot be polled
    /// (another network's, or closed).</summary>
    bool TryAdd(IDatagramSocket socket, long token);

    /// <summary>Removes a socket; nothing happens if it is not in the set or already closed.</summary>
    void Remove(IDatagramSocket socket);

    /// <summary>Waits until a socket is readable, <see cref="Wake"/> is called or the timeout passes (-1:
    /// forever). Writes the tokens of readable sockets to <paramref name="ready"/> and returns how many
    /// (0 after a wake or a timeout).</summary>
    int Wait(Span<long> ready, int timeoutMilliseconds);

    /// <summary>Ends a pending or the next <see cref="Wait"/> early (to stop the thread that waits).</summary>
    void Wake();
}

/// <summary>
/// Optional capability of a datagram socket: receive and send on the calling thread without ever waiting, for
/// a thread driven by an <see cref="IDatagramPoller"/>. May be mixed with <see cref="IDatagramSocket"/>'s async
/// sends; receives should come from one of the two only. Endpoints come from the socket's cache as for the
/// async methods, so a known peer allocates nothing.
/// </summary>
public interface INonBlockingDatagramSocket
{
    /// <summary>Takes one queued datagram into <paramref name="buffer"/> (truncated if it is larger); false if
    /// none is queued.</summary>
    /// <exception cref="ObjectDisposedException">The socket was closed.</exception>
    bool TryReceive(Span<byte> buffer, out ReceivedDatagram datagram);

    /// <summary>Sends one datagram if the kernel takes it now; false if it did not (its buffer full, no
    /// route): for UDP, a datagram lost.</summary>
    /// <exception cref="ObjectDisposedException">The socket was closed.</exception>
    bool TrySend(ReadOnlySpan<byte> datagram, IPEndPoint remoteEndPoint);
}
