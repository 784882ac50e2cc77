using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace NatKit.Turn.Policy;

/// <summary>
/// An address in the form the peer policy compares: IPv4 in the low 32 bits of <see cref="Bits"/>, IPv6 as all
/// 128 bits. Built without allocating, so the relay can check a peer per packet.
/// </summary>
public readonly record struct IpKey(bool IsV4, UInt128 Bits)
{
    /// <summary>The address as written, IPv4-mapped (::ffff:a.b.c.d), SIIT-translated (::ffff:0:a.b.c.d) and
    /// IPv4-compatible (::a.b.c.d, except :: and ::1) IPv6 forms folded to the IPv4 address they carry, so
    /// ::ffff:127.0.0.1 is judged as 127.0.0.1.</summary>
    public static IpKey Normalized(IPAddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        Span<byte> b = stackalloc byte[16];
        if (address.AddressFamily == AddressFamily.InterNetwork)
        {
            address.TryWriteBytes(b, out _);
            return new IpKey(true, BinaryPrimitives.ReadUInt32BigEndian(b));
        }

        address.TryWriteBytes(b, out _);
        var bits = BinaryPrimitives.ReadUInt128BigEndian(b);
        var high96 = bits >> 32;
        var low32 = (uint)(bits & 0xFFFF_FFFF);
        if (high96 == 0xFFFF || high96 == ((UInt128)0xFFFF << 16) || (high96 == 0 && low32 > 1))
        {
            return new IpKey(true, low32);
        }

        return new IpKey(false, bits);
    }

    /// <summary>The address this key stands for (IPv4 for folded forms).</summary>
    public IPAddress ToIPAddress()
    {
        Span<byte> b = stackalloc byte[16];
        if (IsV4)
        {
            BinaryPrimitives.WriteUInt32BigEndian(b, (uint)Bits);
            return new IPAddress(b[..4]);
        }

        BinaryPrimitives.WriteUInt128BigEndian(b, Bits);
        return new IPAddress(b);
    }
}

/// <summary>A CIDR prefix of either family ("10.0.0.0/8", "fc00::/7"; a bare address is a /32 or /128).</summary>
public readonly record struct IpPrefix(bool IsV4, UInt128 Bits, int Length)
{
    public bool Contains(IpKey key)
    {
        if (key.IsV4 != IsV4)
        {
            return false;
        }

        var width = IsV4 ? 32 : 128;
        if (Length == 0)
        {
            return true;
        }

        var shift = width - Length;
        return (key.Bits >> shift) == (Bits >> shift);
    }

    /// <summary>Parses "a.b.c.d[/n]" or "x::y[/n]". The address is taken as written (no IPv4-mapped folding), and
    /// host bits below the prefix are ignored.</summary>
    public static bool TryParse(ReadOnlySpan<char> text, out IpPrefix prefix)
    {
        prefix = default;
        var slash = text.IndexOf('/');
        var addressText = slash < 0 ? text : text[..slash];
        if (!IPAddress.TryParse(addressText, out var address))
        {
            return false;
        }

        var isV4 = address.AddressFamily == AddressFamily.InterNetwork;
        var width = isV4 ? 32 : 128;
        var length = width;
        if (slash >= 0 && (!int.TryParse(text[(slash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture,
                out length) || length > width))
        {
            return false;
        }

        Span<byte> b = stackalloc byte[16];
        address.TryWriteBytes(b, out _);
        UInt128 bits = isV4 ? BinaryPrimitives.ReadUInt32BigEndian(b) : BinaryPrimitives.ReadUInt128BigEndian(b);
        prefix = new IpPrefix(isV4, bits, length);
        return true;
    }

    public static IpPrefix Parse(string text) =>
        TryParse(text, out var p) ? p : throw new FormatException($"'{text}' is not an address or CIDR prefix");

    public override string ToString()
    {
        Span<byte> b = stackalloc byte[16];
        IPAddress address;
        if (IsV4)
        {
            BinaryPrimitives.WriteUInt32BigEndian(b, (uint)Bits);
            address = new IPAddress(b[..4]);
        }
        else
        {
            BinaryPrimitives.WriteUInt128BigEndian(b, Bits);
            address = new IPAddress(b);
        }

        return string.Create(CultureInfo.InvariantCulture, $"{address}/{Length}");
    }
}
