using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Net;
using System.Net.Sockets;

namespace NatKit.Packets;

/// <summary>
/// An IPv6 address as a value: two 64-bit halves read big-endian. Reading, writing, comparing and hashing are
/// allocation-free; text goes through <see cref="IPAddress"/>.
/// </summary>
public readonly struct Ipv6Address : IEquatable<Ipv6Address>
{
    public Ipv6Address(ulong high, ulong low)
    {
        High = high;
        Low = low;
    }

    /// <summary>Bytes 0..7 in network order as one number.</summary>
    public ulong High { get; }

    /// <summary>Bytes 8..15 in network order as one number.</summary>
    public ulong Low { get; }

    public static Ipv6Address Any => default;
    public static Ipv6Address Loopback => new(0, 1);

    public static Ipv6Address Read(ReadOnlySpan<byte> bytes) =>
        new(BinaryPrimitives.ReadUInt64BigEndian(bytes), BinaryPrimitives.ReadUInt64BigEndian(bytes[8..]));

    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt64BigEndian(destination, High);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], Low);
    }

    /// <summary>fe80::/10.</summary>
    public bool IsLinkLocal => High >> 54 == 0x3FA;
    /// <summary>ff00::/8.</summary>
    public bool IsMulticast => High >> 56 == 0xFF;
    /// <summary>::ffff:0:0/96 carrying an IPv4 address.</summary>
    public bool IsIpv4Mapped => High == 0 && Low >> 32 == 0xFFFF;

    public IPAddress ToIPAddress()
    {
        Span<byte> b = stackalloc byte[16];
        Write(b);
        return new IPAddress(b);
    }

    public static bool TryFromIPAddress(IPAddress? address, out Ipv6Address result)
    {
        result = default;
        if (address is null || address.AddressFamily != AddressFamily.InterNetworkV6)
        {
            return false;
        }

        Span<byte> b = stackalloc byte[16];
        if (!address.TryWriteBytes(b, out _))
        {
            return false;
        }

        result = Read(b);
        return true;
    }

    public static Ipv6Address FromIPAddress(IPAddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        return TryFromIPAddress(address, out var a) ? a : throw new ArgumentException("Not an IPv6 address.", nameof(address));
    }

    public static bool TryParse([NotNullWhen(true)] string? text, out Ipv6Address address)
    {
        address = default;
        return text is not null && text.Contains(':', StringComparison.Ordinal)
            && IPAddress.TryParse(text, out var ip) && TryFromIPAddress(ip, out address);
    }

    public static Ipv6Address Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return TryParse(text, out var a) ? a : throw new FormatException($"'{text}' is not an IPv6 address.");
    }

    public override string ToString() => ToIPAddress().ToString();

    public bool Equals(Ipv6Address other) => High == other.High && Low == other.Low;
    public override bool Equals(object? obj) => obj is Ipv6Address other && Equals(other);
    public override int GetHashCode() => (High ^ Low).GetHashCode();
    public static bool operator ==(Ipv6Address left, Ipv6Address right) => left.Equals(right);
    public static bool operator !=(Ipv6Address left, Ipv6Address right) => !left.Equals(right);
}
