namespace NatKit.Traversal.Ice;

/// <summary>How the controlling agent nominates (RFC 8445 section 8.1.1).</summary>
public enum IceNomination
{
    /// <summary>Checks run without USE-CANDIDATE; the controlling agent picks a valid pair and checks it again with
    /// USE-CANDIDATE (the RFC's only mode).</summary>
    Regular,

    /// <summary>Every check of the controlling agent carries USE-CANDIDATE; the first pair to succeed is selected
    /// and a better one that succeeds later replaces it (RFC 5245's aggressive nomination, kept for peers that
    /// expect it).</summary>
    Aggressive,
}

/// <summary>
/// The agent's knobs, with RFC 8445 and RFC 7675 defaults. <see cref="Validate"/> names the first bad field.
/// </summary>
public sealed record IceAgentOptions
{
    public static IceAgentOptions Default { get; } = new();

    /// <summary>Ta: one check (ordinary or triggered) per this interval (RFC 8445 section 14.2: 50 ms by default
    /// for non-RTP traffic). The hard-NAT methods lower it and bound the rate with an
    /// <see cref="IIceCheckBudget"/>.</summary>
    public TimeSpan CheckInterval { get; init; } = TimeSpan.FromMilliseconds(50);

    /// <summary>The smallest initial RTO of a check; the RTO is max(this, Ta x (Waiting + In-Progress pairs))
    /// (RFC 8445 section 14.3).</summary>
    public TimeSpan CheckRto { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Rc for checks: how many times a check's request is sent (RFC 8489 section 6.2.1: 7).</summary>
    public int CheckRequestCount { get; init; } = 7;

    /// <summary>Rm for checks: initial RTOs waited after the last send (RFC 8489: 16).</summary>
    public int CheckLastWaitMultiplier { get; init; } = 16;

    public IceNomination Nomination { get; init; } = IceNomination.Regular;

    /// <summary>The controlling agent nominates the best valid pair at once when no pair of higher priority is
    /// still being checked; otherwise it waits this long after checks began for a pair between two host
    /// candidates ...</summary>
    public TimeSpan NominateHostAfter { get; init; } = TimeSpan.Zero;

    /// <summary>... for a pair with a reflexive (server, peer, port-mapped, predicted) candidate ...</summary>
    public TimeSpan NominateReflexiveAfter { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>... and for a pair through a TURN relay (a direct pair that succeeds later still replaces it: see
    /// <see cref="UpgradeInterval"/>).</summary>
    public TimeSpan NominateRelayedAfter { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>RFC 7675: a consent check on the selected pair every this long, randomized to 0.8-1.2 times it.
    /// <see cref="TimeSpan.Zero"/> turns consent freshness off (keepalives still hold the NAT mappings).</summary>
    public TimeSpan ConsentInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>RFC 7675 section 5.1: consent is lost this long after the last authenticated response.</summary>
    public TimeSpan ConsentTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Tr: a Binding indication on the selected pair when nothing was sent on it for this long (RFC 8445
    /// section 11: at least 15 s).</summary>
    public TimeSpan KeepaliveInterval { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>While the selected pair goes through a relay, one direct pair is checked again per this interval,
    /// and a direct pair that succeeds replaces the relayed one (Tailscale's relay-to-direct upgrade).
    /// <see cref="TimeSpan.Zero"/> turns it off.</summary>
    public TimeSpan UpgradeInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>The check list's size limit (RFC 8445 section 6.1.2.5: 100); the lowest-priority Frozen and Waiting
    /// pairs go first. Hard-NAT methods that add many remote ports raise it.</summary>
    public int MaxPairs { get; init; } = 100;

    /// <summary>Most remote candidates (signaled and peer-reflexive) kept; more are refused.</summary>
    public int MaxRemoteCandidates { get; init; } = 2048;

    /// <summary>Most local candidates (every socket's host candidate, reflexive and relayed ones).</summary>
    public int MaxLocalCandidates { get; init; } = 2048;

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first bad field; returns this.</summary>
    public IceAgentOptions Validate()
    {
        Check(CheckInterval > TimeSpan.Zero && CheckInterval <= TimeSpan.FromSeconds(10), nameof(CheckInterval),
            CheckInterval, "more than 0 and at most 10 s");
        Check(CheckRto >= TimeSpan.FromMilliseconds(1) && CheckRto <= TimeSpan.FromMinutes(1), nameof(CheckRto),
            CheckRto, "1 ms to 1 minute");
        Check(CheckRequestCount is >= 1 and <= 30, nameof(CheckRequestCount), CheckRequestCount, "1 to 30");
        Check(CheckLastWaitMultiplier is >= 1 and <= 64, nameof(CheckLastWaitMultiplier), CheckLastWaitMultiplier,
            "1 to 64");
        Check(Enum.IsDefined(Nomination), nameof(Nomination), Nomination, "Regular or Aggressive");
        Check(NominateHostAfter >= TimeSpan.Zero, nameof(NominateHostAfter), NominateHostAfter, "not negative");
        Check(NominateReflexiveAfter >= TimeSpan.Zero, nameof(NominateReflexiveAfter), NominateReflexiveAfter,
            "not negative");
        Check(NominateRelayedAfter >= TimeSpan.Zero, nameof(NominateRelayedAfter), NominateRelayedAfter,
            "not negative");
        Check(ConsentInterval == TimeSpan.Zero || ConsentInterval >= TimeSpan.FromMilliseconds(100),
            nameof(ConsentInterval), ConsentInterval, "0 (off) or at least 100 ms");
        Check(ConsentTimeout > ConsentInterval * 1.2, nameof(ConsentTimeout), ConsentTimeout,
            "longer than 1.2 consent intervals");
        Check(KeepaliveInterval >= TimeSpan.FromSeconds(1), nameof(KeepaliveInterval), KeepaliveInterval,
            "at least 1 s (RFC 8445 asks for 15 s or more)");
        Check(UpgradeInterval == TimeSpan.Zero || UpgradeInterval >= TimeSpan.FromMilliseconds(10),
            nameof(UpgradeInterval), UpgradeInterval, "0 (off) or at least 10 ms");
        Check(MaxPairs is >= 1 and <= 65536, nameof(MaxPairs), MaxPairs, "1 to 65536");
        Check(MaxRemoteCandidates is >= 1 and <= 65536, nameof(MaxRemoteCandidates), MaxRemoteCandidates,
            "1 to 65536");
        Check(MaxLocalCandidates is >= 1 and <= 65536, nameof(MaxLocalCandidates), MaxLocalCandidates, "1 to 65536");
        return this;
    }

    private static void Check(bool ok, string name, object value, string rule)
    {
        if (!ok)
        {
            throw new ArgumentOutOfRangeException(name, value, $"{name}: {rule}");
        }
    }
}

/// <summary>
/// A budget for ordinary checks (the probes the agent sends on its own initiative), for the hard-NAT methods that
/// cap probes per second and in total. Triggered checks (answers to a peer's check, nominations) and consent checks
/// are not charged: they follow evidence that a path works. Called on the agent's thread.
/// </summary>
public interface IIceCheckBudget
{
    /// <summary>Takes one check from the budget at <paramref name="now"/>; false when none is left now.</summary>
    bool TryTake(TimeSpan now);

    /// <summary>When a check may next be taken (<see cref="TimeSpan.MaxValue"/>: never again).</summary>
    TimeSpan NextAvailable(TimeSpan now);
}
