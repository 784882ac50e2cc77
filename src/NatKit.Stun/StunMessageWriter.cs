using System.Buffers.Binary;
using System.Text;

namespace NatKit.Stun;

/// <summary>
/// Writes a STUN message into a caller's buffer, attribute by attribute, keeping the header length current so
/// that MESSAGE-INTEGRITY and FINGERPRINT can be appended at any point. Allocation-free. Running out of buffer is
/// a programming error (callers size buffers from what they write) and throws
/// <see cref="InvalidOperationException"/>; nothing here depends on untrusted input.
/// </summary>
public ref struct StunMessageWriter
{
    private readonly Span<byte> _buffer;
    private int _length;

    public StunMessageWriter(Span<byte> buffer, ushort method, StunClass messageClass, StunTransactionId transactionId)
        : this(buffer, StunMessageType.Encode(method, messageClass), transactionId)
    {
    }

    public StunMessageWriter(Span<byte> buffer, ushort messageType, StunTransactionId transactionId)
    {
        if (buffer.Length < StunMessageReader.HeaderLength)
        {
            throw new InvalidOperationException("STUN buffer smaller than a header");
        }

        _buffer = buffer;
        BinaryPrimitives.WriteUInt16BigEndian(buffer, (ushort)(messageType & 0x3FFF));
        BinaryPrimitives.WriteUInt16BigEndian(buffer[2..], 0);
        BinaryPrimitives.WriteUInt32BigEndian(buffer[4..], StunMessageReader.MagicCookie);
        transactionId.Write(buffer[8..]);
        TransactionId = transactionId;
        _length = StunMessageReader.HeaderLength;
    }

    public StunTransactionId TransactionId { get; }

    /// <summary>Overwrites the magic cookie field, to answer a classic RFC 3489 request whose 128-bit transaction
    /// ID starts there (RFC 8489 section 12.2). XOR attributes must not be used in such a message.</summary>
    public readonly void SetCookieField(uint value) => BinaryPrimitives.WriteUInt32BigEndian(_buffer[4..], value);

    /// <summary>Bytes written so far (the message is complete and valid after every call).</summary>
    public readonly int Length => _length;

    /// <summary>The message written so far.</summary>
    public readonly ReadOnlySpan<byte> Written => _buffer[.._length];

    /// <summary>Space left for further attributes (values plus their 4-byte headers and padding).</summary>
    public readonly int Remaining => _buffer.Length - _length;

    /// <summary>Reserves an attribute of <paramref name="valueLength"/> bytes, zeroes its padding, and returns
    /// the value span to fill.</summary>
    public Span<byte> Reserve(ushort type, int valueLength)
    {
        var padded = (valueLength + 3) & ~3;
        if (valueLength > ushort.MaxValue || _length + StunMessageReader.AttributeHeaderLength + padded > _buffer.Length
            || _length + StunMessageReader.AttributeHeaderLength + padded - StunMessageReader.HeaderLength > ushort.MaxValue)
        {
            throw new InvalidOperationException($"STUN buffer too small for {StunAttributeType.Name(type)}");
        }

        var at = _length;
        BinaryPrimitives.WriteUInt16BigEndian(_buffer[at..], type);
        BinaryPrimitives.WriteUInt16BigEndian(_buffer[(at + 2)..], (ushort)valueLength);
        var value = _buffer.Slice(at + StunMessageReader.AttributeHeaderLength, valueLength);
        _buffer.Slice(at + StunMessageReader.AttributeHeaderLength + valueLength, padded - valueLength).Clear();
        _length = at + StunMessageReader.AttributeHeaderLength + padded;
        BinaryPrimitives.WriteUInt16BigEndian(_buffer[2..], (ushort)(_length - StunMessageReader.HeaderLength));
        return value;
    }

    public void Add(ushort type, scoped ReadOnlySpan<byte> value) => value.CopyTo(Reserve(type, value.Length));

    /// <summary>A UTF-8 text attribute (USERNAME, REALM, NONCE, SOFTWARE, ALTERNATE-DOMAIN).</summary>
    public void AddString(ushort type, scoped ReadOnlySpan<char> text)
    {
        var value = Reserve(type, Encoding.UTF8.GetByteCount(text));
        Encoding.UTF8.GetBytes(text, value);
    }

    public void AddUInt32(ushort type, uint value) => BinaryPrimitives.WriteUInt32BigEndian(Reserve(type, 4), value);

    public void AddAddress(ushort type, StunAddress address) => address.Encode(Reserve(type, address.EncodedLength));

    public void AddXorAddress(ushort type, StunAddress address) =>
        address.EncodeXor(Reserve(type, address.EncodedLength), TransactionId);

    /// <summary>ERROR-CODE with the RFC's reason phrase (or <paramref name="reason"/>).</summary>
    public void AddErrorCode(int code, scoped ReadOnlySpan<char> reason = default)
    {
        if (reason.IsEmpty)
        {
            reason = StunErrorCode.Reason(code);
        }

        var value = Reserve(StunAttributeType.ErrorCode, 4 + Encoding.UTF8.GetByteCount(reason));
        value[0] = 0;
        value[1] = 0;
        value[2] = (byte)(code / 100 & 0x07);
        value[3] = (byte)(code % 100);
        Encoding.UTF8.GetBytes(reason, value[4..]);
    }

    /// <summary>UNKNOWN-ATTRIBUTES: the list of types, 16 bits each.</summary>
    public void AddUnknownAttributes(scoped ReadOnlySpan<ushort> types)
    {
        var value = Reserve(StunAttributeType.UnknownAttributes, types.Length * 2);
        for (var i = 0; i < types.Length; i++)
        {
            BinaryPrimitives.WriteUInt16BigEndian(value[(i * 2)..], types[i]);
        }
    }

    /// <summary>CHANGE-REQUEST (RFC 5780 section 7.2).</summary>
    public void AddChangeRequest(bool changeAddress, bool changePort) =>
        AddUInt32(StunAttributeType.ChangeRequest, (changeAddress ? 4u : 0u) | (changePort ? 2u : 0u));

    /// <summary>RESPONSE-PORT (RFC 5780 section 7.5).</summary>
    public void AddResponsePort(ushort port) =>
        AddUInt32(StunAttributeType.ResponsePort, (uint)port << 16);

    /// <summary>PADDING (RFC 5780 section 7.6) of <paramref name="length"/> zero bytes.</summary>
    public void AddPadding(int length) => Reserve(StunAttributeType.Padding, length).Clear();

    /// <summary>PASSWORD-ALGORITHM with no parameters (RFC 8489 section 14.11).</summary>
    public void AddPasswordAlgorithm(StunPasswordAlgorithm algorithm) =>
        AddUInt32(StunAttributeType.PasswordAlgorithm, (uint)algorithm << 16);

    /// <summary>PASSWORD-ALGORITHMS listing <paramref name="algorithms"/> with no parameters (section 14.12).</summary>
    public void AddPasswordAlgorithms(scoped ReadOnlySpan<StunPasswordAlgorithm> algorithms)
    {
        var value = Reserve(StunAttributeType.PasswordAlgorithms, algorithms.Length * 4);
        for (var i = 0; i < algorithms.Length; i++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(value[(i * 4)..], (uint)algorithms[i] << 16);
        }
    }

    /// <summary>Appends MESSAGE-INTEGRITY (HMAC-SHA1 over everything so far) with <paramref name="key"/>.</summary>
    public void AddMessageIntegrity(scoped ReadOnlySpan<byte> key)
    {
        var at = _length;
        var value = Reserve(StunAttributeType.MessageIntegrity, StunIntegrity.Sha1Length);
        StunIntegrity.Hmac(_buffer, at, StunIntegrity.Sha1Length, key, sha256: false, value);
    }

    /// <summary>Appends MESSAGE-INTEGRITY-SHA256 (truncated to <paramref name="length"/>: 16-32, a multiple of 4).</summary>
    public void AddMessageIntegritySha256(scoped ReadOnlySpan<byte> key, int length = StunIntegrity.Sha256Length)
    {
        if (length is < 16 or > StunIntegrity.Sha256Length || (length & 3) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(length), length, "must be 16-32 and a multiple of 4");
        }

        var at = _length;
        var value = Reserve(StunAttributeType.MessageIntegritySha256, length);
        Span<byte> mac = stackalloc byte[StunIntegrity.Sha256Length];
        StunIntegrity.Hmac(_buffer, at, length, key, sha256: true, mac);
        mac[..length].CopyTo(value);
    }

    /// <summary>Appends FINGERPRINT; it must be the last attribute.</summary>
    public void AddFingerprint()
    {
        var at = _length;
        var value = Reserve(StunAttributeType.Fingerprint, 4);
        BinaryPrimitives.WriteUInt32BigEndian(value, StunIntegrity.Fingerprint(_buffer, at));
    }
}
