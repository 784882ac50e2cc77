namespace NatKit.Stun;

/// <summary>The class of a STUN message (RFC 8489 section 5): the C1 and C0 bits of the message type.</summary>
public enum StunClass : byte
{
    Request = 0,
    Indication = 1,
    SuccessResponse = 2,
    ErrorResponse = 3,
}

/// <summary>
/// STUN methods (12 bits). The registry is open: TURN (RFC 8656) adds Allocate, Refresh, Send, Data,
/// CreatePermission and ChannelBind as its own constants; any ushort below 0x1000 is a method.
/// </summary>
public static class StunMethods
{
    /// <summary>RFC 8489 section 18.2: the only method STUN itself defines.</summary>
    public const ushort Binding = 0x001;

    /// <summary>The largest value a method can take (12 bits).</summary>
    public const ushort MaxMethod = 0xFFF;
}

/// <summary>Encodes and decodes the 14-bit message type that interleaves the method and class bits.</summary>
public static class StunMessageType
{
    /// <summary>Packs a method and class into the on-wire type (the two top bits stay zero).</summary>
    public static ushort Encode(ushort method, StunClass messageClass)
    {
        var m = method & StunMethods.MaxMethod;
        var c = (int)messageClass;
        return (ushort)((m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 1) << 4) | ((c & 2) << 7));
    }

    /// <summary>The method bits of an on-wire type.</summary>
    public static ushort Method(ushort type) =>
        (ushort)((type & 0x000F) | ((type & 0x00E0) >> 1) | ((type & 0x3E00) >> 2));

    /// <summary>The class bits of an on-wire type.</summary>
    public static StunClass Class(ushort type) => (StunClass)(((type >> 4) & 1) | ((type >> 7) & 2));
}
