using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;

namespace NatKit.Stun;

/// <summary>
/// A transport address as carried by MAPPED-ADDRESS, XOR-MAPPED-ADDRESS, RESPONSE-ORIGIN, OTHER-ADDRESS and
/// ALTERNATE-SERVER (RFC 8489 sections 14.1-14.2): family, port and up to 16 address bytes, held by value so
/// that decoding and comparing allocate nothing. <see cref="ToEndPoint"/> makes an <see cref="IPEndPoint"/> when
/// one is wanted.
/// </summary>
public readonly struct StunAddress : IEquatable<StunAddress>
{
    /// <summary>Family values on the wire.</summary>
    public const byte FamilyIPv4 = 0x01;

    public const byte FamilyIPv6 = 0x02;

    private readonly ulong _high;
    private readonly ulong _low;

    private StunAddress(byte family, ushort port, ulong high, ulong low)
    {
        Family = family;
        Port = port;
        _high = high;
        _low = low;
    }

    /// <summary><see cref="FamilyIPv4"/> or <see cref="FamilyIPv6"/>; 0 for the default (empty) value.</summary>
    public byte Family { get; }

    public ushort Port { get; }

    public bool IsIPv4 => Family == FamilyIPv4;

    /// <summary>The first 8 address bytes as a big-endian number (0 for IPv4): with <see cref="Low"/>, a
    /// hashable key that needs no allocation.</summary>
    public ulong High => _high;

    /// <summary>The last 8 address bytes (IPv4: the address in the low 32 bits).</summary>
    public ulong Low => _low;

    /// <summary>The size of the value this address encodes to (4 + 4 or 4 + 16).</summary>
    public int EncodedLength => Family == FamilyIPv6 ? 20 : 8;

    /// <summary>From an endpoint; an IPv4-mapped IPv6 address becomes IPv4 (what a dual-mode socket reports).</summary>
    public static StunAddress FromEndPoint(IPEndPoint endPoint)
    {
        ArgumentNullException.ThrowIfNull(endPoint);
        return FromAddress(endPoint.Address, (ushort)endPoint.Port);
    }

    /// <summary>From an address and a port, without allocating.</summary>
    public static StunAddress FromAddress(IPAddress address, ushort port)
    {
        ArgumentNullException.ThrowIfNull(address);
        Span<byte> b = stackalloc byte[16];
        if (address.AddressFamily == AddressFamily.InterNetwork)
        {
            address.TryWriteBytes(b, out _);
            return new StunAddress(FamilyIPv4, port, 0, BinaryPrimitives.ReadUInt32BigEndian(b));
        }

        address.TryWriteBytes(b, out _);
        var high = BinaryPrimitives.ReadUInt64BigEndian(b);
        var low = BinaryPrimitives.ReadUInt64BigEndian(b[8..]);
        if (high == 0 && (low >> 32) == 0xFFFF)
        {
            return new StunAddress(FamilyIPv4, port, 0, low & 0xFFFF_FFFF);
        }

        return new StunAddress(FamilyIPv6, port, high, low);
    }

    /// <summary>Writes the address bytes (4 or 16) to <paramref name="destination"/>; returns the count.</summary>
    public int WriteAddressBytes(Span<byte> destination)
    {
        if (Family == FamilyIPv6)
        {
            BinaryPrimitives.WriteUInt64BigEndian(destination, _high);
            BinaryPrimitives.WriteUInt64BigEndian(destination[8..], _low);
            return 16;
        }

        BinaryPrimitives.WriteUInt32BigEndian(destination, (uint)_low);
        return 4;
    }

    /// <summary>The same address with another port.</summary>
    public StunAddress WithPort(ushort port) => new(Family, port, _high, _low);

    /// <summary>True when the address part (not the port) equals <paramref name="other"/>'s.</summary>
    public bool SameAddress(StunAddress other) => Family == other.Family && _high == other._high && _low == other._low;

    public IPAddress ToIPAddress()
    {
        Span<byte> b = stackalloc byte[16];
        var n = WriteAddressBytes(b);
        return new IPAddress(b[..n]);
    }

    public IPEndPoint ToEndPoint() => new(ToIPAddress(), Port);

    /// <summary>
    /// Decodes a plain address value (MAPPED-ADDRESS layout). False on a bad family or length; untrusted bytes
    /// never throw.
    /// </summary>
    public static bool TryDecode(ReadOnlySpan<byte> value, out StunAddress address)
    {
        address = default;
        if (value.Length < 8)
        {
            return false;
        }

        var family = value[1];
        var port = BinaryPrimitives.ReadUInt16BigEndian(value[2..]);
        if (family == FamilyIPv4 && value.Length == 8)
        {
            address = new StunAddress(FamilyIPv4, port, 0, BinaryPrimitives.ReadUInt32BigEndian(value[4..]));
            return true;
        }

        if (family == FamilyIPv6 && value.Length == 20)
        {
            address = new StunAddress(FamilyIPv6, port, BinaryPrimitives.ReadUInt64BigEndian(value[4..]),
                BinaryPrimitives.ReadUInt64BigEndian(value[12..]));
            return true;
        }

        return false;
    }

    /// <summary>Decodes an XOR-MAPPED-ADDRESS value: port xor the cookie's top half, address xor cookie (and the
    /// transaction ID for IPv6).</summary>
    public static bool TryDecodeXor(ReadOnlySpan<byte> value, StunTransactionId transactionId, out StunAddress address)
    {
        if (!TryDecode(value, out var raw))
        {
            address = default;
            return false;
        }

        address = raw.Xor(transactionId);
        return true;
    }

    /// <summary>Writes a plain address value; returns its length (8 or 20).</summary>
    public int Encode(Span<byte> destination)
    {
        var length = EncodedLength;
        destination[0] = 0;
        destination[1] = Family == FamilyIPv6 ? FamilyIPv6 : FamilyIPv4;
        BinaryPrimitives.WriteUInt16BigEndian(destination[2..], Port);
        WriteAddressBytes(destination[4..]);
        return length;
    }

    /// <summary>Writes an XOR-MAPPED-ADDRESS value; returns its length.</summary>
    public int EncodeXor(Span<byte> destination, StunTransactionId transactionId) =>
        Xor(transactionId).Encode(destination);

    // XOR is its own inverse, so the same function obfuscates and recovers.
    private StunAddress Xor(StunTransactionId transactionId)
    {
        var port = (ushort)(Port ^ (StunMessageReader.MagicCookie >> 16));
        if (Family == FamilyIPv6)
        {
            var high = _high ^ (((ulong)StunMessageReader.MagicCookie << 32) | transactionId.High);
            var low = _low ^ transactionId.Low;
            return new StunAddress(FamilyIPv6, port, high, low);
        }

        return new StunAddress(FamilyIPv4, port, 0, ((uint)_low ^ StunMessageReader.MagicCookie) & 0xFFFF_FFFFUL);
    }

    public bool Equals(StunAddress other) => SameAddress(other) && Port == other.Port;

    public override bool Equals(object? obj) => obj is StunAddress other && Equals(other);

    public override int GetHashCode() => HashCode.Combine(Family, Port, _high, _low);

    public static bool operator ==(StunAddress left, StunAddress right) => left.Equals(right);

    public static bool operator !=(StunAddress left, StunAddress right) => !left.Equals(right);

    public override string ToString() => Family == 0 ? "(none)" : ToEndPoint().ToString();
}
