namespace NatKit.Utp;

/// <summary>A snapshot of one connection's transport state, for diagnostics and benchmarks.</summary>
/// <param name="SmoothedRtt">BEP 29 smoothed round-trip time.</param>
/// <param name="RetransmitTimeout">Current RTO (after backoff).</param>
/// <param name="CongestionWindow">LEDBAT's window, bytes.</param>
/// <param name="BytesInFlight">Payload sent and not yet acknowledged.</param>
/// <param name="PeerWindow">The peer's advertised receive window, bytes.</param>
/// <param name="QueuingDelay">Current one-way delay above the base delay.</param>
/// <param name="PacketsSent">Datagrams carrying DATA, FIN or SYN, retransmissions included.</param>
/// <param name="Retransmissions">Packets sent again (fast and timeout).</param>
/// <param name="FastRetransmissions">Packets resent on three duplicate or selective ACKs.</param>
/// <param name="Timeouts">RTO expiries.</param>
/// <param name="PacketsReceived">Valid packets received on this connection.</param>
public readonly record struct UtpStatistics(
    TimeSpan SmoothedRtt,
    TimeSpan RetransmitTimeout,
    int CongestionWindow,
    int BytesInFlight,
    int PeerWindow,
    TimeSpan QueuingDelay,
    long PacketsSent,
    long Retransmissions,
    long FastRetransmissions,
    long Timeouts,
    long PacketsReceived);
