namespace NatKit.Nat;

/// <summary>RFC 4787 section 4.1 (REQ-1): when is an existing mapping reused for a new destination.</summary>
public enum MappingBehavior
{
    /// <summary>One mapping per internal endpoint, whatever the destination (REQ-1 recommends this).</summary>
    EndpointIndependent,

    /// <summary>One mapping per internal endpoint and destination address.</summary>
    AddressDependent,

    /// <summary>One mapping per internal endpoint and destination address and port ("symmetric").</summary>
    AddressAndPortDependent,
}

/// <summary>RFC 4787 section 5 (REQ-8): which inbound packets may use a mapping.</summary>
public enum FilteringBehavior
{
    /// <summary>Anyone may send to the mapping's external endpoint.</summary>
    EndpointIndependent,

    /// <summary>Only addresses the internal endpoint has sent to.</summary>
    AddressDependent,

    /// <summary>Only address and port pairs the internal endpoint has sent to.</summary>
    AddressAndPortDependent,
}

/// <summary>RFC 4787 section 4.2.1 (REQ-3): how the external port of a new mapping is chosen.</summary>
public enum PortAssignment
{
    /// <summary>Keep the internal port when it is free, otherwise pick another (REQ-3 allows it).</summary>
    Preserving,

    /// <summary>Pick a random free port in the range (RFC 6056 style).</summary>
    Random,

    /// <summary>Always keep the internal port; a colliding older mapping is removed (REQ-3 says MUST NOT).</summary>
    Overloading,

    /// <summary>The next free port after the previous assignment.</summary>
    Sequential,
}

/// <summary>RFC 4787 section 4.1 (REQ-2): which external address a new mapping gets when there are several.</summary>
public enum AddressPooling
{
    /// <summary>Every mapping of an internal address uses the same external address; none left means drop (REQ-2).</summary>
    Paired,

    /// <summary>Any external address for any mapping.</summary>
    Arbitrary,

    /// <summary>Paired while the paired address has free ports, then any other address.</summary>
    SoftPaired,
}

/// <summary>RFC 4787 section 4.3 (REQ-6): which packets refresh a mapping's timer.</summary>
public enum RefreshDirection
{
    /// <summary>Only inside-to-outside packets (REQ-6 requires at least this).</summary>
    Outbound,

    /// <summary>Only outside-to-inside packets.</summary>
    Inbound,

    /// <summary>Both directions.</summary>
    Both,
}

/// <summary>RFC 4787 section 6 (REQ-9): two inside hosts reaching each other through external endpoints.</summary>
public enum HairpinBehavior
{
    /// <summary>Hairpinned packets are dropped.</summary>
    None,

    /// <summary>Delivered with the sender's internal address and port as source (REQ-9 says MUST NOT).</summary>
    InternalSource,

    /// <summary>Delivered with the sender's external address and port as source (REQ-9 requires this).</summary>
    ExternalSource,
}

/// <summary>RFC 5382 REQ-4: what happens to an inbound SYN that no mapping or filter lets in.</summary>
public enum UnsolicitedSynBehavior
{
    /// <summary>Silently drop at once (REQ-4a allows it when answering would break the NAT's security policy).</summary>
    Drop,

    /// <summary>Hold it 6 s: dropped silently if an outbound SYN for that connection follows (simultaneous open),
    /// else answered with ICMP port unreachable (REQ-4).</summary>
    HoldThenPortUnreachable,
}

/// <summary>What the engine does with IPv6 packets: NAT44 does not translate them.</summary>
public enum Ipv6Handling
{
    /// <summary>Dropped with <see cref="NatDropReason.Ipv6NotTranslated"/>.</summary>
    Drop,

    /// <summary>Forwarded to the other side unchanged (a router that routes IPv6 natively).</summary>
    PassThrough,
}
