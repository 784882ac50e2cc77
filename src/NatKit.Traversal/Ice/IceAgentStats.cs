namespace NatKit.Traversal.Ice;

/// <summary>What one agent sent and received (for reports: "checks to connect", probes spent).</summary>
public sealed class IceAgentStats
{
    /// <summary>Connectivity checks started (one transaction each; nominations included, consent checks not).</summary>
    public long ChecksStarted { get; internal set; }

    /// <summary>Ordinary checks among <see cref="ChecksStarted"/> (the ones an <see cref="IIceCheckBudget"/> is
    /// charged for).</summary>
    public long OrdinaryChecks { get; internal set; }

    /// <summary>Triggered checks among <see cref="ChecksStarted"/>.</summary>
    public long TriggeredChecks { get; internal set; }

    /// <summary>Binding requests sent, first sends and retransmissions, checks and consent checks.</summary>
    public long RequestsSent { get; internal set; }

    public long Retransmissions { get; internal set; }

    /// <summary>Authenticated responses to the agent's requests (success and error).</summary>
    public long ResponsesReceived { get; internal set; }

    /// <summary>Binding requests from the peer (checks and consent checks) that passed authentication.</summary>
    public long RequestsReceived { get; internal set; }

    /// <summary>Error responses sent (400, 401, 420, 487).</summary>
    public long ErrorsSent { get; internal set; }

    public long RoleConflicts { get; internal set; }

    public long ConsentChecksSent { get; internal set; }

    public long KeepalivesSent { get; internal set; }

    /// <summary>STUN that was malformed, failed FINGERPRINT or MESSAGE-INTEGRITY, or came for a finished check.</summary>
    public long Dropped { get; internal set; }

    public long TimedOut { get; internal set; }

    /// <summary>Hole-punching probes sent with <see cref="IceAgent.Probe"/> (not counted as checks).</summary>
    public long ProbesSent { get; internal set; }
}

/// <summary>
/// What a connection reports about its path: the nominated pair's candidate types and how each was found (the
/// method: host, server-reflexive, peer-reflexive, port-mapped, predicted, birthday-probed, relayed), whether it
/// goes through a relay, its RTT, and times measured from the first check.
/// </summary>
/// <param name="LocalType">The local candidate's type.</param>
/// <param name="LocalOrigin">How the local candidate was found.</param>
/// <param name="RemoteType">The remote candidate's type.</param>
/// <param name="RemoteOrigin">How the remote candidate was found.</param>
/// <param name="LocalEndPoint">The local candidate's address.</param>
/// <param name="RemoteEndPoint">The remote candidate's address.</param>
/// <param name="IsRelayed">Whether the path goes through a TURN relay.</param>
/// <param name="Rtt">The round trip of the last check on the pair answered at its first send (null if every
/// answer came after a retransmission).</param>
/// <param name="TimeToConnect">From the first check to the first selected pair.</param>
/// <param name="TimeToSelected">From the first check to this pair's selection (later than
/// <paramref name="TimeToConnect"/> after a relay-to-direct upgrade).</param>
/// <param name="ChecksStarted">Checks the agent started up to now (<see cref="IceAgentStats.ChecksStarted"/>).</param>
/// <param name="RequestsSent">Binding requests sent up to now, retransmissions and consent checks included.</param>
public sealed record IcePathReport(
    IceCandidateType LocalType,
    IceCandidateOrigin LocalOrigin,
    IceCandidateType RemoteType,
    IceCandidateOrigin RemoteOrigin,
    System.Net.IPEndPoint LocalEndPoint,
    System.Net.IPEndPoint RemoteEndPoint,
    bool IsRelayed,
    TimeSpan? Rtt,
    TimeSpan TimeToConnect,
    TimeSpan TimeToSelected,
    long ChecksStarted,
    long RequestsSent);
