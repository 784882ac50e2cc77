using System.Globalization;
using NatKit.Nat;
using NatKit.Traversal.HardNat;
using NatKit.Traversal;

namespace NatKit.Scenarios.Matrix;

/// <summary>How a matrix cell connected, or what the oracle expects of it.</summary>
public enum MatrixPath
{
    /// <summary>Datagrams go straight between the two peers' NATs (or hosts).</summary>
    Direct,

    /// <summary>Direct, but through the shared NAT's hairpin (RFC 4787 REQ-9).</summary>
    Hairpin,

    /// <summary>Through the TURN relay.</summary>
    Relay,

    /// <summary>No path.</summary>
    Failed,
}

/// <summary>How sure a side can be of the external port its NAT gives a new destination.</summary>
public enum PortKnowledge
{
    /// <summary>One port for every destination: the STUN answer (or the host's own, with no NAT).</summary>
    Known,

    /// <summary>A new port per destination from a sequential allocator: predictable from two STUN answers.</summary>
    Predictable,

    /// <summary>A new random port per destination.</summary>
    Unknown,
}

/// <summary>
/// What a chain of NATs (or none) looks like to a peer on the other side of the internet, reduced to the knobs that
/// decide traversal: RFC 4787 mapping (REQ-1), filtering (REQ-8) and port assignment (REQ-3) of the chain as a whole.
/// </summary>
/// <param name="Open">No NAT at all.</param>
/// <param name="Mapping">The chain's mapping: the least endpoint-independent of its NATs (Linux's port-keeping
/// masquerade counts as endpoint-independent: seen from outside it is).</param>
/// <param name="Filtering">The chain's filtering: the strictest of its NATs.</param>
/// <param name="Allocation">For a dependent mapping: how the NAT that picks the visible port of a new mapping
/// picks it (the outermost random or sequential allocator; a preserving NAT passes the inner port through).</param>
/// <param name="PortRangeSize">How many ports that allocator draws from.</param>
public sealed record EffectiveNat(bool Open, MappingBehavior Mapping, FilteringBehavior Filtering,
    PortAssignment Allocation, int PortRangeSize)
{
    /// <summary>No NAT: the host's own address, nothing filtered.</summary>
    public static EffectiveNat None { get; } = new(true, MappingBehavior.EndpointIndependent,
        FilteringBehavior.EndpointIndependent, PortAssignment.Preserving, 65535);

    /// <summary>Every packet toward the peer's address leaves from one external port (endpoint-independent or
    /// address-dependent mapping), whatever port of the peer it goes to.</summary>
    public bool StableTowardPeer => Open || Mapping != MappingBehavior.AddressAndPortDependent;

    /// <summary>The filter admits any port of the peer's address once this side has sent to that address
    /// (endpoint-independent or address-dependent filtering); false for address-and-port-dependent.</summary>
    public bool AdmitsAnyPortOfPeer => Open || Filtering != FilteringBehavior.AddressAndPortDependent;

    public PortKnowledge Knowledge => Open || Mapping == MappingBehavior.EndpointIndependent
        ? PortKnowledge.Known
        : Allocation == PortAssignment.Sequential ? PortKnowledge.Predictable : PortKnowledge.Unknown;

    /// <summary>The behaviour of <paramref name="chain"/> (the peer's own NAT first, the outermost last) as one NAT.</summary>
    public static EffectiveNat Of(IReadOnlyList<NatPolicy> chain)
    {
        ArgumentNullException.ThrowIfNull(chain);
        if (chain.Count == 0) return None;
        var mapping = MappingBehavior.EndpointIndependent;
        var filtering = FilteringBehavior.EndpointIndependent;
        foreach (var p in chain)
        {
            var m = AsSeenFromOutside(p);
            if (m > mapping) mapping = m;
            if (p.Filtering > filtering) filtering = p.Filtering;
        }

        // Which NAT decides the visible port of a new mapping: the outermost that allocates ports itself (a
        // preserving one keeps the port it was given, as long as it is free).
        var decider = chain[^1];
        var allocation = PortAssignment.Random;
        for (var i = chain.Count - 1; i >= 0; i--)
        {
            if (chain[i].PortAssignment is PortAssignment.Random or PortAssignment.Sequential)
            {
                decider = chain[i];
                allocation = chain[i].PortAssignment;
                break;
            }
        }

        // A dependent chain whose allocators all preserve: the first destination keeps the port, the next collides
        // and gets a port the NAT picks itself (at random): nothing a peer can aim at.
        return new EffectiveNat(false, mapping, filtering, allocation,
            decider.PortRangeEnd - decider.PortRangeStart + 1);
    }

    /// <summary>One NAT's mapping as a peer sees it: Linux's port sharing (and overloading) keep the port for
    /// every destination, which is endpoint-independent from outside.</summary>
    public static MappingBehavior AsSeenFromOutside(NatPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(policy);
        if (policy.Mapping != MappingBehavior.EndpointIndependent &&
            ((policy.SharePortsAcrossDestinations && policy.PortAssignment == PortAssignment.Preserving) ||
             policy.PortAssignment == PortAssignment.Overloading))
        {
            return MappingBehavior.EndpointIndependent;
        }

        return policy.Mapping;
    }

    /// <summary>"EIM + APDF", "APDM + APDF, sequential ports", "no NAT".</summary>
    public override string ToString()
    {
        if (Open) return "no NAT";
        var text = $"{Short(Mapping)}M + {Short(Filtering)}F";
        return Mapping == MappingBehavior.EndpointIndependent ? text
            : Allocation == PortAssignment.Sequential ? text + ", sequential ports" : text + ", random ports";
    }

    private static string Short(MappingBehavior m) => m switch
    {
        MappingBehavior.EndpointIndependent => "EI",
        MappingBehavior.AddressDependent => "AD",
        _ => "APD",
    };

    private static string Short(FilteringBehavior f) => f switch
    {
        FilteringBehavior.EndpointIndependent => "EI",
        FilteringBehavior.AddressDependent => "AD",
        _ => "APD",
    };
}

/// <summary>What a cell should end in, and why, in one sentence.</summary>
/// <param name="Path">The path the NATs' behaviour permits (<see cref="MatrixPath.Relay"/> when only the relay
/// can connect, <see cref="MatrixPath.Failed"/> when that is so and no relay is configured).</param>
/// <param name="Method">The method that finds it.</param>
/// <param name="Reason">Why, from the knobs.</param>
/// <param name="Probability">For birthday probing: the chance the budget finds a pair.</param>
public sealed record OracleVerdict(MatrixPath Path, TraversalMethod Method, string Reason, double? Probability = null);

/// <summary>What the oracle assumes the traversal may spend and use.</summary>
public sealed record OracleOptions
{
    /// <summary>A TURN relay is configured.</summary>
    public bool Relay { get; init; } = true;

    /// <summary>The traversal's probe budget (sockets and probes for birthday probing, predicted ports).</summary>
    public ProbeBudget Budget { get; init; } = new();

    /// <summary>Peers ask their router for a port mapping (NAT-PMP, PCP) where it offers one.</summary>
    public bool PortMapping { get; init; }

    /// <summary>Birthday probing is expected to connect when its success probability is at least this.</summary>
    public double Confidence { get; init; } = 0.95;
}

/// <summary>
/// What RFC 4787's behaviours permit between two peers, derived from NAT knobs (mapping, filtering, port
/// assignment; hairpinning for same-LAN cells), never from preset names, so a topology of custom knobs gets a
/// verdict too. Rules, first match wins (A and B interchangeable):
/// <list type="number">
/// <item>same LAN: direct over host candidates, whatever the hairpinning;</item>
/// <item>with port mapping on, a side whose only NAT offers NAT-PMP or PCP: direct, port-mapped;</item>
/// <item>both ports known (no NAT or endpoint-independent mapping): direct, server-reflexive;</item>
/// <item>one side's port known and its filter admits any port of the other's address (EIF, ADF, no NAT): direct,
///   peer-reflexive (the other side's check arrives from whatever port its NAT picked and is answered there);</item>
/// <item>both ports known or predictable (sequential allocator): direct by port prediction;</item>
/// <item>one side's port random: direct by birthday probing if the prober's probes all leave from one endpoint the
///   random side knows (its port known or predictable and stable toward the peer), or the random side keeps one
///   port toward the peer's address and admits any of its ports, and the budget's chance is at least the
///   confidence;</item>
/// <item>otherwise the relay (or nothing, without one).</item>
/// </list>
/// </summary>
public static class TraversalOracle
{
    /// <summary>The verdict for a cell between <paramref name="a"/> and <paramref name="b"/> (either may be a
    /// same-LAN type, which is a cell of its own: then both must be it).</summary>
    public static OracleVerdict Predict(MatrixType a, MatrixType b, OracleOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (a.Placement == MatrixPlacement.SameLan || b.Placement == MatrixPlacement.SameLan)
        {
            if (a != b)
            {
                throw new ArgumentException($"{a.Name} x {b.Name}: a same-LAN type is a cell of its own, paired only with itself");
            }

            return SameLan(a.Chain[0]);
        }

        if (options?.PortMapping == true && (MatrixLab.OffersPortMapping(a) || MatrixLab.OffersPortMapping(b)))
        {
            var mapped = MatrixLab.OffersPortMapping(a) ? a : b;
            return new(MatrixPath.Direct, TraversalMethod.PortMapped,
                $"{mapped.Name}'s router maps the peer's port on request (NAT-PMP/PCP): an explicit mapping admits anyone, and the peer's traffic to every destination leaves through it, so the other side's checks reach it and are answered from it, whatever that side's NAT does.");
        }

        return Predict(EffectiveNat.Of(a.Chain), EffectiveNat.Of(b.Chain), options);
    }

    /// <summary>Two hosts on one LAN behind a NAT with <paramref name="policy"/>.</summary>
    public static OracleVerdict SameLan(NatPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(policy);
        return new OracleVerdict(MatrixPath.Direct, TraversalMethod.Host, policy.Hairpinning == HairpinBehavior.None
            ? "Both hosts share a LAN: their host candidates reach each other without crossing the NAT, so its missing hairpinning does not matter."
            : "Both hosts share a LAN: their host candidates reach each other without crossing the NAT (its hairpinning would also carry the reflexive pairs, which rank lower).");
    }

    /// <summary>The verdict between a peer behind <paramref name="a"/> and one behind <paramref name="b"/>.</summary>
    public static OracleVerdict Predict(EffectiveNat a, EffectiveNat b, OracleOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        options ??= new OracleOptions();
        var budget = options.Budget;

        if (a.Open && b.Open)
        {
            return new(MatrixPath.Direct, TraversalMethod.Host, "Neither side has a NAT: the host candidates are public addresses.");
        }

        if (a.Knowledge == PortKnowledge.Known && b.Knowledge == PortKnowledge.Known)
        {
            return new(MatrixPath.Direct, TraversalMethod.Reflexive, a.Open || b.Open
                ? $"{Side(a.Open ? b : a)} maps endpoint-independently and the other side has no NAT: the reflexive candidate is the endpoint to reach, and the checks from it open its filter."
                : "Both map endpoint-independently: each server-reflexive candidate is the endpoint the other must reach, and simultaneous checks open both filters.");
        }

        foreach (var (known, other) in new[] { (a, b), (b, a) })
        {
            if (known.Knowledge == PortKnowledge.Known && known.AdmitsAnyPortOfPeer)
            {
                var why = known.Open
                    ? "one side has no NAT, so the other's checks reach its public host candidate"
                    : known.Filtering == FilteringBehavior.EndpointIndependent
                        ? $"{Side(known)} maps endpoint-independently and filters nothing, so the other's checks reach its reflexive candidate"
                        : $"{Side(known)} maps endpoint-independently and its address-dependent filter admits any port of an address it has sent to, so the other's checks reach its reflexive candidate";
                return new(MatrixPath.Direct, TraversalMethod.PeerReflexive,
                    $"{Capital(why)} from whatever port {Side(other)} picks, and the answer goes back there (peer-reflexive).");
            }
        }

        if (a.Knowledge != PortKnowledge.Unknown && b.Knowledge != PortKnowledge.Unknown && budget.PredictedPorts > 0)
        {
            var predicted = a.Knowledge == PortKnowledge.Predictable ? a : b;
            var both = a.Knowledge == PortKnowledge.Predictable && b.Knowledge == PortKnowledge.Predictable;
            return new(MatrixPath.Direct, TraversalMethod.Prediction, both
                ? $"Both NATs allocate a new port per destination in sequence ({a}; {b}): each side learns its step from two STUN servers, and both aim at the ports their next mappings will get."
                : $"{Capital(Side(predicted))} allocates a new port per destination in sequence: its step is learnt from two STUN servers, so its next mapping is predicted and both sides aim at known endpoints.");
        }

        OracleVerdict? unlikely = null;
        foreach (var (random, prober) in new[] { (a, b), (b, a) })
        {
            if (random.Knowledge != PortKnowledge.Unknown)
            {
                continue;
            }

            // The random side's K sockets each get one mapping toward the prober; the prober's probes must reach
            // those mappings and be admitted, and the answers must leave from the port probed.
            var proberFixed = prober.StableTowardPeer && prober.Knowledge != PortKnowledge.Unknown;
            var randomAdmitsAny = random.StableTowardPeer && random.AdmitsAnyPortOfPeer;
            if (!proberFixed && !randomAdmitsAny)
            {
                continue;
            }

            var p = BirthdayProbing.SuccessProbability(budget.HardSideSockets, random.PortRangeSize, budget.Total);
            var odds = string.Create(CultureInfo.InvariantCulture,
                $"{budget.HardSideSockets} mappings among {random.PortRangeSize:N0} ports and {budget.Total:N0} probes meet with probability {p:P1}");
            var how = proberFixed
                ? $"{Capital(Side(random))} gives each destination a random port, but {Side(prober)}'s probes all leave from one endpoint it can know: birthday probing"
                : $"{Capital(Side(random))} picks random ports but keeps one toward the peer's address and admits any of its ports: birthday probing";
            if (p >= options.Confidence)
            {
                return new(MatrixPath.Direct, TraversalMethod.Birthday, $"{how} ({odds}).", p);
            }

            unlikely ??= Fallback(options, $"{how} could work, but {odds}, under the {options.Confidence:P0} the oracle counts on.", p);
        }

        if (unlikely is not null) return unlikely;
        return Fallback(options, Unreachable(a, b));
    }

    private static string Unreachable(EffectiveNat a, EffectiveNat b)
    {
        if (a.Knowledge == PortKnowledge.Unknown && b.Knowledge == PortKnowledge.Unknown)
        {
            return "Both NATs give every destination a new random port: neither side can know or guess the other's mapping within any budget.";
        }

        var (sequential, random) = a.Knowledge == PortKnowledge.Unknown ? (b, a) : (a, b);
        return $"{Capital(Side(sequential))} allocates in sequence but a new port per destination, and {Side(random)} a random port per destination: every probe moves both, so no pair of mappings meets.";
    }

    private static OracleVerdict Fallback(OracleOptions options, string reason, double? p = null) => options.Relay
        ? new(MatrixPath.Relay, TraversalMethod.Relay, $"{reason} Only the relay connects.", p)
        : new(MatrixPath.Failed, TraversalMethod.Relay, $"{reason} With no relay, nothing connects.", p);

    private static string Side(EffectiveNat n) => n.Open ? "the side with no NAT" : $"the {n} side";

    private static string Capital(string s) => s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..];
}
