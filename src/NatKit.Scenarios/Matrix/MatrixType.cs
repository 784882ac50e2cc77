using NatKit.Linux;
using NatKit.Nat;

namespace NatKit.Scenarios.Matrix;

/// <summary>Where a matrix peer sits.</summary>
public enum MatrixPlacement
{
    /// <summary>On the internet itself, with a public address and no NAT.</summary>
    Open,

    /// <summary>On a LAN of its own behind <see cref="MatrixType.Chain"/> (one NAT, or a home NAT behind a
    /// carrier-grade NAT).</summary>
    BehindNat,

    /// <summary>Both peers on one LAN behind one NAT (<see cref="MatrixType.Chain"/>'s only policy): a cell of its
    /// own, not paired with other types.</summary>
    SameLan,
}

/// <summary>
/// One kind of network a matrix peer sits in: no NAT, a NAT with some policy, a chain of NATs (inner first), or
/// both peers on one LAN behind one NAT. What the oracle reads is the chain's knobs, never the name.
/// </summary>
/// <param name="Name">The name `--types` takes.</param>
/// <param name="Description">One line for help and reports.</param>
/// <param name="Placement">Where the peer sits.</param>
/// <param name="Chain">The NATs between the peer and the internet, the peer's own router first. Empty for
/// <see cref="MatrixPlacement.Open"/>.</param>
/// <param name="DmzToPeer">The peer's router forwards unsolicited inbound traffic to the peer (a cloud 1:1 NAT's
/// DMZ host, RFC 4787's "static" case).</param>
/// <param name="Kernel">In network namespaces (<see cref="NetnsMatrixCell"/>), the peer's router is kernel
/// nftables NAT with this reference rule set instead of a NatKit gateway; <see cref="Chain"/> is then its twin, the
/// policy that behaves alike, which the in-memory lab and the oracle use.</param>
public sealed record MatrixType(string Name, string Description, MatrixPlacement Placement,
    IReadOnlyList<NatPolicy> Chain, bool DmzToPeer = false, KernelNatKind? Kernel = null)
{
    public override string ToString() => Name;
}

/// <summary>The NAT types the matrix knows by name, in the grid's order.</summary>
public static class MatrixTypes
{
    /// <summary>The carrier's NAT of <c>cgnat</c>: endpoint-independent mapping as RFC 6888 REQ-1 asks, random
    /// high ports, address-and-port-dependent filtering (Tailscale natlab's "easy"), and no port mapping protocol
    /// (a carrier offers PCP at most; this one offers nothing).</summary>
    public static readonly NatPolicy Carrier = NatPresets.TailscaleEasy with { ServeNatPmp = false, ServePcp = false, ServeUpnp = false };

    public static IReadOnlyList<MatrixType> All { get; } =
    [
        new("open", "no NAT: a public address on the internet", MatrixPlacement.Open, []),
        new("one2one", "a cloud 1:1 NAT: ports kept, nothing filtered, unsolicited traffic forwarded to the host",
            MatrixPlacement.BehindNat, [NatPresets.TailscaleOne2One], DmzToPeer: true),
        Single("full-cone"),
        Single("restricted-cone"),
        Single("port-restricted-cone"),
        Single("easy"),
        Single("easyaf"),
        Single("linux-masquerade"),
        Single("symmetric-sequential"),
        new("symmetric-random", "the hard NAT: APDM + APDF, a random port in 1024-65535 per destination (preset symmetric)",
            MatrixPlacement.BehindNat, [NatPresets.Symmetric]),
        new("cgnat", "carrier-grade double NAT: a port-restricted cone home router behind the carrier's 100.64.0.0/10 NAT (EIM, APDF, random ports)",
            MatrixPlacement.BehindNat, [NatPresets.PortRestrictedCone, Carrier]),
        new("same-lan", "both hosts on one LAN behind one port-restricted cone NAT that does not hairpin",
            MatrixPlacement.SameLan, [NatPresets.PortRestrictedCone]),
        new("same-lan-hairpin", "both hosts on one LAN behind one port-restricted cone NAT that hairpins (external source)",
            MatrixPlacement.SameLan, [NatPresets.PortRestrictedCone with { Hairpinning = HairpinBehavior.ExternalSource }]),
    ];

    /// <summary>
    /// The reference document's three kernel NAT routers, for the grid on real namespaces: each runs as nftables
    /// rules there, and as its twin policy in the in-memory lab, so the two verdicts can be compared cell by cell.
    /// DMZ's twin is one2one (one fixed public port that leads back to the peer's, nothing filtered);
    /// <c>masquerade persistent</c>'s is port-restricted-cone; <c>masquerade random</c>'s is symmetric.
    /// </summary>
    public static IReadOnlyList<MatrixType> Kernel { get; } =
    [
        new("kernel-dmz", "kernel nftables DMZ: the peer's UDP leaves from one fixed public port that leads back to it",
            MatrixPlacement.BehindNat, [NatPresets.TailscaleOne2One], DmzToPeer: true, Kernel: KernelNatKind.Dmz),
        new("kernel-persistent", "kernel nftables `masquerade persistent`: endpoint-independent mapping, port-restricted filtering",
            MatrixPlacement.BehindNat, [NatPresets.PortRestrictedCone], Kernel: KernelNatKind.MasqueradePersistent),
        new("kernel-random", "kernel nftables `masquerade random`: a random port per new connection (symmetric)",
            MatrixPlacement.BehindNat, [NatPresets.Symmetric], Kernel: KernelNatKind.MasqueradeRandom),
    ];

    /// <summary>A matrix type by name (<see cref="All"/>, then <see cref="Kernel"/>), or a single NAT of any
    /// preset by the preset's name (case-insensitive); null when none exists.</summary>
    public static MatrixType? Find(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        foreach (var t in All.Concat(Kernel))
        {
            if (string.Equals(t.Name, name, StringComparison.OrdinalIgnoreCase))
            {
                return t;
            }
        }

        return NatPresets.Find(name) is { } preset
            ? new MatrixType(name.ToLowerInvariant(), preset.Summary, MatrixPlacement.BehindNat, [preset.Policy],
                DmzToPeer: preset.Policy == NatPresets.TailscaleOne2One)
            : null;
    }

    /// <summary>Every name <see cref="Find"/> takes, matrix types first.</summary>
    public static IEnumerable<string> Names =>
        All.Concat(Kernel).Select(t => t.Name).Concat(NatPresets.All.Select(p => p.Name)).Distinct(StringComparer.OrdinalIgnoreCase);

    private static MatrixType Single(string preset)
    {
        var p = NatPresets.Find(preset)!;
        return new MatrixType(p.Name, p.Summary, MatrixPlacement.BehindNat, [p.Policy]);
    }
}
