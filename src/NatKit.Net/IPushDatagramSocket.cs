namespace NatKit.Net;

/// <summary>
/// A datagram socket that can push its datagrams to one receiver inline, as they arrive, instead of queueing them for
/// <see cref="IDatagramSocket.ReceiveFromAsync"/>: a view over another socket's receive loop (a traversal's path to
/// one peer on its node's shared socket), where a queue would cost a copy and a hand-off per datagram. A
/// <see cref="DatagramMultiplexer"/> over such a socket runs no receive loop of its own: it is pushed to.
/// </summary>
public interface IPushDatagramSocket : IDatagramSocket
{
    /// <summary>
    /// From now on offers every datagram to <paramref name="receiver"/> (<see cref="IDatagramReceiver.TryReceive"/>,
    /// one at a time, on the thread that received it; the span is valid during the call only), and tells it when the
    /// socket underneath has nothing more queued (<see cref="IDatagramReceiver.OnDrained"/>). Datagrams queued before
    /// the call are offered first. The task completes when <paramref name="cancellationToken"/> is cancelled or the
    /// socket closes, and nothing is offered after that (one datagram being offered may still finish);
    /// <see cref="IDatagramReceiver.OnClosed"/> is the caller's to call. While it runs,
    /// <see cref="IDatagramSocket.ReceiveFromAsync"/> gets nothing.
    /// </summary>
    /// <exception cref="InvalidOperationException">Another receiver is being pushed to.</exception>
    /// <exception cref="ObjectDisposedException">The socket is closed.</exception>
    Task PushToAsync(IDatagramReceiver receiver, CancellationToken cancellationToken);
}
