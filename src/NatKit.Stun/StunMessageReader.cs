using System.Buffers.Binary;
using System.Security.Cryptography;

namespace NatKit.Stun;

/// <summary>Why a buffer is not a well-formed STUN message (RFC 8489 sections 5, 6.3 and 14).</summary>
public enum StunParseStatus
{
    Ok,

    /// <summary>Shorter than the 20-byte header.</summary>
    TooShort,

    /// <summary>The two top bits are not zero or the magic cookie is wrong: not STUN at all (RFC 7983 demux).</summary>
    NotStun,

    /// <summary>The header length is not a multiple of four or disagrees with the buffer.</summary>
    BadLength,

    /// <summary>An attribute's length runs past the end of the message.</summary>
    TruncatedAttribute,

    /// <summary>An attribute follows FINGERPRINT, which must be last.</summary>
    FingerprintNotLast,

    /// <summary>MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 or FINGERPRINT has an impossible length.</summary>
    BadIntegrityLength,
}

/// <summary>One attribute as it sits in the message: type, value (without padding) and where it starts.</summary>
public readonly ref struct StunAttribute
{
    public StunAttribute(ushort type, ReadOnlySpan<byte> value, int offset)
    {
        Type = type;
        Value = value;
        Offset = offset;
    }

    public ushort Type { get; }

    public ReadOnlySpan<byte> Value { get; }

    /// <summary>Offset of the attribute header from the start of the message.</summary>
    public int Offset { get; }
}

/// <summary>
/// A zero-copy view of a STUN message over its bytes. <see cref="TryParse"/> checks the header and every
/// attribute length before anything is read, so no accessor can run past the end, and nothing here throws on
/// untrusted input or allocates. The attributes it yields follow RFC 8489 section 14.5/14.6: after
/// MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT count, after MESSAGE-INTEGRITY-SHA256 only
/// FINGERPRINT.
/// </summary>
public readonly ref struct StunMessageReader
{
    public const uint MagicCookie = NatKit.Net.DatagramShape.StunMagicCookie;
    public const int HeaderLength = NatKit.Net.DatagramShape.StunHeaderLength;
    public const int AttributeHeaderLength = 4;

    private readonly int _integrity;
    private readonly int _integritySha256;
    private readonly int _fingerprint;

    private StunMessageReader(ReadOnlySpan<byte> message, int integrity, int integritySha256, int fingerprint)
    {
        Message = message;
        _integrity = integrity;
        _integritySha256 = integritySha256;
        _fingerprint = fingerprint;
    }

    /// <summary>The whole message (header and attributes).</summary>
    public ReadOnlySpan<byte> Message { get; }

    /// <summary>The on-wire message type (method and class interleaved).</summary>
    public ushort MessageType => BinaryPrimitives.ReadUInt16BigEndian(Message);

    public ushort Method => StunMessageType.Method(MessageType);

    public StunClass Class => StunMessageType.Class(MessageType);

    public StunTransactionId TransactionId => StunTransactionId.Read(Message[8..]);

    public ReadOnlySpan<byte> TransactionIdBytes => Message.Slice(8, StunTransactionId.Size);

    /// <summary>True for a classic RFC 3489 message (no magic cookie; its transaction ID is all 16 bytes from
    /// offset 4). Only parsed with allowRfc3489.</summary>
    public bool IsRfc3489 => BinaryPrimitives.ReadUInt32BigEndian(Message[4..]) != MagicCookie;

    /// <summary>The 32 bits where the magic cookie sits (the first part of a classic transaction ID).</summary>
    public uint CookieField => BinaryPrimitives.ReadUInt32BigEndian(Message[4..]);

    public bool HasMessageIntegrity => _integrity >= 0;

    public bool HasMessageIntegritySha256 => _integritySha256 >= 0;

    public bool HasFingerprint => _fingerprint >= 0;

    /// <summary>The attributes that count, in order (see the type's remarks).</summary>
    public StunAttributeEnumerator Attributes => new(Message);

    /// <summary>True when the first bytes look like a STUN header: top bits zero and the magic cookie
    /// (the cheap test RFC 7983 and RFC 8489 section 7 use to demultiplex).</summary>
    public static bool LooksLikeStun(ReadOnlySpan<byte> data) =>
        data.Length >= HeaderLength && (data[0] & 0xC0) == 0 &&
        BinaryPrimitives.ReadUInt32BigEndian(data[4..]) == MagicCookie;

    /// <summary>Checks <paramref name="data"/> (exactly one message) and returns a view of it.</summary>
    public static bool TryParse(ReadOnlySpan<byte> data, out StunMessageReader reader) =>
        Parse(data, out reader) == StunParseStatus.Ok;

    /// <summary>As <see cref="TryParse"/>, saying why a message is rejected. With
    /// <paramref name="allowRfc3489"/>, a message without the magic cookie is accepted as a classic RFC 3489 one
    /// (see <see cref="IsRfc3489"/>).</summary>
    public static StunParseStatus Parse(ReadOnlySpan<byte> data, out StunMessageReader reader,
        bool allowRfc3489 = false)
    {
        reader = default;
        if (data.Length < HeaderLength)
        {
            return StunParseStatus.TooShort;
        }

        if ((data[0] & 0xC0) != 0 ||
            (!allowRfc3489 && BinaryPrimitives.ReadUInt32BigEndian(data[4..]) != MagicCookie))
        {
            return StunParseStatus.NotStun;
        }

        var length = BinaryPrimitives.ReadUInt16BigEndian(data[2..]);
        if ((length & 3) != 0 || HeaderLength + length != data.Length)
        {
            return StunParseStatus.BadLength;
        }

        int integrity = -1, integritySha256 = -1, fingerprint = -1;
        var offset = HeaderLength;
        while (offset < data.Length)
        {
            if (fingerprint >= 0)
            {
                return StunParseStatus.FingerprintNotLast;
            }

            if (data.Length - offset < AttributeHeaderLength)
            {
                return StunParseStatus.TruncatedAttribute;
            }

            var type = BinaryPrimitives.ReadUInt16BigEndian(data[offset..]);
            var valueLength = BinaryPrimitives.ReadUInt16BigEndian(data[(offset + 2)..]);
            var padded = (valueLength + 3) & ~3;
            if (padded > data.Length - offset - AttributeHeaderLength)
            {
                return StunParseStatus.TruncatedAttribute;
            }

            switch (type)
            {
                case StunAttributeType.MessageIntegrity when integrity < 0 && integritySha256 < 0:
                    if (valueLength != StunIntegrity.Sha1Length)
                    {
                        return StunParseStatus.BadIntegrityLength;
                    }

                    integrity = offset;
                    break;
                case StunAttributeType.MessageIntegritySha256 when integritySha256 < 0:
                    if (valueLength is < 16 or > StunIntegrity.Sha256Length || (valueLength & 3) != 0)
                    {
                        return StunParseStatus.BadIntegrityLength;
                    }

                    integritySha256 = offset;
                    break;
                case StunAttributeType.Fingerprint:
                    if (valueLength != 4)
                    {
                        return StunParseStatus.BadIntegrityLength;
                    }

                    fingerprint = offset;
                    break;
            }

            offset += AttributeHeaderLength + padded;
        }

        reader = new StunMessageReader(data, integrity, integritySha256, fingerprint);
        return StunParseStatus.Ok;
    }

    /// <summary>The first counted attribute of <paramref name="type"/>.</summary>
    public bool TryGet(ushort type, out ReadOnlySpan<byte> value)
    {
        foreach (var a in Attributes)
        {
            if (a.Type == type)
            {
                value = a.Value;
                return true;
            }
        }

        value = default;
        return false;
    }

    public bool Contains(ushort type) => TryGet(type, out _);

    /// <summary>A plain address attribute (MAPPED-ADDRESS, RESPONSE-ORIGIN, OTHER-ADDRESS, ALTERNATE-SERVER).</summary>
    public bool TryGetAddress(ushort type, out StunAddress address)
    {
        address = default;
        return TryGet(type, out var v) && StunAddress.TryDecode(v, out address);
    }

    /// <summary>An XOR-encoded address attribute (XOR-MAPPED-ADDRESS; TURN's XOR-PEER/RELAYED-ADDRESS).</summary>
    public bool TryGetXorAddress(ushort type, out StunAddress address)
    {
        address = default;
        return TryGet(type, out var v) && StunAddress.TryDecodeXor(v, TransactionId, out address);
    }

    /// <summary>A 32-bit attribute (CHANGE-REQUEST, PRIORITY, TURN's LIFETIME ...).</summary>
    public bool TryGetUInt32(ushort type, out uint value)
    {
        value = 0;
        if (!TryGet(type, out var v) || v.Length != 4)
        {
            return false;
        }

        value = BinaryPrimitives.ReadUInt32BigEndian(v);
        return true;
    }

    /// <summary>ERROR-CODE: the code (300-699) and the UTF-8 reason.</summary>
    public bool TryGetErrorCode(out int code, out ReadOnlySpan<byte> reason)
    {
        code = 0;
        reason = default;
        if (!TryGet(StunAttributeType.ErrorCode, out var v) || v.Length < 4)
        {
            return false;
        }

        var cls = v[2] & 0x07;
        var number = v[3];
        if (cls is < 3 or > 6 || number > 99)
        {
            return false;
        }

        code = (cls * 100) + number;
        reason = v[4..];
        return true;
    }

    /// <summary>CHANGE-REQUEST (RFC 5780 section 7.2): flags A (change IP, 0x4) and B (change port, 0x2).</summary>
    public bool TryGetChangeRequest(out bool changeAddress, out bool changePort)
    {
        changeAddress = changePort = false;
        if (!TryGetUInt32(StunAttributeType.ChangeRequest, out var flags))
        {
            return false;
        }

        changeAddress = (flags & 0x4) != 0;
        changePort = (flags & 0x2) != 0;
        return true;
    }

    /// <summary>RESPONSE-PORT (RFC 5780 section 7.5): a port, then two bytes of padding.</summary>
    public bool TryGetResponsePort(out ushort port)
    {
        port = 0;
        if (!TryGet(StunAttributeType.ResponsePort, out var v) || v.Length != 4)
        {
            return false;
        }

        port = BinaryPrimitives.ReadUInt16BigEndian(v);
        return true;
    }

    /// <summary>PASSWORD-ALGORITHM (RFC 8489 section 14.11): the algorithm number.</summary>
    public bool TryGetPasswordAlgorithm(out StunPasswordAlgorithm algorithm)
    {
        algorithm = default;
        if (!TryGet(StunAttributeType.PasswordAlgorithm, out var v) || v.Length < 4)
        {
            return false;
        }

        var parameterLength = BinaryPrimitives.ReadUInt16BigEndian(v[2..]);
        if (4 + parameterLength > v.Length)
        {
            return false;
        }

        algorithm = (StunPasswordAlgorithm)BinaryPrimitives.ReadUInt16BigEndian(v);
        return true;
    }

    /// <summary>
    /// Copies into <paramref name="destination"/> the comprehension-required attribute types that
    /// <paramref name="registry"/> does not know (for a 420 with UNKNOWN-ATTRIBUTES); returns how many were
    /// written (at most the destination's length, duplicates once).
    /// </summary>
    public int FindUnknownComprehensionRequired(StunAttributeRegistry registry, Span<ushort> destination)
    {
        ArgumentNullException.ThrowIfNull(registry);
        var count = 0;
        foreach (var a in Attributes)
        {
            if (count == destination.Length)
            {
                break;
            }

            if (StunAttributeType.IsComprehensionRequired(a.Type) && !registry.Contains(a.Type) &&
                !destination[..count].Contains(a.Type))
            {
                destination[count++] = a.Type;
            }
        }

        return count;
    }

    /// <summary>True when FINGERPRINT is present and matches (RFC 8489 section 14.7).</summary>
    public bool IsFingerprintValid()
    {
        if (_fingerprint < 0)
        {
            return false;
        }

        var expected = BinaryPrimitives.ReadUInt32BigEndian(Message[(_fingerprint + AttributeHeaderLength)..]);
        return StunIntegrity.Fingerprint(Message, _fingerprint) == expected;
    }

    /// <summary>Checks MESSAGE-INTEGRITY (HMAC-SHA1) with <paramref name="key"/> in constant time.</summary>
    public bool VerifyMessageIntegrity(ReadOnlySpan<byte> key)
    {
        if (_integrity < 0)
        {
            return false;
        }

        Span<byte> mac = stackalloc byte[StunIntegrity.Sha1Length];
        StunIntegrity.Hmac(Message, _integrity, StunIntegrity.Sha1Length, key, sha256: false, mac);
        return CryptographicOperations.FixedTimeEquals(mac,
            Message.Slice(_integrity + AttributeHeaderLength, StunIntegrity.Sha1Length));
    }

    /// <summary>Checks MESSAGE-INTEGRITY-SHA256 (possibly truncated to 16-28 bytes) in constant time.</summary>
    public bool VerifyMessageIntegritySha256(ReadOnlySpan<byte> key)
    {
        if (_integritySha256 < 0)
        {
            return false;
        }

        var length = BinaryPrimitives.ReadUInt16BigEndian(Message[(_integritySha256 + 2)..]);
        Span<byte> mac = stackalloc byte[StunIntegrity.Sha256Length];
        StunIntegrity.Hmac(Message, _integritySha256, length, key, sha256: true, mac);
        return CryptographicOperations.FixedTimeEquals(mac[..length],
            Message.Slice(_integritySha256 + AttributeHeaderLength, length));
    }
}

/// <summary>Walks the attributes of a checked message, applying the "ignore after integrity" rule.</summary>
public ref struct StunAttributeEnumerator
{
    private readonly ReadOnlySpan<byte> _message;
    private int _next;
    private int _stage; // 0: all count, 1: after MESSAGE-INTEGRITY, 2: after MESSAGE-INTEGRITY-SHA256, 3: done

    internal StunAttributeEnumerator(ReadOnlySpan<byte> message)
    {
        _message = message;
        _next = StunMessageReader.HeaderLength;
        _stage = 0;
        Current = default;
    }

    public StunAttribute Current { get; private set; }

    public readonly StunAttributeEnumerator GetEnumerator() => this;

    public bool MoveNext()
    {
        while (_next + StunMessageReader.AttributeHeaderLength <= _message.Length && _stage < 3)
        {
            var offset = _next;
            var type = BinaryPrimitives.ReadUInt16BigEndian(_message[offset..]);
            var length = BinaryPrimitives.ReadUInt16BigEndian(_message[(offset + 2)..]);
            _next = offset + StunMessageReader.AttributeHeaderLength + ((length + 3) & ~3);
            var counts = _stage switch
            {
                0 => true,
                1 => type is StunAttributeType.MessageIntegritySha256 or StunAttributeType.Fingerprint,
                _ => type == StunAttributeType.Fingerprint,
            };
            if (!counts)
            {
                continue;
            }

            if (type == StunAttributeType.MessageIntegrity && _stage == 0)
            {
                _stage = 1;
            }
            else if (type == StunAttributeType.MessageIntegritySha256)
            {
                _stage = 2;
            }
            else if (type == StunAttributeType.Fingerprint)
            {
                _stage = 3;
            }

            Current = new StunAttribute(type, _message.Slice(offset + StunMessageReader.AttributeHeaderLength, length),
                offset);
            return true;
        }

        return false;
    }
}
