using System.Diagnostics.CodeAnalysis;
using System.Globalization;

namespace NatKit.Packets;

/// <summary>An IPv4 prefix (CIDR block) such as 10.0.0.0/8. Host bits of the address are cleared.</summary>
public readonly struct Ipv4Prefix : IEquatable<Ipv4Prefix>
{
    public Ipv4Prefix(Ipv4Address address, int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, 32);
        Length = length;
        Network = new Ipv4Address(address.Value & MaskFor(length));
    }

    /// <summary>The first address of the block (host bits zero).</summary>
    public Ipv4Address Network { get; }

    /// <summary>Prefix length in bits, 0..32.</summary>
    public int Length { get; }

    /// <summary>The netmask, e.g. 255.255.255.0 for /24.</summary>
    public Ipv4Address Mask => new(MaskFor(Length));

    /// <summary>The last address of the block.</summary>
    public Ipv4Address Last => new(Network.Value | ~MaskFor(Length));

    /// <summary>Number of addresses in the block (2^(32-Length)).</summary>
    public ulong Size => 1UL << (32 - Length);

    public bool Contains(Ipv4Address address) => (address.Value & MaskFor(Length)) == Network.Value;

    /// <summary>The address at <paramref name="offset"/> from the start of the block (wraps within the block).</summary>
    public Ipv4Address At(uint offset) => new(Network.Value | (offset & ~MaskFor(Length)));

    private static uint MaskFor(int length) => length == 0 ? 0 : uint.MaxValue << (32 - length);

    /// <summary>Parses "a.b.c.d/n"; a bare address is a /32.</summary>
    public static bool TryParse(ReadOnlySpan<char> text, out Ipv4Prefix prefix)
    {
        prefix = default;
        var slash = text.IndexOf('/');
        var length = 32;
        var addressText = text;
        if (slash >= 0)
        {
            addressText = text[..slash];
            var lengthText = text[(slash + 1)..];
            if (lengthText.Length is 0 or > 2
                || !int.TryParse(lengthText, NumberStyles.None, CultureInfo.InvariantCulture, out length)
                || length > 32)
            {
                return false;
            }
        }

        if (!Ipv4Address.TryParse(addressText, out var address))
        {
            return false;
        }

        prefix = new Ipv4Prefix(address, length);
        return true;
    }

    public static bool TryParse([NotNullWhen(true)] string? text, out Ipv4Prefix prefix)
    {
        prefix = default;
        return text is not null && TryParse(text.AsSpan(), out prefix);
    }

    public static Ipv4Prefix Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return TryParse(text.AsSpan(), out var p) ? p : throw new FormatException($"'{text}' is not an IPv4 prefix.");
    }

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Network}/{Length}");

    public bool Equals(Ipv4Prefix other) => Network == other.Network && Length == other.Length;
    public override bool Equals(object? obj) => obj is Ipv4Prefix other && Equals(other);
    public override int GetHashCode() => HashCode.Combine(Network, Length);
    public static bool operator ==(Ipv4Prefix left, Ipv4Prefix right) => left.Equals(right);
    public static bool operator !=(Ipv4Prefix left, Ipv4Prefix right) => !left.Equals(right);
}
