namespace NatKit.Traversal.Ice;

/// <summary>
/// The priority formulas of RFC 8445: a candidate's (section 5.1.2.1) and a pair's (section 6.1.2.3), with the
/// recommended type preferences (section 5.1.2.2: host 126, peer-reflexive 110, server-reflexive 100, relayed 0).
/// Port-mapped candidates are server-reflexive on the wire but more dependable than a STUN mapping (the NAT was
/// asked to open them), so they rank between peer-reflexive and server-reflexive; predicted and birthday candidates
/// are guesses and rank below a mapping a server saw.
/// </summary>
public static class IcePriority
{
    public const byte HostPreference = 126;
    public const byte PeerReflexivePreference = 110;
    public const byte PortMappedPreference = 105;
    public const byte ServerReflexivePreference = 100;
    public const byte PredictedPreference = 90;
    public const byte RelayedPreference = 0;

    /// <summary>The local preference of a single-homed agent (section 5.1.2.1: 65535 when there is one base).</summary>
    public const ushort MaxLocalPreference = 65535;

    /// <summary>priority = 2^24 * type preference + 2^8 * local preference + (256 - component ID).</summary>
    public static uint Candidate(byte typePreference, ushort localPreference, int component)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(component, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(component, 256);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(typePreference, (byte)126);
        return ((uint)typePreference << 24) | ((uint)localPreference << 8) | (uint)(256 - component);
    }

    /// <summary>The type preference for a candidate of <paramref name="type"/> found by <paramref name="origin"/>.</summary>
    public static byte TypePreference(IceCandidateType type, IceCandidateOrigin origin = IceCandidateOrigin.Host) =>
        type switch
        {
            IceCandidateType.Host => HostPreference,
            IceCandidateType.PeerReflexive => PeerReflexivePreference,
            IceCandidateType.ServerReflexive => origin switch
            {
                IceCandidateOrigin.PortMapped => PortMappedPreference,
                IceCandidateOrigin.PortPrediction or IceCandidateOrigin.BirthdayProbe => PredictedPreference,
                _ => ServerReflexivePreference,
            },
            _ => RelayedPreference,
        };

    /// <summary>The PRIORITY a check sent from a base carries: the priority of a peer-reflexive candidate with that
    /// base's local preference and component (section 7.1.1).</summary>
    public static uint PeerReflexiveFor(uint basePriority, int component) =>
        ((uint)PeerReflexivePreference << 24) | (basePriority & 0x00FF_FF00) | (uint)(256 - component);

    /// <summary>pair priority = 2^32 * min(G, D) + 2 * max(G, D) + (G &gt; D ? 1 : 0), where G is the controlling
    /// agent's candidate priority and D the controlled agent's (section 6.1.2.3).</summary>
    public static ulong Pair(uint controlling, uint controlled) =>
        ((ulong)Math.Min(controlling, controlled) << 32) + (2UL * Math.Max(controlling, controlled)) +
        (controlling > controlled ? 1UL : 0UL);
}
