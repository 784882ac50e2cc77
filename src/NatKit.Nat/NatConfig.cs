using NatKit.Packets;

namespace NatKit.Nat;

/// <summary>A permanent inbound mapping: <c>ExternalPort</c> on the outside reaches <c>Internal</c>:<c>InternalPort</c>
/// from anyone, whatever the filtering policy (RFC 4787 section 5 "static mappings").</summary>
/// <param name="Protocol">Udp or Tcp.</param>
/// <param name="ExternalPort">The port on the external address.</param>
/// <param name="Internal">The inside host.</param>
/// <param name="InternalPort">The port on the inside host.</param>
/// <param name="ExternalAddress">Which external address; null means the first.</param>
public sealed record StaticForward(IpProtocol Protocol, int ExternalPort, Ipv4Address Internal, int InternalPort,
    Ipv4Address? ExternalAddress = null);

/// <summary>
/// Everything a <see cref="NatEngine"/> needs: the behaviour (<see cref="Policy"/>), where inside and outside
/// are, and the limits that bound its memory. Validate with <see cref="Validate"/>; the engine's constructor
/// throws <see cref="ArgumentException"/> naming the first bad field.
/// </summary>
public sealed record NatConfig
{
    /// <summary>The behaviour knobs.</summary>
    public NatPolicy Policy { get; init; } = NatPresets.RfcRecommended;

    /// <summary>Addresses on the inside; outbound packets from elsewhere are dropped (<see cref="NatDropReason.SourceNotInside"/>).</summary>
    public IReadOnlyList<Ipv4Prefix> InsidePrefixes { get; init; } = [Ipv4Prefix.Parse("10.0.0.0/8"), Ipv4Prefix.Parse("172.16.0.0/12"), Ipv4Prefix.Parse("192.168.0.0/16"), Ipv4Prefix.Parse("100.64.0.0/10")];

    /// <summary>The external address pool (RFC 4787 REQ-2 pools over these). At least one.</summary>
    public IReadOnlyList<Ipv4Address> ExternalAddresses { get; init; } = [];

    /// <summary>The gateway's own inside address: the source of ICMP errors it sends inside (Time Exceeded,
    /// Fragmentation Needed). Null means the first address of the first inside prefix plus one.</summary>
    public Ipv4Address? InsideAddress { get; init; }

    /// <summary>Most sessions (5-tuples) alive at once: bounds the flow table's memory (RFC 6888 REQ-5).</summary>
    public int MaxFlows { get; init; } = 65536;

    /// <summary>Sessions the tables are sized for at start (null: 1024, or <see cref="MaxFlows"/> if smaller);
    /// they double up to <see cref="MaxFlows"/>. Set it to <see cref="MaxFlows"/> to take all the memory up front
    /// and never pause to grow.</summary>
    public int? InitialFlowCapacity { get; init; }

    /// <summary>Permanent port forwards.</summary>
    public IReadOnlyList<StaticForward> StaticForwards { get; init; } = [];

    /// <summary>Inbound packets that match no mapping go to this inside host, same port; null means dropped.</summary>
    public Ipv4Address? DmzHost { get; init; }

    /// <summary>MTU of the outside link: bigger packets are fragmented, or answered with ICMP Fragmentation
    /// Needed when DF is set (RFC 4787 REQ-13/14, RFC 1191).</summary>
    public int OutsideMtu { get; init; } = 1500;

    /// <summary>MTU of the inside link.</summary>
    public int InsideMtu { get; init; } = 1500;

    /// <summary>IPv6 is recognised but not translated: dropped with a reason, or passed through unchanged.</summary>
    public Ipv6Handling Ipv6 { get; init; } = Ipv6Handling.Drop;

    /// <summary>Most non-first fragments held while their first fragment has not arrived (RFC 4787 REQ-14).</summary>
    public int MaxHeldFragments { get; init; } = 64;

    /// <summary>How long a held fragment or a fragment translation is kept (RFC 791 suggests 15 s).</summary>
    public TimeSpan FragmentTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>Seed for random port choice, so a run is reproducible.</summary>
    public int RandomSeed { get; init; } = 0x4e41;

    /// <summary>The inside address used for ICMP the gateway originates.</summary>
    public Ipv4Address EffectiveInsideAddress =>
        InsideAddress ?? (InsidePrefixes.Count > 0 ? InsidePrefixes[0].At(1) : new Ipv4Address(10, 0, 0, 1));

    /// <summary>Returns one sentence per invalid field, each starting with the field's name; empty when valid.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (Policy is null)
        {
            errors.Add($"{nameof(Policy)}: missing.");
        }
        else
        {
            foreach (var e in Policy.Validate()) errors.Add($"{nameof(Policy)}.{e}");
        }

        if (InsidePrefixes is null || InsidePrefixes.Count == 0) errors.Add($"{nameof(InsidePrefixes)}: at least one inside prefix is needed.");
        if (ExternalAddresses is null || ExternalAddresses.Count == 0) errors.Add($"{nameof(ExternalAddresses)}: at least one external address is needed (RFC 4787 REQ-2 pools over them).");
        else if (ExternalAddresses.Count > 256) errors.Add($"{nameof(ExternalAddresses)}: {ExternalAddresses.Count} addresses; at most 256.");
        else
        {
            for (var i = 0; i < ExternalAddresses.Count; i++)
            {
                for (var j = 0; j < i; j++)
                {
                    if (ExternalAddresses[i] == ExternalAddresses[j]) errors.Add($"{nameof(ExternalAddresses)}: {ExternalAddresses[i]} is listed twice.");
                }

                if (InsidePrefixes is not null && IsInside(ExternalAddresses[i])) errors.Add($"{nameof(ExternalAddresses)}: {ExternalAddresses[i]} is inside an inside prefix.");
            }
        }

        if (MaxFlows is < 16 or > 16_000_000) errors.Add($"{nameof(MaxFlows)}: {MaxFlows} must be between 16 and 16000000.");
        if (InitialFlowCapacity is < 16 || InitialFlowCapacity > MaxFlows) errors.Add($"{nameof(InitialFlowCapacity)}: {InitialFlowCapacity} must be between 16 and {nameof(MaxFlows)} ({MaxFlows}).");
        if (OutsideMtu is < 68 or > 65535) errors.Add($"{nameof(OutsideMtu)}: {OutsideMtu} must be between 68 (RFC 791) and 65535.");
        if (InsideMtu is < 68 or > 65535) errors.Add($"{nameof(InsideMtu)}: {InsideMtu} must be between 68 (RFC 791) and 65535.");
        if (!Enum.IsDefined(Ipv6)) errors.Add($"{nameof(Ipv6)}: {Ipv6} is not an IPv6 handling.");
        if (MaxHeldFragments is < 0 or > 65536) errors.Add($"{nameof(MaxHeldFragments)}: {MaxHeldFragments} must be between 0 and 65536 (RFC 4787 REQ-14 bounds).");
        if (FragmentTimeout <= TimeSpan.Zero || FragmentTimeout > TimeSpan.FromMinutes(2)) errors.Add($"{nameof(FragmentTimeout)}: {FragmentTimeout} must be more than 0 and at most 2 minutes.");
        if (DmzHost is { } dmz && InsidePrefixes is not null && !IsInside(dmz)) errors.Add($"{nameof(DmzHost)}: {dmz} is not inside any inside prefix.");
        if (StaticForwards is not null && Policy is not null)
        {
            for (var i = 0; i < StaticForwards.Count; i++)
            {
                var f = StaticForwards[i];
                var name = $"{nameof(StaticForwards)}[{i}]";
                if (f.Protocol is not (IpProtocol.Udp or IpProtocol.Tcp)) errors.Add($"{name}.{nameof(f.Protocol)}: {f.Protocol}; only Udp and Tcp can be forwarded.");
                if (f.ExternalPort is < 1 or > 65535) errors.Add($"{name}.{nameof(f.ExternalPort)}: {f.ExternalPort} is not a port.");
                if (f.InternalPort is < 1 or > 65535) errors.Add($"{name}.{nameof(f.InternalPort)}: {f.InternalPort} is not a port.");
                if (InsidePrefixes is not null && !IsInside(f.Internal)) errors.Add($"{name}.{nameof(f.Internal)}: {f.Internal} is not inside any inside prefix.");
                if (f.ExternalAddress is { } ea && ExternalAddresses is not null && !ExternalAddresses.Contains(ea)) errors.Add($"{name}.{nameof(f.ExternalAddress)}: {ea} is not one of {nameof(ExternalAddresses)}.");
                for (var j = 0; j < i; j++)
                {
                    var g = StaticForwards[j];
                    if (g.Protocol == f.Protocol && g.ExternalPort == f.ExternalPort && (g.ExternalAddress ?? default) == (f.ExternalAddress ?? default))
                        errors.Add($"{name}.{nameof(f.ExternalPort)}: {f.Protocol} {f.ExternalPort} is already forwarded by {nameof(StaticForwards)}[{j}].");
                }
            }
        }

        return errors;
    }

    /// <summary>True when <paramref name="address"/> is in one of <see cref="InsidePrefixes"/>.</summary>
    public bool IsInside(Ipv4Address address)
    {
        foreach (var p in InsidePrefixes)
        {
            if (p.Contains(address)) return true;
        }

        return false;
    }
}
