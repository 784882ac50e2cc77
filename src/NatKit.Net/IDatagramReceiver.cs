using System.Net;

namespace NatKit.Net;

/// <summary>
/// A consumer of datagrams pushed by a <see cref="DatagramMultiplexer"/>: offered each datagram inline on the shared
/// socket's one receive loop, it claims its own traffic and leaves the rest to the next receiver. Nothing is copied:
/// the span is the loop's own buffer.
/// </summary>
/// <remarks>
/// Calls come from the receive loop, one at a time (never two at once for one multiplexer), on whatever thread the
/// socket completes on: a thread-pool thread on the real network, the loop thread in the lab. A receiver must not
/// block or wait there, and should not throw: an exception is counted (<see cref="DatagramMultiplexer.ReceiverFaults"/>)
/// and the datagram dropped, so one faulty receiver cannot stop the others.
/// </remarks>
public interface IDatagramReceiver
{
    /// <summary>Offered one datagram. True claims it (no later receiver sees it); false passes it on.
    /// <paramref name="datagram"/> is valid only during the call: copy what must outlive it.</summary>
    bool TryReceive(ReadOnlySpan<byte> datagram, IPEndPoint source);

    /// <summary>The socket has nothing more queued: the loop is about to wait for the next datagram. A receiver
    /// that batches work per burst (uTP's delayed ACKs) flushes it here.</summary>
    void OnDrained()
    {
    }

    /// <summary>The multiplexer stopped (it was disposed, or the socket closed under it): no datagram will come any
    /// more. Called once, for the receivers registered at that moment.</summary>
    void OnClosed()
    {
    }
}

/// <summary>A pull sub-socket's rule: true for the datagrams it takes (see
/// <see cref="DatagramMultiplexer.CreateSocket"/>). Called inline on the receive loop, so it must be quick.</summary>
public delegate bool DatagramMatch(ReadOnlySpan<byte> datagram, IPEndPoint source);

/// <summary>
/// How a receiver recognises its datagrams. The multiplexer asks the most specific kind first (a transaction table
/// before a TURN client before uTP), and within one kind in the order the receivers were added; so the outcome does
/// not depend on which part of a program happened to start first.
/// </summary>
public enum DatagramClaim
{
    /// <summary>Answers to requests the receiver sent, recognised by transaction id (STUN transactions).</summary>
    ByTransaction,

    /// <summary>Everything from a source the receiver talks to (a TURN server: its ChannelData and indications).</summary>
    BySource,

    /// <summary>A protocol's own shape, from anyone (a uTP header, a hole-punching probe, STUN requests to an
    /// ICE agent).</summary>
    ByContent,
}
