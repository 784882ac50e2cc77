namespace NatKit.Packets;

/// <summary>The IPv4 header fields a builder takes; protocol and lengths follow from what is built.</summary>
public readonly record struct Ipv4Header(
    Ipv4Address Source,
    Ipv4Address Destination,
    byte Ttl = 64,
    ushort Identification = 0,
    bool DontFragment = false,
    byte TypeOfService = 0);

/// <summary>The TCP header fields a builder takes; data offset follows from the options, checksum is computed.</summary>
public readonly record struct TcpHeader(
    ushort SourcePort,
    ushort DestinationPort,
    uint SequenceNumber,
    uint AcknowledgmentNumber,
    TcpFlags Flags,
    ushort WindowSize = 65535,
    ushort UrgentPointer = 0);

/// <summary>The IPv6 header fields a builder takes; next header and payload length follow from what is built.</summary>
public readonly record struct Ipv6Header(
    Ipv6Address Source,
    Ipv6Address Destination,
    byte HopLimit = 64,
    byte TrafficClass = 0,
    uint FlowLabel = 0);
