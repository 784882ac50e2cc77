using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace NatKit.Packets;

/// <summary>
/// An IPv4 address as a value: <see cref="Value"/> is the address read big-endian, so 10.0.0.1 is 0x0A000001 and
/// numeric order is address order. Everything but <see cref="ToString()"/> and <see cref="ToIPAddress"/> is
/// allocation-free.
/// </summary>
public readonly struct Ipv4Address : IEquatable<Ipv4Address>, IComparable<Ipv4Address>, ISpanFormattable
{
    /// <summary>The four bytes in network order as one number: a.b.c.d is a&lt;&lt;24 | b&lt;&lt;16 | c&lt;&lt;8 | d.</summary>
    public uint Value { get; }

    public Ipv4Address(uint value) => Value = value;

    public Ipv4Address(byte a, byte b, byte c, byte d) => Value = (uint)(a << 24 | b << 16 | c << 8 | d);

    public static Ipv4Address Any => default;
    public static Ipv4Address Broadcast => new(0xFFFFFFFF);
    public static Ipv4Address Loopback => new(0x7F000001);

    /// <summary>Reads four bytes in network order. The span must hold at least 4 bytes.</summary>
    public static Ipv4Address Read(ReadOnlySpan<byte> bytes) => new(BinaryPrimitives.ReadUInt32BigEndian(bytes));

    /// <summary>Writes the four bytes in network order. The span must hold at least 4 bytes.</summary>
    public void Write(Span<byte> destination) => BinaryPrimitives.WriteUInt32BigEndian(destination, Value);

    /// <summary>The high 16 bits (first two bytes), as a checksum word.</summary>
    public ushort HighWord => (ushort)(Value >> 16);

    /// <summary>The low 16 bits (last two bytes), as a checksum word.</summary>
    public ushort LowWord => (ushort)Value;

    /// <summary>0.0.0.0/8 "this network" (RFC 1122 3.2.1.3).</summary>
    public bool IsUnspecified => Value >> 24 == 0;
    /// <summary>127.0.0.0/8.</summary>
    public bool IsLoopback => Value >> 24 == 127;
    /// <summary>10/8, 172.16/12, 192.168/16 (RFC 1918).</summary>
    public bool IsPrivate => Value >> 24 == 10 || (Value & 0xFFF00000) == 0xAC100000 || (Value & 0xFFFF0000) == 0xC0A80000;
    /// <summary>100.64.0.0/10 shared address space (RFC 6598).</summary>
    public bool IsSharedAddressSpace => (Value & 0xFFC00000) == 0x64400000;
    /// <summary>169.254.0.0/16 (RFC 3927).</summary>
    public bool IsLinkLocal => (Value & 0xFFFF0000) == 0xA9FE0000;
    /// <summary>224.0.0.0/4.</summary>
    public bool IsMulticast => Value >> 28 == 0xE;
    /// <summary>255.255.255.255.</summary>
    public bool IsBroadcast => Value == 0xFFFFFFFF;

    public IPAddress ToIPAddress()
    {
        Span<byte> b = stackalloc byte[4];
        Write(b);
        return new IPAddress(b);
    }

    /// <summary>Converts an IPv4 (or IPv4-mapped IPv6) address; throws <see cref="ArgumentException"/> for other IPv6.</summary>
    public static Ipv4Address FromIPAddress(IPAddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        if (!TryFromIPAddress(address, out var result))
        {
            throw new ArgumentException("Not an IPv4 address.", nameof(address));
        }

        return result;
    }

    public static bool TryFromIPAddress(IPAddress? address, out Ipv4Address result)
    {
        result = default;
        if (address is null)
        {
            return false;
        }

        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }

        if (address.AddressFamily != AddressFamily.InterNetwork)
        {
            return false;
        }

        Span<byte> b = stackalloc byte[4];
        if (!address.TryWriteBytes(b, out _))
        {
            return false;
        }

        result = Read(b);
        return true;
    }

    public static explicit operator Ipv4Address(IPAddress address) => FromIPAddress(address);

    /// <summary>Parses dotted-quad text: exactly four decimal parts 0..255, no leading '+', no leading zeros beyond "0".</summary>
    public static bool TryParse(ReadOnlySpan<char> text, out Ipv4Address address)
    {
        address = default;
        uint value = 0;
        var parts = 0;
        var i = 0;
        while (parts < 4)
        {
            var start = i;
            uint part = 0;
            while (i < text.Length && text[i] is >= '0' and <= '9' && i - start < 3)
            {
                part = part * 10 + (uint)(text[i] - '0');
                i++;
            }

            var digits = i - start;
            if (digits == 0 || part > 255 || (digits > 1 && text[start] == '0'))
            {
                return false;
            }

            value = value << 8 | part;
            parts++;
            if (parts < 4)
            {
                if (i >= text.Length || text[i] != '.')
                {
                    return false;
                }

                i++;
            }
        }

        if (i != text.Length)
        {
            return false;
        }

        address = new Ipv4Address(value);
        return true;
    }

    public static bool TryParse([NotNullWhen(true)] string? text, out Ipv4Address address)
    {
        address = default;
        return text is not null && TryParse(text.AsSpan(), out address);
    }

    public static Ipv4Address Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return TryParse(text.AsSpan(), out var a) ? a : throw new FormatException($"'{text}' is not an IPv4 address.");
    }

    public bool TryFormat(Span<char> destination, out int charsWritten, ReadOnlySpan<char> format = default, IFormatProvider? provider = null)
    {
        charsWritten = 0;
        for (var shift = 24; shift >= 0; shift -= 8)
        {
            if (!((byte)(Value >> shift)).TryFormat(destination[charsWritten..], out var n, default, CultureInfo.InvariantCulture))
            {
                charsWritten = 0;
                return false;
            }

            charsWritten += n;
            if (shift > 0)
            {
                if (charsWritten >= destination.Length)
                {
                    charsWritten = 0;
                    return false;
                }

                destination[charsWritten++] = '.';
            }
        }

        return true;
    }

    public override string ToString()
    {
        Span<char> buffer = stackalloc char[15];
        TryFormat(buffer, out var n);
        return new string(buffer[..n]);
    }

    public string ToString(string? format, IFormatProvider? formatProvider) => ToString();

    public bool Equals(Ipv4Address other) => Value == other.Value;
    public override bool Equals(object? obj) => obj is Ipv4Address other && Equals(other);
    public override int GetHashCode() => (int)Value;
    public int CompareTo(Ipv4Address other) => Value.CompareTo(other.Value);

    public static bool operator ==(Ipv4Address left, Ipv4Address right) => left.Value == right.Value;
    public static bool operator !=(Ipv4Address left, Ipv4Address right) => left.Value != right.Value;
    public static bool operator <(Ipv4Address left, Ipv4Address right) => left.Value < right.Value;
    public static bool operator >(Ipv4Address left, Ipv4Address right) => left.Value > right.Value;
    public static bool operator <=(Ipv4Address left, Ipv4Address right) => left.Value <= right.Value;
    public static bool operator >=(Ipv4Address left, Ipv4Address right) => left.Value >= right.Value;
}
