namespace NatKit.Nat;

/// <summary>A named policy and why it has the values it has.</summary>
public sealed record NatPreset(string Name, string Summary, string Explanation, NatPolicy Policy)
{
    /// <summary>Other names <see cref="NatPresets.Find"/> accepts for this preset.</summary>
    public IReadOnlyList<string> Aliases { get; init; } = [];
}

/// <summary>
/// Named NAT behaviours: the classic RFC 3489 cones, Tailscale natlab's types, Linux's masquerade and the RFC
/// recommendation. docs/nat.md tabulates every knob of every preset; a test pins each one's behaviour.
/// </summary>
public static class NatPresets
{
    /// <summary>What the RFCs recommend (RFC 4787, 5382, 5508, 6888, 7857), with the secure choice where they
    /// leave one (address-dependent filtering, outbound refresh, silent drop of unsolicited SYNs).</summary>
    public static readonly NatPolicy RfcRecommended = new();

    /// <summary>RFC 3489 full cone: one mapping per internal endpoint that anyone may reach. Like the home routers
    /// it models (and the cones and symmetric NATs derived from it), it offers NAT-PMP, PCP and UPnP IGD.</summary>
    public static readonly NatPolicy FullCone = RfcRecommended with
    {
        Filtering = FilteringBehavior.EndpointIndependent,
        PortParity = false,
        Hairpinning = HairpinBehavior.None,
        ServeNatPmp = true,
        ServePcp = true,
        ServeUpnp = true,
    };

    /// <summary>RFC 3489 restricted cone: like full cone, but only addresses the host sent to may answer.</summary>
    public static readonly NatPolicy RestrictedCone = FullCone with { Filtering = FilteringBehavior.AddressDependent };

    /// <summary>RFC 3489 port-restricted cone: only address and port pairs the host sent to may answer.</summary>
    public static readonly NatPolicy PortRestrictedCone = FullCone with { Filtering = FilteringBehavior.AddressAndPortDependent };

    /// <summary>RFC 3489 symmetric: a new random external port per destination, answers only from there.</summary>
    public static readonly NatPolicy Symmetric = FullCone with
    {
        Mapping = MappingBehavior.AddressAndPortDependent,
        Filtering = FilteringBehavior.AddressAndPortDependent,
        PortAssignment = PortAssignment.Random,
    };

    /// <summary>Symmetric with a sequential port allocator: a new mapping per destination endpoint, on the port
    /// after the previous mapping's. Its next port is predictable from two STUN answers.</summary>
    public static readonly NatPolicy SymmetricSequential = Symmetric with { PortAssignment = PortAssignment.Sequential };

    /// <summary>Tailscale natlab "easy": endpoint-independent mapping to a random high port, answers only from
    /// address and port pairs the host sent to within 300 s (refreshed by outbound traffic). A home router: it
    /// offers NAT-PMP, PCP and UPnP IGD.</summary>
    public static readonly NatPolicy TailscaleEasy = RfcRecommended with
    {
        Mapping = MappingBehavior.EndpointIndependent,
        Filtering = FilteringBehavior.AddressAndPortDependent,
        PortAssignment = PortAssignment.Random,
        PortParity = false,
        PortRangeStart = 32768,
        PortRangeEnd = 65535,
        Refresh = RefreshDirection.Outbound,
        Hairpinning = HairpinBehavior.None,
        PortHoldDown = TimeSpan.Zero,
        ServeNatPmp = true,
        ServePcp = true,
        ServeUpnp = true,
    };

    /// <summary>Tailscale natlab "easyaf": "easy" with address-dependent filtering.</summary>
    public static readonly NatPolicy TailscaleEasyAf = TailscaleEasy with { Filtering = FilteringBehavior.AddressDependent };

    /// <summary>Tailscale natlab "hard": a random high port per destination endpoint (FreeBSD/pf style), with no
    /// port mapping protocol (pfSense ships miniupnpd turned off).</summary>
    public static readonly NatPolicy TailscaleHard = TailscaleEasy with
    {
        Mapping = MappingBehavior.AddressAndPortDependent,
        Filtering = FilteringBehavior.AddressAndPortDependent,
        ServeNatPmp = false,
        ServePcp = false,
        ServeUpnp = false,
    };

    /// <summary>Tailscale natlab "one2one": a cloud VM's 1:1 NAT. Ports kept, no filtering. Give the config a
    /// <see cref="NatConfig.DmzHost"/> (the sole inside host) so unsolicited inbound reaches it on any port.</summary>
    public static readonly NatPolicy TailscaleOne2One = RfcRecommended with
    {
        Mapping = MappingBehavior.EndpointIndependent,
        Filtering = FilteringBehavior.EndpointIndependent,
        PortAssignment = PortAssignment.Preserving,
        PortParity = false,
        PortRangeStart = 1,
        PortRangeEnd = 65535,
        Refresh = RefreshDirection.Both,
        Hairpinning = HairpinBehavior.None,
        PortHoldDown = TimeSpan.Zero,
    };

    /// <summary>Linux conntrack + MASQUERADE as shipped: a mapping per 5-tuple, the source port kept whenever
    /// the reply tuple stays unique (so two hosts may share an external port toward different destinations),
    /// replies only from the tuple, no hairpin, both directions refresh, and the kernel's default timers
    /// (nf_conntrack_udp_timeout 30 s, udp_timeout_stream 120 s, tcp_timeout_established 432000 s,
    /// time_wait/syn_sent 120 s, icmp_timeout 30 s), forced below RFC 4787's 120 s floor.</summary>
    public static readonly NatPolicy LinuxMasquerade = RfcRecommended with
    {
        Mapping = MappingBehavior.AddressAndPortDependent,
        Filtering = FilteringBehavior.AddressAndPortDependent,
        PortAssignment = PortAssignment.Preserving,
        PortParity = false,
        SharePortsAcrossDestinations = true,
        PortRangeStart = 1,
        PortRangeEnd = 65535,
        Refresh = RefreshDirection.Both,
        Hairpinning = HairpinBehavior.None,
        AllowShortUdpTimeout = true,
        UdpTimeout = TimeSpan.FromSeconds(120),
        UdpUnrepliedTimeout = TimeSpan.FromSeconds(30),
        TcpEstablishedTimeout = TimeSpan.FromSeconds(432000),
        TcpTransitoryTimeout = TimeSpan.FromSeconds(120),
        IcmpQueryTimeout = TimeSpan.FromSeconds(30),
        PortHoldDown = TimeSpan.Zero,
    };

    /// <summary>Every preset by name, in documentation order.</summary>
    public static IReadOnlyList<NatPreset> All { get; } =
    [
        new("full-cone", "EIM + EIF: anyone reaches a mapping (RFC 3489 full cone).",
            "One mapping per internal endpoint (RFC 4787 REQ-1 endpoint-independent), source port kept when free, and no inbound filtering (REQ-8 endpoint-independent): once a host has sent one packet, any outside endpoint can reach it. No hairpinning, as on many old home routers.",
            FullCone),
        new("restricted-cone", "EIM + ADF (RFC 3489 restricted cone).",
            "Full cone's mapping, but inbound packets are accepted only from addresses the internal endpoint has sent to (REQ-8 address-dependent), from any port.",
            RestrictedCone),
        new("port-restricted-cone", "EIM + APDF (RFC 3489 port-restricted cone).",
            "Full cone's mapping, but inbound packets are accepted only from the exact address and port pairs the internal endpoint has sent to (REQ-8 address-and-port-dependent).",
            PortRestrictedCone),
        new("symmetric", "APDM + APDF, random ports 1024-65535 (RFC 3489 symmetric; also named symmetric-random).",
            "A new mapping, on a random port anywhere in 1024-65535, for every destination address and port (REQ-1 address-and-port-dependent); only that destination may answer. STUN sees a different, unpredictable port for every server: the hardest NAT to traverse, and the lab's model of a 'hard' NAT (a birthday-paradox prober must hit one of the mapped ports among 64,512; Tailscale natlab's 'hard' draws from 32768-65535 only, which doubles the prober's odds).",
            Symmetric) { Aliases = ["symmetric-random"] },
        new("symmetric-sequential", "APDM + APDF, sequential ports (symmetric with a predictable allocator).",
            "A new mapping for every destination address and port (REQ-1 address-and-port-dependent), on the next free port after the previous mapping's (REQ-3 allows any assignment; many carrier and enterprise NATs allocate this way); only that destination may answer. Two STUN servers see consecutive ports, so the port of the next mapping can be predicted: the NAT that port prediction defeats.",
            SymmetricSequential),
        new("easy", "Tailscale natlab 'easy': EIM, APDF, random port 32768-65535.",
            "As Tailscale's natlab models a typical Linux home router: one mapping per internal endpoint on a random high port (32768-65535, not preserved), and inbound packets only from address and port pairs the host sent to recently (outbound traffic refreshes). No hairpinning, no hold-down.",
            TailscaleEasy),
        new("easyaf", "Tailscale natlab 'easyaf': easy with ADF.",
            "Tailscale's 'easy' with address-dependent filtering: any port of an address the host has sent to may answer.",
            TailscaleEasyAf),
        new("hard", "Tailscale natlab 'hard': APDM + APDF, random port 32768-65535.",
            "As Tailscale's natlab models FreeBSD/pfSense: a random high port per destination endpoint, and only that endpoint may answer.",
            TailscaleHard),
        new("one2one", "Tailscale natlab 'one2one': 1:1 NAT, ports kept, no filtering.",
            "A cloud VM's 1:1 NAT: the external address stands for one inside host, ports are kept (REQ-3 preserving over 1-65535) and nothing is filtered. Set the config's DMZ host to that inside host so unsolicited inbound traffic reaches it on every port.",
            TailscaleOne2One),
        new("linux-masquerade", "Linux conntrack + MASQUERADE defaults.",
            "A conntrack entry per 5-tuple; the source port is kept whenever the reply tuple stays unique, so two inside hosts may share an external port toward different destinations; replies only from the tuple; no hairpin; both directions refresh; the kernel's default timers (UDP 30 s unreplied / 120 s stream, TCP established 432000 s, TIME_WAIT/SYN_SENT 120 s, ICMP 30 s), which this preset forces below RFC 4787's 120 s floor.",
            LinuxMasquerade),
        new("rfc-recommended", "What RFC 4787/5382/5508/6888/7857 recommend.",
            "Endpoint-independent mapping (REQ-1), address-dependent filtering (REQ-8's stricter recommendation), source port and parity kept (REQ-3, REQ-4), paired pooling (REQ-2), outbound refresh (REQ-6), external-source hairpinning (REQ-9), ICMP errors translated (RFC 5508), UDP 300 s, TCP 7440 s established and 240 s transitory (RFC 5382 REQ-5), ICMP 60 s (RFC 5508 REQ-1), ports from 1024, a 120 s freed-port hold-down (RFC 6888 REQ-8).",
            RfcRecommended),
    ];

    /// <summary>Finds a preset by name or alias (case-insensitive), or null.</summary>
    public static NatPreset? Find(string name)
    {
        foreach (var p in All)
        {
            if (string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase))
            {
                return p;
            }

            foreach (var alias in p.Aliases)
            {
                if (string.Equals(alias, name, StringComparison.OrdinalIgnoreCase))
                {
                    return p;
                }
            }
        }

        return null;
    }
}
