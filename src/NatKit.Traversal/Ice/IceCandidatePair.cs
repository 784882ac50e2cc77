using NatKit.Stun;

namespace NatKit.Traversal.Ice;

/// <summary>The states of a pair in the check list (RFC 8445 section 6.1.2.6).</summary>
public enum IceCandidatePairState
{
    Frozen,
    Waiting,
    InProgress,
    Succeeded,
    Failed,
}

/// <summary>
/// A local and a remote candidate (RFC 8445 section 6.1.2). Pairs in the check list have a base as their local
/// candidate (host or relayed: reflexive candidates are pruned to their base, section 6.1.2.4); a successful check
/// yields a valid pair whose local candidate is the one the peer saw (section 7.2.5.3.2), which may be a
/// server- or peer-reflexive candidate on the same base. Both kinds send from <see cref="Socket"/> to the remote
/// candidate's address. The agent owns and changes pairs; read them on the agent's thread.
/// </summary>
public sealed class IceCandidatePair
{
    internal IceCandidatePair(IceCandidate local, IceCandidate remote, int socket, bool inCheckList)
    {
        Local = local;
        Remote = remote;
        Socket = socket;
        InCheckList = inCheckList;
        Foundation = local.Foundation + ":" + remote.Foundation;
    }

    public IceCandidate Local { get; }

    public IceCandidate Remote { get; private set; }

    /// <summary>The driver's socket this pair sends from (the local candidate's base).</summary>
    public int Socket { get; }

    /// <summary>The pair foundation: the local and remote foundations joined.</summary>
    public string Foundation { get; private set; }

    /// <summary>RFC 8445 section 6.1.2.3 for the agent's current role.</summary>
    public ulong Priority { get; internal set; }

    public IceCandidatePairState State { get; internal set; }

    /// <summary>True for a pair in the check list; false for a valid pair built from a check's mapped address.</summary>
    public bool InCheckList { get; }

    /// <summary>The valid pair this pair's successful check produced (itself when the mapped address is the base).</summary>
    public IceCandidatePair? ValidPair { get; internal set; }

    /// <summary>True once a check proved the pair works both ways (it is in the valid list).</summary>
    public bool IsValid { get; internal set; }

    /// <summary>Nominated for use (RFC 8445 section 8.1.1): the selected pair is the best nominated valid pair.</summary>
    public bool Nominated { get; internal set; }

    /// <summary>True when traffic on this pair goes through a TURN relay (either side's candidate is relayed).</summary>
    public bool IsRelayed => Local.IsRelayed || Remote.IsRelayed;

    /// <summary>The round trip of the last check answered on its first send (null until one was).</summary>
    public TimeSpan? Rtt { get; internal set; }

    /// <summary>Check requests sent on this pair, retransmissions included.</summary>
    public int RequestsSent { get; internal set; }

    /// <summary>Authenticated success responses received for this pair's checks.</summary>
    public int ResponsesReceived { get; internal set; }

    /// <summary>When the last authenticated success response came (consent, RFC 7675); null before the first.</summary>
    public TimeSpan? LastResponseAt { get; internal set; }

    /// <summary>When a check was last started on this pair (the relay-to-direct upgrade checks the stalest first).</summary>
    internal TimeSpan LastCheckAt { get; set; } = TimeSpan.MinValue;

    /// <summary>A signaled candidate took the place of the peer-reflexive one this pair was formed with.</summary>
    internal void ReplaceRemote(IceCandidate signaled)
    {
        Remote = signaled;
        Foundation = Local.Foundation + ":" + signaled.Foundation;
    }

    /// <summary>The transaction of the latest check; an earlier one that times out does not fail the pair.</summary>
    internal StunTransactionId CurrentCheck { get; set; }

    internal bool Triggered { get; set; }

    /// <summary>The next check is a relay-to-direct upgrade probe (a short transaction).</summary>
    internal bool UpgradeProbe { get; set; }

    /// <summary>Controlling agent: the next check on this pair carries USE-CANDIDATE.</summary>
    internal bool NominateOnSend { get; set; }

    /// <summary>Controlled agent: the peer sent USE-CANDIDATE before this pair succeeded (section 7.3.1.5).</summary>
    internal bool NominateOnSuccess { get; set; }

    /// <summary>Consent was lost: never selected again.</summary>
    internal bool ConsentLost { get; set; }

    /// <summary>The checklist pair whose check produced this valid pair.</summary>
    internal IceCandidatePair? Generator { get; set; }

    internal TimeSpan LastSentAt { get; set; }

    public override string ToString() =>
        $"{Local.EndPoint} ({IceCandidateSdp.TypeName(Local.Type)}) -> {Remote.EndPoint} ({IceCandidateSdp.TypeName(Remote.Type)}) {State}{(Nominated ? " nominated" : "")}";
}
