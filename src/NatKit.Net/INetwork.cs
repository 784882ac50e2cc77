using System.Net;

namespace NatKit.Net;

/// <summary>
/// Where protocol code gets its sockets and its clock. <see cref="SystemNetwork"/> is the real network over
/// System.Net.Sockets; the lab provides one per virtual host, with virtual time. Code written against this
/// interface runs unchanged on both.
/// </summary>
public interface INetwork
{
    /// <summary>The clock that goes with this network: the system clock, or the lab's virtual time.</summary>
    TimeProvider TimeProvider { get; }

    /// <summary>The addresses of this host's interfaces (for the real network: the ones that are up).</summary>
    IReadOnlyList<IPAddress> LocalAddresses { get; }

    /// <summary>Binds a UDP socket. Port 0 asks for an ephemeral port; the chosen one is in
    /// <see cref="IDatagramSocket.LocalEndPoint"/>.</summary>
    /// <exception cref="NetworkException">The address is in use or not on this host.</exception>
    ValueTask<IDatagramSocket> BindUdpAsync(IPEndPoint localEndPoint, CancellationToken cancellationToken = default);

    /// <summary>Opens a TCP listener.</summary>
    /// <exception cref="NetworkException">The address is in use or not on this host.</exception>
    ValueTask<IStreamListener> ListenTcpAsync(IPEndPoint localEndPoint, int backlog = 512,
        CancellationToken cancellationToken = default);

    /// <summary>Opens a TCP connection, optionally from a given local endpoint.</summary>
    /// <exception cref="NetworkException">The connection was refused, unreachable or timed out.</exception>
    ValueTask<IStreamConnection> ConnectTcpAsync(IPEndPoint remoteEndPoint, IPEndPoint? localEndPoint = null,
        CancellationToken cancellationToken = default);

    /// <summary>
    /// The stream to hand to code that was not written for this network and awaits the stream with
    /// <c>ConfigureAwait(false)</c> through nested async methods (<c>SslStream</c>): on the real network the stream
    /// itself; in the lab, whose code runs on one thread's loop, a wrapper that keeps such code on the loop (its
    /// continuations would otherwise move to the thread pool, which the lab refuses). Wrap any stream of this
    /// network (a uTP stream over its sockets, a TCP connection's stream) before giving it to such a library.
    /// </summary>
    Stream ForForeignAwaiters(Stream stream) => stream;
}
