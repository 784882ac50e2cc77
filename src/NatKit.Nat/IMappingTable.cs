using NatKit.Packets;

namespace NatKit.Nat;

/// <summary>What a port mapping protocol asks the NAT for: an explicit mapping of an internal endpoint (RFC 6886
/// section 3.3, RFC 6887 section 11, UPnP AddPortMapping).</summary>
/// <param name="Protocol">Udp or Tcp.</param>
/// <param name="Internal">The inside endpoint (port 1..65535).</param>
/// <param name="ExternalPort">The suggested external port; 0 means any.</param>
/// <param name="Lifetime">How long the mapping lives unless refreshed; cut to the policy's
/// <see cref="NatPolicy.PortMappingMaxLifetime"/>. Must be more than zero (deleting is <see cref="IMappingTable.Unmap"/>).</param>
public readonly record struct MappingRequest(IpProtocol Protocol, NatEndpoint Internal, ushort ExternalPort, TimeSpan Lifetime)
{
    /// <summary>Fail rather than hand out another external port than <see cref="ExternalPort"/> (PCP PREFER_FAILURE,
    /// UPnP AddPortMapping).</summary>
    public bool RequireExternalPort { get; init; }

    /// <summary>The suggested external address; null or not one of the NAT's means the NAT's choice.</summary>
    public Ipv4Address? ExternalAddress { get; init; }

    /// <summary>RFC 6887 section 13.3 FILTER: only these remotes may send in (null or empty: anyone). They replace
    /// the mapping's filters on a refresh.</summary>
    public IReadOnlyList<MappingFilter>? Filters { get; init; }
}

/// <summary>A remote prefix (and port, 0 for any) allowed to reach an explicit mapping (RFC 6887 section 13.3).</summary>
public readonly record struct MappingFilter(Ipv4Prefix Remote, ushort Port)
{
    /// <summary>Most filters one mapping may carry.</summary>
    public const int MaxPerMapping = 8;

    /// <summary>True when <paramref name="address"/>:<paramref name="port"/> passes this filter.</summary>
    public bool Allows(Ipv4Address address, ushort port) => Remote.Contains(address) && (Port == 0 || Port == port);
}

/// <summary>One explicit mapping: anyone outside reaches <see cref="Internal"/> through <see cref="External"/>
/// until <see cref="ExpiresAt"/> (engine milliseconds).</summary>
public readonly record struct ExplicitMapping(IpProtocol Protocol, NatEndpoint Internal, NatEndpoint External, long ExpiresAt)
{
    /// <summary>Whole seconds left at engine time <paramref name="now"/> (rounded up, never negative).</summary>
    public uint SecondsLeft(long now) => ExpiresAt <= now ? 0 : (uint)Math.Min(uint.MaxValue, (ExpiresAt - now + 999) / 1000);
}

/// <summary>How a <see cref="IMappingTable.Map"/> call ended.</summary>
public enum MappingStatus
{
    /// <summary>A new explicit mapping.</summary>
    Created,

    /// <summary>The internal endpoint already had an explicit mapping: its lifetime was renewed, its external
    /// endpoint kept (RFC 6886 section 3.3, RFC 6887 section 11.3).</summary>
    Refreshed,

    /// <summary>The internal address is not inside, or the port is 0.</summary>
    NotInside,

    /// <summary>More filters than <see cref="MappingFilter.MaxPerMapping"/> (PCP EXCESSIVE_REMOTE_PEERS).</summary>
    TooManyFilters,

    /// <summary>Not UDP or TCP.</summary>
    UnsupportedProtocol,

    /// <summary><see cref="MappingRequest.RequireExternalPort"/> and that port is taken (PCP CANNOT_PROVIDE_EXTERNAL,
    /// UPnP 718 ConflictInMappingEntry), or the endpoint is a static forward.</summary>
    PortUnavailable,

    /// <summary>No free external port, or a full table (PCP NO_RESOURCES, NAT-PMP 4 Out of resources).</summary>
    NoResources,

    /// <summary>The internal host holds <see cref="NatPolicy.MaxPortMappingsPerHost"/> mappings, or
    /// <see cref="NatPolicy.MaxMappingsPerHost"/> (RFC 6888 REQ-4; PCP USER_EX_QUOTA).</summary>
    QuotaExceeded,

    /// <summary><see cref="IMappingTable.MapPeer"/>: the remote peer is not outside the NAT, or its port is 0.</summary>
    BadRemote,
}

/// <summary>The answer to <see cref="IMappingTable.Map"/>: on success the mapping as granted.</summary>
public readonly record struct MappingResult(MappingStatus Status, ExplicitMapping Mapping)
{
    /// <summary>Created or refreshed.</summary>
    public bool Succeeded => Status is MappingStatus.Created or MappingStatus.Refreshed;
}

/// <summary>
/// The NAT's explicit mappings, changed while it runs: what the NAT-PMP, PCP and UPnP servers ask of it. The port
/// space is the one dynamic mappings draw from; an explicit mapping admits inbound packets from anyone, whatever
/// the filtering, and outbound packets from its internal endpoint leave through it. Time is the engine's
/// (milliseconds, never going back). Thread-safety is the engine's: one caller at a time, on the thread that
/// drives it (the gateway's data plane marshals with InvokeAsync, the lab runs on its loop).
/// </summary>
public interface IMappingTable
{
    /// <summary>The NAT's external addresses (the first is what NAT-PMP announces).</summary>
    IReadOnlyList<Ipv4Address> ExternalAddresses { get; }

    /// <summary>The behaviour in force (the port mapping knobs included).</summary>
    NatPolicy Policy { get; }

    /// <summary>True when <paramref name="address"/> is on the inside.</summary>
    bool IsInside(Ipv4Address address);

    /// <summary>The live explicit mapping of an internal endpoint, if there is one.</summary>
    bool TryGetMapping(IpProtocol protocol, NatEndpoint internalEndpoint, long now, out ExplicitMapping mapping);

    /// <summary>Creates or refreshes the explicit mapping of <see cref="MappingRequest.Internal"/>.</summary>
    MappingResult Map(in MappingRequest request, long now);

    /// <summary>Deletes the explicit mapping of an internal endpoint; its sessions go too, unless an endpoint-
    /// independent dynamic mapping would have carried them (then it becomes that dynamic mapping again). False when
    /// there is none.</summary>
    bool Unmap(IpProtocol protocol, NatEndpoint internalEndpoint, long now);

    /// <summary>
    /// RFC 6887 section 12 (PCP PEER): the outbound mapping of <paramref name="internalEndpoint"/> toward
    /// <paramref name="remote"/>, made as the first packet to it would make it (so it follows the policy's mapping and
    /// filtering like any implicit one, RFC 6887 section 12) or found, and kept alive at least
    /// <paramref name="lifetime"/> (cut to <see cref="NatPolicy.PortMappingMaxLifetime"/>) whether or not packets
    /// flow. Zero hands it back to its idle timer. On success <see cref="MappingResult.Mapping"/> holds the external
    /// endpoint and the time the session is now due to expire unless traffic keeps it longer.
    /// </summary>
    MappingResult MapPeer(IpProtocol protocol, NatEndpoint internalEndpoint, NatEndpoint remote, TimeSpan lifetime, long now);

    /// <summary>The live explicit mappings (expired ones are removed first). Allocates: not a per-packet call.</summary>
    IReadOnlyList<ExplicitMapping> ListMappings(long now);
}
