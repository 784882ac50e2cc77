using System.Net;

namespace NatKit.Traversal.Ice;

/// <summary>The agent's role (RFC 8445 section 6.1.1).</summary>
public enum IceRole
{
    Controlling,
    Controlled,
}

/// <summary>Where the agent is: waiting for the peer's credentials, checking, connected (a selected pair), failed
/// (every pair failed after the end of candidates, or consent lost with no other pair), or closed.</summary>
public enum IceAgentState
{
    New,
    Checking,
    Connected,
    Failed,
    Closed,
}

/// <summary>Why the selected pair changed.</summary>
public enum IceSelectionReason
{
    /// <summary>The first nominated pair.</summary>
    Nominated,

    /// <summary>A pair of higher priority was nominated later (a direct pair replacing a relayed one, or a
    /// better pair under aggressive nomination).</summary>
    Upgraded,

    /// <summary>The selected pair lost consent (RFC 7675); another nominated pair with fresh consent took over, or
    /// none did.</summary>
    ConsentLost,
}

/// <summary>What <see cref="IceAgent.Receive"/> did with a datagram.</summary>
public enum IceInputResult
{
    /// <summary>Not a STUN message: someone else's traffic (uTP, application data).</summary>
    NotStun,

    /// <summary>A STUN message that is not the agent's (another client's response, another method): pass it on.</summary>
    NotMine,

    /// <summary>The agent took it (a check, a response to one, a keepalive).</summary>
    Handled,

    /// <summary>Malformed STUN, a bad FINGERPRINT or a forged response: dropped.</summary>
    Dropped,
}

/// <summary>A datagram the agent wants sent from the driver's socket <paramref name="Socket"/> to
/// <paramref name="Destination"/>.</summary>
public readonly record struct IceTransmit(int Socket, IPEndPoint Destination, ReadOnlyMemory<byte> Datagram);

/// <summary>Something the driver and the application may want to know.</summary>
public abstract record IceEvent;

public sealed record IceStateChanged(IceAgentState State) : IceEvent;

public sealed record IceRoleChanged(IceRole Role) : IceEvent;

/// <summary>The selected pair changed; <see cref="Pair"/> is null when consent was lost with no pair to take over.</summary>
public sealed record IceSelectedPairChanged(IceCandidatePair? Pair, IceCandidatePair? Previous, IceSelectionReason Reason)
    : IceEvent;

/// <summary>A peer-reflexive candidate learned from a check: a local one (our mapping the peer saw) or a remote one
/// (a source address the peer had not signaled).</summary>
public sealed record IceCandidateDiscovered(IceCandidate Candidate, bool IsLocal) : IceEvent;

/// <summary>No authenticated response on <see cref="Pair"/> for the consent timeout (RFC 7675 section 5.1): data
/// must no longer be sent on it.</summary>
public sealed record IceConsentLost(IceCandidatePair Pair) : IceEvent;
