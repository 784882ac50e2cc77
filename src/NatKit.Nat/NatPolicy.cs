namespace NatKit.Nat;

/// <summary>
/// How a NAT behaves: one knob per behaviour RFC 4787, RFC 5382, RFC 5508, RFC 6888 and RFC 7857 name. The
/// defaults are <see cref="NatPresets.RfcRecommended"/>. Knobs are data: build one with <c>with</c> from a preset
/// and call <see cref="Validate"/> (the engine does) to learn which field is wrong.
/// </summary>
public sealed record NatPolicy
{
    /// <summary>RFC 2119 floor for UDP mapping timers (RFC 4787 REQ-5: MUST NOT expire in less than 2 minutes).</summary>
    public static readonly TimeSpan UdpTimeoutFloor = TimeSpan.FromMinutes(2);

    /// <summary>RFC 4787 REQ-1: mapping reuse.</summary>
    public MappingBehavior Mapping { get; init; } = MappingBehavior.EndpointIndependent;

    /// <summary>RFC 4787 REQ-8 (and RFC 5382 REQ-3 for TCP): inbound filtering.</summary>
    public FilteringBehavior Filtering { get; init; } = FilteringBehavior.AddressDependent;

    /// <summary>RFC 4787 REQ-3: port assignment.</summary>
    public PortAssignment PortAssignment { get; init; } = PortAssignment.Preserving;

    /// <summary>RFC 4787 REQ-4: keep the parity (even/odd) of the internal port in the external port.</summary>
    public bool PortParity { get; init; } = true;

    /// <summary>RFC 4787 REQ-2: address pooling over several external addresses.</summary>
    public AddressPooling Pooling { get; init; } = AddressPooling.Paired;

    /// <summary>RFC 4787 REQ-6: which direction refreshes a mapping.</summary>
    public RefreshDirection Refresh { get; init; } = RefreshDirection.Outbound;

    /// <summary>RFC 4787 REQ-9 (RFC 5382 REQ-8, RFC 5508 REQ-7): hairpinning.</summary>
    public HairpinBehavior Hairpinning { get; init; } = HairpinBehavior.ExternalSource;

    /// <summary>RFC 4787 REQ-12 / RFC 5508 REQ-3 and REQ-4: translate ICMP errors (embedded header included).
    /// Off means ICMP errors are dropped.</summary>
    public bool TranslateIcmpErrors { get; init; } = true;

    /// <summary>RFC 4787 REQ-5: UDP mapping idle timeout (default 300 s, never below 120 s unless
    /// <see cref="AllowShortUdpTimeout"/>).</summary>
    public TimeSpan UdpTimeout { get; init; } = TimeSpan.FromSeconds(300);

    /// <summary>Idle timeout of a UDP session that has seen no inbound packet yet (Linux's "unreplied" timer);
    /// null means <see cref="UdpTimeout"/>. Subject to the same 120 s floor.</summary>
    public TimeSpan? UdpUnrepliedTimeout { get; init; }

    /// <summary>Force UDP timers below RFC 4787 REQ-5's 2-minute floor (to model devices that do, like Linux).</summary>
    public bool AllowShortUdpTimeout { get; init; }

    /// <summary>RFC 5382 REQ-5: established TCP idle timeout (default 2 h 4 min).</summary>
    public TimeSpan TcpEstablishedTimeout { get; init; } = TimeSpan.FromSeconds(7440);

    /// <summary>RFC 5382 REQ-5 and RFC 7857 section 2.2: partially open, closing or reset TCP (default 4 min).</summary>
    public TimeSpan TcpTransitoryTimeout { get; init; } = TimeSpan.FromSeconds(240);

    /// <summary>RFC 5508 REQ-1: ICMP query (echo) mapping timeout (default 60 s).</summary>
    public TimeSpan IcmpQueryTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>RFC 5382 REQ-4: unsolicited inbound SYN.</summary>
    public UnsolicitedSynBehavior UnsolicitedSyn { get; init; } = UnsolicitedSynBehavior.Drop;

    /// <summary>RFC 4787 REQ-3 and RFC 6888 REQ-3: lowest external port handed out.</summary>
    public int PortRangeStart { get; init; } = 1024;

    /// <summary>Highest external port handed out.</summary>
    public int PortRangeEnd { get; init; } = 65535;

    /// <summary>RFC 6888 REQ-4: most mappings one internal address may hold per protocol; 0 means no limit
    /// (the flow table's size still bounds it).</summary>
    public int MaxMappingsPerHost { get; init; }

    /// <summary>RFC 6888 REQ-8: a freed external port is not handed out again for this long (default 120 s).</summary>
    public TimeSpan PortHoldDown { get; init; } = TimeSpan.FromSeconds(120);

    /// <summary>Linux conntrack's rule: an external port may serve several mappings as long as the remote
    /// endpoints differ (the reply 5-tuple stays unique). Needs address-and-port-dependent mapping and
    /// filtering, because an inbound packet must name its flow.</summary>
    public bool SharePortsAcrossDestinations { get; init; }

    /// <summary>Serve NAT-PMP (RFC 6886) on the inside, UDP port 5351: hosts may ask for explicit mappings.</summary>
    public bool ServeNatPmp { get; init; }

    /// <summary>Serve PCP (RFC 6887) on the inside, UDP port 5351 (shared with NAT-PMP by version number).</summary>
    public bool ServePcp { get; init; }

    /// <summary>Serve UPnP IGD (SSDP on 239.255.255.250:1900 and WANIPConnection over SOAP) on the inside.</summary>
    public bool ServeUpnp { get; init; }

    /// <summary>RFC 6887 section 15: the longest lifetime an explicit mapping is granted (longer requests are cut
    /// to this; default 24 h).</summary>
    public TimeSpan PortMappingMaxLifetime { get; init; } = TimeSpan.FromHours(24);

    /// <summary>RFC 6887 section 15: the shortest lifetime a PCP server grants (shorter requests are raised to
    /// this, the RFC's 120 s by default). Zero lifetimes still delete.</summary>
    public TimeSpan PortMappingMinLifetime { get; init; } = TimeSpan.FromSeconds(120);

    /// <summary>RFC 6888 REQ-4 for explicit mappings: most port-mapping-protocol mappings one internal address may
    /// hold (all protocols together); 0 means none may be made. They also count toward
    /// <see cref="MaxMappingsPerHost"/> when that is set.</summary>
    public int MaxPortMappingsPerHost { get; init; } = 64;

    /// <summary>RFC 6887 section 13.1 THIRD_PARTY (and UPnP's NewInternalClient): may a host map a port for another
    /// inside address? Off by default (RFC 6887: only when the operator says so).</summary>
    public bool AllowThirdPartyMappings { get; init; }

    /// <summary>True when the policy offers any port mapping protocol.</summary>
    public bool OffersPortMapping => ServeNatPmp || ServePcp || ServeUpnp;

    /// <summary>Returns one sentence per invalid field, each starting with the field's name; empty when valid.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (!Enum.IsDefined(Mapping)) errors.Add($"{nameof(Mapping)}: {Mapping} is not a mapping behaviour (RFC 4787 REQ-1).");
        if (!Enum.IsDefined(Filtering)) errors.Add($"{nameof(Filtering)}: {Filtering} is not a filtering behaviour (RFC 4787 REQ-8).");
        if (!Enum.IsDefined(PortAssignment)) errors.Add($"{nameof(PortAssignment)}: {PortAssignment} is not a port assignment (RFC 4787 REQ-3).");
        if (!Enum.IsDefined(Pooling)) errors.Add($"{nameof(Pooling)}: {Pooling} is not a pooling behaviour (RFC 4787 REQ-2).");
        if (!Enum.IsDefined(Refresh)) errors.Add($"{nameof(Refresh)}: {Refresh} is not a refresh direction (RFC 4787 REQ-6).");
        if (!Enum.IsDefined(Hairpinning)) errors.Add($"{nameof(Hairpinning)}: {Hairpinning} is not a hairpin behaviour (RFC 4787 REQ-9).");
        if (!Enum.IsDefined(UnsolicitedSyn)) errors.Add($"{nameof(UnsolicitedSyn)}: {UnsolicitedSyn} is not an unsolicited-SYN behaviour (RFC 5382 REQ-4).");
        CheckTimer(errors, nameof(UdpTimeout), UdpTimeout);
        if (UdpUnrepliedTimeout is { } unreplied) CheckTimer(errors, nameof(UdpUnrepliedTimeout), unreplied);
        if (!AllowShortUdpTimeout)
        {
            if (UdpTimeout < UdpTimeoutFloor)
                errors.Add($"{nameof(UdpTimeout)}: {UdpTimeout.TotalSeconds} s is below RFC 4787 REQ-5's 120 s floor; set {nameof(AllowShortUdpTimeout)} to force it.");
            if (UdpUnrepliedTimeout is { } u && u < UdpTimeoutFloor)
                errors.Add($"{nameof(UdpUnrepliedTimeout)}: {u.TotalSeconds} s is below RFC 4787 REQ-5's 120 s floor; set {nameof(AllowShortUdpTimeout)} to force it.");
        }

        CheckTimer(errors, nameof(TcpEstablishedTimeout), TcpEstablishedTimeout);
        CheckTimer(errors, nameof(TcpTransitoryTimeout), TcpTransitoryTimeout);
        CheckTimer(errors, nameof(IcmpQueryTimeout), IcmpQueryTimeout);
        if (PortHoldDown < TimeSpan.Zero || PortHoldDown > TimeSpan.FromHours(1))
            errors.Add($"{nameof(PortHoldDown)}: {PortHoldDown} must be between 0 and 1 hour (RFC 6888 REQ-8).");
        if (PortRangeStart is < 1 or > 65535) errors.Add($"{nameof(PortRangeStart)}: {PortRangeStart} is not a port (1..65535).");
        if (PortRangeEnd is < 1 or > 65535) errors.Add($"{nameof(PortRangeEnd)}: {PortRangeEnd} is not a port (1..65535).");
        if (PortRangeEnd < PortRangeStart) errors.Add($"{nameof(PortRangeEnd)}: {PortRangeEnd} is below {nameof(PortRangeStart)} {PortRangeStart}.");
        else if (PortParity && PortRangeEnd == PortRangeStart)
            errors.Add($"{nameof(PortParity)}: a one-port range cannot offer both parities (RFC 4787 REQ-4).");
        if (MaxMappingsPerHost < 0) errors.Add($"{nameof(MaxMappingsPerHost)}: {MaxMappingsPerHost} must be 0 (no limit) or more (RFC 6888 REQ-4).");
        if (SharePortsAcrossDestinations && (Mapping != MappingBehavior.AddressAndPortDependent || Filtering != FilteringBehavior.AddressAndPortDependent))
            errors.Add($"{nameof(SharePortsAcrossDestinations)}: needs {nameof(Mapping)} and {nameof(Filtering)} AddressAndPortDependent, or an inbound packet could not name its mapping.");
        if (PortMappingMaxLifetime <= TimeSpan.Zero || PortMappingMaxLifetime > TimeSpan.FromDays(30))
            errors.Add($"{nameof(PortMappingMaxLifetime)}: {PortMappingMaxLifetime} must be more than 0 and at most 30 days (RFC 6887 section 15).");
        if (PortMappingMinLifetime < TimeSpan.Zero || PortMappingMinLifetime > PortMappingMaxLifetime)
            errors.Add($"{nameof(PortMappingMinLifetime)}: {PortMappingMinLifetime} must be between 0 and {nameof(PortMappingMaxLifetime)} ({PortMappingMaxLifetime}) (RFC 6887 section 15).");
        if (MaxPortMappingsPerHost is < 0 or > 65535) errors.Add($"{nameof(MaxPortMappingsPerHost)}: {MaxPortMappingsPerHost} must be between 0 and 65535 (RFC 6888 REQ-4).");
        return errors;
    }

    private static void CheckTimer(List<string> errors, string name, TimeSpan value)
    {
        if (value <= TimeSpan.Zero || value > TimeSpan.FromDays(30))
            errors.Add($"{name}: {value} must be more than 0 and at most 30 days.");
    }
}
