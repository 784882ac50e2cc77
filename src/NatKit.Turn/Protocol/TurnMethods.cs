namespace NatKit.Turn.Protocol;

/// <summary>TURN methods (RFC 8656 section 17, RFC 6062 section 6.1).</summary>
public static class TurnMethods
{
    public const ushort Allocate = 0x003;
    public const ushort Refresh = 0x004;
    public const ushort Send = 0x006;
    public const ushort Data = 0x007;
    public const ushort CreatePermission = 0x008;
    public const ushort ChannelBind = 0x009;
    public const ushort Connect = 0x00A;
    public const ushort ConnectionBind = 0x00B;
    public const ushort ConnectionAttempt = 0x00C;
}

/// <summary>TURN attribute types (RFC 8656 section 18, RFC 6062 section 6.2).</summary>
public static class TurnAttributeType
{
    public const ushort ChannelNumber = 0x000C;
    public const ushort Lifetime = 0x000D;
    public const ushort XorPeerAddress = 0x0012;
    public const ushort Data = 0x0013;
    public const ushort XorRelayedAddress = 0x0016;
    public const ushort RequestedAddressFamily = 0x0017;
    public const ushort EvenPort = 0x0018;
    public const ushort RequestedTransport = 0x0019;
    public const ushort DontFragment = 0x001A;
    public const ushort ReservationToken = 0x0022;
    public const ushort ConnectionId = 0x002A;
    public const ushort AdditionalAddressFamily = 0x8000;
    public const ushort AddressErrorCode = 0x8001;
    public const ushort Icmp = 0x8004;
}

/// <summary>TURN error codes beyond the ones STUN's table already names (RFC 8656 section 19).</summary>
public static class TurnErrorCode
{
    public const int PeerAddressFamilyMismatch = 443;
}

/// <summary>Numbers RFC 8656 fixes.</summary>
public static class TurnLimits
{
    /// <summary>Section 12: channel numbers a client may bind.</summary>
    public const ushort FirstChannel = 0x4000;

    /// <summary>Section 12: the last channel a client binds (RFC 8656 reserves 0x5000-0x7FFF).</summary>
    public const ushort LastChannel = 0x4FFF;

    /// <summary>The last channel the server accepts: RFC 5766's range, which coturn's clients and other older
    /// stacks still pick from (RFC 8656 section 12 keeps 0x4000-0x7FFF as ChannelData on the wire).</summary>
    public const ushort LastAcceptedChannel = 0x7FFF;

    /// <summary>Section 9: a permission lasts 300 seconds unless refreshed.</summary>
    public static readonly TimeSpan PermissionLifetime = TimeSpan.FromSeconds(300);

    /// <summary>Section 12: a channel binding lasts 600 seconds unless refreshed.</summary>
    public static readonly TimeSpan ChannelLifetime = TimeSpan.FromSeconds(600);

    /// <summary>Section 7.2: the default allocation lifetime.</summary>
    public static readonly TimeSpan DefaultAllocationLifetime = TimeSpan.FromSeconds(600);

    /// <summary>Section 14.9: how long a RESERVATION-TOKEN holds its port (about 30 seconds).</summary>
    public static readonly TimeSpan ReservationLifetime = TimeSpan.FromSeconds(30);

    /// <summary>NatKit's TURN server's default cap on a relayed payload (<c>TurnServerOptions.MaxRelayPayload</c>),
    /// in both directions: what a client may count on when it knows only that the relay is NatKit's.</summary>
    public const int DefaultMaxRelayPayload = 4096;

    /// <summary>REQUESTED-TRANSPORT value for UDP (the IP protocol number).</summary>
    public const byte TransportUdp = 17;

    /// <summary>REQUESTED-TRANSPORT value for TCP (RFC 6062).</summary>
    public const byte TransportTcp = 6;
}
