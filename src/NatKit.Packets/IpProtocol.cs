namespace NatKit.Packets;

/// <summary>IANA "Assigned Internet Protocol Numbers": the IPv4 Protocol and IPv6 Next Header field.</summary>
#pragma warning disable CA1028 // The wire field is one byte.
public enum IpProtocol : byte
#pragma warning restore CA1028
{
    /// <summary>IPv6 Hop-by-Hop Options (RFC 8200 section 4.3).</summary>
    HopByHop = 0,
    Icmp = 1,
    Igmp = 2,
    Tcp = 6,
    Udp = 17,
    /// <summary>IPv6 Routing header (RFC 8200 section 4.4).</summary>
    Ipv6Routing = 43,
    /// <summary>IPv6 Fragment header (RFC 8200 section 4.5).</summary>
    Ipv6Fragment = 44,
    /// <summary>Encapsulating Security Payload (RFC 4303): opaque, a header walk stops here.</summary>
    Esp = 50,
    /// <summary>Authentication Header (RFC 4302).</summary>
    AuthenticationHeader = 51,
    IcmpV6 = 58,
    /// <summary>IPv6 No Next Header (RFC 8200 section 4.7).</summary>
    NoNextHeader = 59,
    /// <summary>IPv6 Destination Options (RFC 8200 section 4.6).</summary>
    Ipv6DestinationOptions = 60,
}
