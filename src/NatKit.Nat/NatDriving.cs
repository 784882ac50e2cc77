using System.Globalization;
using NatKit.Packets;

namespace NatKit.Nat;

/// <summary>Which side a packet arrived from.</summary>
public enum NatDirection
{
    /// <summary>From the inside (LAN) toward the outside.</summary>
    Outbound,

    /// <summary>From the outside (WAN) toward the inside.</summary>
    Inbound,
}

/// <summary>A side of the NAT a packet leaves on.</summary>
public enum NatSide
{
    /// <summary>The inside (LAN) link.</summary>
    Inside,

    /// <summary>The outside (WAN) link.</summary>
    Outside,
}

/// <summary>What to do with the packet handed to <see cref="NatEngine.Process"/>.</summary>
public enum NatAction
{
    /// <summary>Send the (rewritten) packet on the outside link.</summary>
    ForwardOutside,

    /// <summary>Send the (rewritten) packet on the inside link; hairpinned packets too.</summary>
    ForwardInside,

    /// <summary>Discard it; <see cref="NatVerdict.Reason"/> says why.</summary>
    Drop,

    /// <summary>The engine kept it (a fragment waiting for its first fragment, an unsolicited SYN on hold) or
    /// sent it on as several packets through the sink (fragmentation): do not send the buffer.</summary>
    Consumed,
}

/// <summary>Why a packet was dropped. Stable names: they are metric tags and log words.</summary>
public enum NatDropReason
{
    None,
    /// <summary>Not a well-formed IPv4 packet (or its transport header is cut short).</summary>
    Malformed,
    /// <summary>IP version other than 4 and 6.</summary>
    UnknownVersion,
    /// <summary>IPv6 is recognised but not translated (<see cref="NatConfig.Ipv6"/> is Drop).</summary>
    Ipv6NotTranslated,
    /// <summary>TTL ran out; ICMP Time Exceeded went to the sender.</summary>
    TtlExpired,
    /// <summary>DF set and bigger than the egress MTU; ICMP Fragmentation Needed went to the sender.</summary>
    FragmentationNeeded,
    /// <summary>Outbound packet whose source is not inside.</summary>
    SourceNotInside,
    /// <summary>Inbound packet not addressed to an external address.</summary>
    NotForUs,
    /// <summary>Inbound packet that no mapping, forward or DMZ accepts.</summary>
    NoMapping,
    /// <summary>A mapping exists but the filtering behaviour refuses this remote (RFC 4787 REQ-8).</summary>
    Filtered,
    /// <summary>Unsolicited inbound SYN (RFC 5382 REQ-4) dropped.</summary>
    UnsolicitedSyn,
    /// <summary>Hairpinning is off (RFC 4787 REQ-9).</summary>
    HairpinDisabled,
    /// <summary>No free external port (or address, with paired pooling).</summary>
    PortsExhausted,
    /// <summary>The internal host reached <see cref="NatPolicy.MaxMappingsPerHost"/> (RFC 6888 REQ-4).</summary>
    HostLimit,
    /// <summary>The flow table holds <see cref="NatConfig.MaxFlows"/> sessions.</summary>
    TableFull,
    /// <summary>A transport protocol the engine does not translate.</summary>
    UnsupportedProtocol,
    /// <summary>An ICMP type that is neither echo nor a translatable error.</summary>
    UnsupportedIcmp,
    /// <summary>An ICMP error whose embedded packet matches no session (RFC 5508 REQ-3).</summary>
    IcmpErrorNoSession,
    /// <summary>ICMP error translation is off.</summary>
    IcmpErrorsDisabled,
    /// <summary>A fragment could not be held (limits) or timed out (RFC 4787 REQ-14).</summary>
    FragmentDropped,
    /// <summary>A non-first TCP/UDP segment (not SYN) for which no session exists.</summary>
    NoSession,
    /// <summary>The inside endpoint already talks to this remote through another external endpoint, so an
    /// answer could not be told apart (e.g. a DMZ host reached on two external addresses by one remote).</summary>
    SessionConflict,
    /// <summary>The IPv4 header checksum is wrong (RFC 1812 section 5.2.2: a router verifies it).</summary>
    BadHeaderChecksum,
}

/// <summary>The engine's answer for one packet.</summary>
public readonly record struct NatVerdict(NatAction Action, NatDropReason Reason)
{
    public static NatVerdict Outside => new(NatAction.ForwardOutside, NatDropReason.None);
    public static NatVerdict Inside => new(NatAction.ForwardInside, NatDropReason.None);
    public static NatVerdict Consumed => new(NatAction.Consumed, NatDropReason.None);

    public static NatVerdict Drop(NatDropReason reason) => new(NatAction.Drop, reason);

    public bool IsForward => Action is NatAction.ForwardInside or NatAction.ForwardOutside;

    public override string ToString() => Action == NatAction.Drop ? $"Drop({Reason})" : Action.ToString();
}

/// <summary>
/// Receives packets the engine makes itself: ICMP errors it originates, fragments it splits, held fragments it
/// releases, delayed ICMP for held SYNs. Called synchronously from <see cref="NatEngine.Process"/> or
/// <see cref="NatEngine.Tick"/>; the span is valid only during the call (copy it).
/// </summary>
public interface INatSink
{
    void Emit(ReadOnlySpan<byte> packet, NatSide side);
}

/// <summary>An IPv4 address and port (or ICMP identifier).</summary>
public readonly record struct NatEndpoint(Ipv4Address Address, ushort Port)
{
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Address}:{Port}");
}

/// <summary>A mapping was created or removed. RFC 6888 REQ-12: no destination is logged.</summary>
/// <param name="Protocol">Tcp, Udp or Icmp.</param>
/// <param name="Internal">The inside endpoint.</param>
/// <param name="External">The external endpoint it maps to.</param>
/// <param name="Time">The engine time (ms) of the event.</param>
public readonly record struct NatMappingEvent(IpProtocol Protocol, NatEndpoint Internal, NatEndpoint External, long Time);

/// <summary>Mapping lifecycle, for logging (RFC 6888 REQ-12). Called synchronously; keep it cheap.</summary>
public interface INatObserver
{
    void MappingCreated(in NatMappingEvent e);

    void MappingRemoved(in NatMappingEvent e);
}

/// <summary>TCP connection state as the NAT tracks it (RFC 5382, RFC 7857).</summary>
public enum NatTcpState
{
    /// <summary>Not TCP.</summary>
    None,
    /// <summary>A SYN went one way only: transitory timer.</summary>
    Opening,
    /// <summary>SYNs seen both ways: established timer.</summary>
    Established,
    /// <summary>A FIN went one way: the established timer still runs (half-close).</summary>
    HalfClosed,
    /// <summary>FINs both ways, or a RST: transitory timer (RFC 7857 section 2.2).</summary>
    Closing,
}

/// <summary>One session in a <see cref="NatEngine.SnapshotFlows"/> snapshot.</summary>
public readonly record struct NatFlowInfo(IpProtocol Protocol, NatEndpoint Internal, NatEndpoint External,
    NatEndpoint Remote, NatTcpState TcpState, long LastRefresh, long ExpiresAt);

/// <summary>Counters since the engine started (also published as System.Diagnostics.Metrics, meter "NatKit.Nat").</summary>
public readonly record struct NatCounters(long PacketsOutbound, long PacketsInbound, long Dropped, long Hairpinned,
    long MappingsCreated, long MappingsRemoved, long SessionsCreated, long SessionsExpired, long IcmpErrorsSent,
    long FragmentsHeld);
