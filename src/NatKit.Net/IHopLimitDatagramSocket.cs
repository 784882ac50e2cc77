using System.Net;

namespace NatKit.Net;

/// <summary>
/// A datagram socket that can give one datagram a hop limit of its own (the IPv4 TTL, the IPv6 hop limit) while
/// every other datagram keeps the socket's default. Hole punching needs it: a datagram that lives just long enough
/// to leave the sender's own NAT opens that NAT's mapping toward the peer without reaching the peer's NAT, where an
/// unsolicited datagram would leave state (Linux conntrack's entry for it) that makes the peer's NAT move the peer's
/// own mapping to another port. Callers that find it absent do without.
/// </summary>
public interface IHopLimitDatagramSocket
{
    /// <summary>Sends one datagram that routers drop after <paramref name="hopLimit"/> hops (1..255). Returns the
    /// bytes sent, or 0 when this socket cannot limit the datagram's hops: then it is not sent at all, because a
    /// datagram that goes further than asked is the one the caller wanted to avoid.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="hopLimit"/> is 0.</exception>
    ValueTask<int> SendToAsync(ReadOnlyMemory<byte> datagram, IPEndPoint remoteEndPoint, byte hopLimit,
        CancellationToken cancellationToken = default);
}
