namespace NatKit.Stun;

/// <summary>
/// Attribute types of RFC 8489 (section 18.3), RFC 5780 (section 7) and the ICE attributes that ride on Binding
/// requests (RFC 8445). Types below 0x8000 are comprehension-required: an agent that does not understand one
/// must reject the request with 420 (Unknown Attribute). TURN adds its own (RFC 8656) through
/// <see cref="StunAttributeRegistry"/>.
/// </summary>
public static class StunAttributeType
{
    public const ushort MappedAddress = 0x0001;
    public const ushort ChangeRequest = 0x0003;

    /// <summary>RFC 3489 SOURCE-ADDRESS (the classic RESPONSE-ORIGIN), sent only to classic clients.</summary>
    public const ushort SourceAddress = 0x0004;

    /// <summary>RFC 3489 CHANGED-ADDRESS (the classic OTHER-ADDRESS), sent only to classic clients.</summary>
    public const ushort ChangedAddress = 0x0005;
    public const ushort Username = 0x0006;
    public const ushort MessageIntegrity = 0x0008;
    public const ushort ErrorCode = 0x0009;
    public const ushort UnknownAttributes = 0x000A;
    public const ushort Realm = 0x0014;
    public const ushort Nonce = 0x0015;
    public const ushort MessageIntegritySha256 = 0x001C;
    public const ushort PasswordAlgorithm = 0x001D;
    public const ushort UserHash = 0x001E;
    public const ushort XorMappedAddress = 0x0020;
    public const ushort Priority = 0x0024;
    public const ushort UseCandidate = 0x0025;
    public const ushort Padding = 0x0026;
    public const ushort ResponsePort = 0x0027;

    public const ushort PasswordAlgorithms = 0x8002;
    public const ushort AlternateDomain = 0x8003;
    public const ushort Software = 0x8022;
    public const ushort AlternateServer = 0x8023;
    public const ushort Fingerprint = 0x8028;
    public const ushort IceControlled = 0x8029;
    public const ushort IceControlling = 0x802A;
    public const ushort ResponseOrigin = 0x802B;
    public const ushort OtherAddress = 0x802C;

    /// <summary>True for types in 0x0000-0x7FFF, which an agent must understand or reject.</summary>
    public static bool IsComprehensionRequired(ushort type) => type < 0x8000;

    /// <summary>The RFC name of a type this file knows, else the hex value.</summary>
    public static string Name(ushort type) => type switch
    {
        MappedAddress => "MAPPED-ADDRESS",
        ChangeRequest => "CHANGE-REQUEST",
        SourceAddress => "SOURCE-ADDRESS",
        ChangedAddress => "CHANGED-ADDRESS",
        Username => "USERNAME",
        MessageIntegrity => "MESSAGE-INTEGRITY",
        ErrorCode => "ERROR-CODE",
        UnknownAttributes => "UNKNOWN-ATTRIBUTES",
        Realm => "REALM",
        Nonce => "NONCE",
        MessageIntegritySha256 => "MESSAGE-INTEGRITY-SHA256",
        PasswordAlgorithm => "PASSWORD-ALGORITHM",
        UserHash => "USERHASH",
        XorMappedAddress => "XOR-MAPPED-ADDRESS",
        Priority => "PRIORITY",
        UseCandidate => "USE-CANDIDATE",
        Padding => "PADDING",
        ResponsePort => "RESPONSE-PORT",
        PasswordAlgorithms => "PASSWORD-ALGORITHMS",
        AlternateDomain => "ALTERNATE-DOMAIN",
        Software => "SOFTWARE",
        AlternateServer => "ALTERNATE-SERVER",
        Fingerprint => "FINGERPRINT",
        IceControlled => "ICE-CONTROLLED",
        IceControlling => "ICE-CONTROLLING",
        ResponseOrigin => "RESPONSE-ORIGIN",
        OtherAddress => "OTHER-ADDRESS",
        _ => $"0x{type:X4}",
    };
}

/// <summary>
/// The set of attribute types an agent understands, as a 64 Kbit bitmap so the check per attribute is one load
/// and no allocation. Immutable: <see cref="With"/> returns an extended copy (TURN builds its registry as
/// <c>StunAttributeRegistry.Stun.With(turnTypes)</c>).
/// </summary>
public sealed class StunAttributeRegistry
{
    private readonly ulong[] _bits;

    private StunAttributeRegistry(ulong[] bits)
    {
        _bits = bits;
    }

    /// <summary>Every attribute of RFC 8489 and RFC 5780, and the ICE attributes of RFC 8445.</summary>
    public static StunAttributeRegistry Stun { get; } = new StunAttributeRegistry(new ulong[1024]).With(
        StunAttributeType.MappedAddress, StunAttributeType.ChangeRequest, StunAttributeType.Username,
        StunAttributeType.MessageIntegrity, StunAttributeType.ErrorCode, StunAttributeType.UnknownAttributes,
        StunAttributeType.Realm, StunAttributeType.Nonce, StunAttributeType.MessageIntegritySha256,
        StunAttributeType.PasswordAlgorithm, StunAttributeType.UserHash, StunAttributeType.XorMappedAddress,
        StunAttributeType.Priority, StunAttributeType.UseCandidate, StunAttributeType.Padding,
        StunAttributeType.ResponsePort, StunAttributeType.PasswordAlgorithms, StunAttributeType.AlternateDomain,
        StunAttributeType.Software, StunAttributeType.AlternateServer, StunAttributeType.Fingerprint,
        StunAttributeType.IceControlled, StunAttributeType.IceControlling, StunAttributeType.ResponseOrigin,
        StunAttributeType.OtherAddress);

    /// <summary>True when <paramref name="type"/> is understood.</summary>
    public bool Contains(ushort type) => (_bits[type >> 6] & (1UL << (type & 63))) != 0;

    /// <summary>A copy that also understands <paramref name="types"/>.</summary>
    public StunAttributeRegistry With(params ReadOnlySpan<ushort> types)
    {
        var bits = (ulong[])_bits.Clone();
        foreach (var t in types)
        {
            bits[t >> 6] |= 1UL << (t & 63);
        }

        return new StunAttributeRegistry(bits);
    }

    /// <summary>A copy that no longer understands <paramref name="types"/> (a server without RFC 5780 mode drops
    /// CHANGE-REQUEST so that it answers 420 as RFC 5780 section 6.1 asks).</summary>
    public StunAttributeRegistry Without(params ReadOnlySpan<ushort> types)
    {
        var bits = (ulong[])_bits.Clone();
        foreach (var t in types)
        {
            bits[t >> 6] &= ~(1UL << (t & 63));
        }

        return new StunAttributeRegistry(bits);
    }
}
