using NatKit.Traversal.Ice;

namespace NatKit.Traversal.HardNat;

/// <summary>Which hard-NAT method one side runs for one connection.</summary>
public enum HardNatRole
{
    /// <summary>Plain ICE checks are all this side needs (or all that can work).</summary>
    None,

    /// <summary>This side's NAT allocates sequentially: a fresh socket measures its next port, which goes into the
    /// session as <see cref="TraversalSession.Predicted"/>; that socket then sends only to the peer's target.</summary>
    Predict,

    /// <summary>This side's NAT allocates random ports per destination and the peer's mapping is stable: open
    /// <see cref="ProbeBudget.HardSideSockets"/> sockets, each punching the peer's reflexive endpoint.</summary>
    BirthdayHard,

    /// <summary>This side's mapping is stable and the peer's NAT random: probe random ports of the peer's public
    /// address at the budget's rate.</summary>
    BirthdayEasy,
}

/// <summary>
/// One side's plan for one connection, from its own NAT profile and the peer's (the rendezvous lookup carries the
/// peer's), pure: which hard-NAT method to run and what the ICE agent's pacing becomes.
/// <list type="bullet">
/// <item>A stable mapping on either side lets plain checks through (reflexive or peer-reflexive candidates), and
/// birthday probing covers a stable side's filtering against a random side.</item>
/// <item>Sequential on a side whose peer is not random: predict (both sides sequential: each aims at the other's
/// prediction).</item>
/// <item>Random against random, or random against sequential: no direct method can aim at a port neither side can
/// know; the relay carries it.</item>
/// </list>
/// </summary>
public sealed record ConnectPlan(HardNatRole Role, int Sockets, int Probes, int ProbesPerSecond)
{
    /// <summary>The method the peer runs (the same rule from its side), which the controlling side waits for
    /// before it settles for the relay.</summary>
    public HardNatRole PeerRole { get; init; }

    /// <summary>The sockets the peer's method opens (the same rule from its side): on the easy side of birthday
    /// probing, an easy NAT that filters nothing lets every one of the hard side's punches in, each a peer-reflexive
    /// pair.</summary>
    public int PeerSockets { get; init; }

    /// <summary>How long the budget's birthday probing takes at its rate, the window a relay must not pre-empt.</summary>
    public TimeSpan BirthdayWindow { get; init; }

    /// <summary>How long the easy side's probes take at the budget's rate (<see cref="BirthdayWindow"/> less its
    /// second of slack).</summary>
    public TimeSpan ProbeDuration { get; init; }

    /// <summary>How long prediction gets before the relay may be nominated (its probes repeat every 100 ms).</summary>
    public static readonly TimeSpan PredictionWindow = TimeSpan.FromSeconds(3);

    /// <summary>The plan for a side with profile <paramref name="local"/> against <paramref name="remote"/>.</summary>
    public static ConnectPlan For(NatProfile local, NatProfile remote, ProbeBudget budget)
    {
        ArgumentNullException.ThrowIfNull(local);
        ArgumentNullException.ThrowIfNull(remote);
        ArgumentNullException.ThrowIfNull(budget);
        var probing = TimeSpan.FromSeconds((double)budget.Total / budget.PerSecond);
        var window = probing + TimeSpan.FromSeconds(1);
        var peer = OneSide(remote, local, budget);
        return OneSide(local, remote, budget) with
        {
            PeerRole = peer.Role,
            PeerSockets = peer.Sockets,
            BirthdayWindow = window,
            ProbeDuration = probing,
        };
    }

    private static ConnectPlan OneSide(NatProfile local, NatProfile remote, ProbeBudget budget)
    {
        if (local.IsPredictable && !remote.IsRandomSymmetric)
        {
            return new ConnectPlan(HardNatRole.Predict, 1, 0, budget.PerSecond);
        }

        if (local.IsRandomSymmetric && remote.IsStable)
        {
            return new ConnectPlan(HardNatRole.BirthdayHard, budget.HardSideSockets, 0, budget.PerSecond);
        }

        if (local.IsStable && remote.IsRandomSymmetric)
        {
            return new ConnectPlan(HardNatRole.BirthdayEasy, 0, budget.Total, budget.PerSecond);
        }

        return new ConnectPlan(HardNatRole.None, 0, 0, budget.PerSecond);
    }

    /// <summary>The ICE agent's options for this plan: birthday probing paces the agent's own checks at the probe
    /// rate too, and room for the pairs a birthday set's triggered checks make.</summary>
    public IceAgentOptions AgentOptions(IceAgentOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (Role is HardNatRole.BirthdayHard or HardNatRole.BirthdayEasy)
        {
            // Room for the pair of every socket on both sides: when the easy side's list was full of the hard side's
            // punches, the pair the controlling side nominated could not be formed and the easy side never selected.
            options = options with { MaxPairs = Math.Max(options.MaxPairs, Sockets + PeerSockets + 64) };
        }

        // A relayed pair works at once; nominating it before the hard-NAT method had its chance would hide the
        // direct path behind the relay (the upgrade would find it later, but the connection starts relayed).
        var wait = Role is HardNatRole.BirthdayHard or HardNatRole.BirthdayEasy ||
                   PeerRole is HardNatRole.BirthdayHard or HardNatRole.BirthdayEasy
            ? BirthdayWindow
            : Role == HardNatRole.Predict || PeerRole == HardNatRole.Predict
                ? PredictionWindow
                : TimeSpan.Zero;
        return wait > options.NominateRelayedAfter ? options with { NominateRelayedAfter = wait } : options;
    }
}
