using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace NatKit.Proxy.Socks;

internal enum SocksParse
{
    Incomplete,
    Ok,
    Invalid,
}

/// <summary>RFC 1928 section 4 commands.</summary>
internal enum SocksCommand : byte
{
    Connect = 1,
    Bind = 2,
    UdpAssociate = 3,
}

/// <summary>RFC 1928 section 6 reply codes.</summary>
internal enum SocksReply : byte
{
    Succeeded = 0,
    GeneralFailure = 1,
    NotAllowed = 2,
    NetworkUnreachable = 3,
    HostUnreachable = 4,
    ConnectionRefused = 5,
    TtlExpired = 6,
    CommandNotSupported = 7,
    AddressTypeNotSupported = 8,
}

/// <summary>A SOCKS address: an IP literal or a domain name, and a port.</summary>
internal readonly record struct SocksAddress(IPAddress? Address, string? Domain, int Port)
{
    public string Host => Address?.ToString() ?? Domain ?? "";

    public override string ToString() => Address is { AddressFamily: AddressFamily.InterNetworkV6 }
        ? $"[{Address}]:{Port}"
        : $"{Host}:{Port}";
}

/// <summary>
/// The SOCKS5 wire format (RFC 1928, RFC 1929): method negotiation, user/password sub-negotiation, requests,
/// replies and the UDP request header. Parsers check every length before reading and never throw.
/// </summary>
internal static class Socks5Codec
{
    public const byte Version = 5;
    public const byte MethodNoAuth = 0x00;
    public const byte MethodUserPass = 0x02;
    public const byte MethodNone = 0xFF;
    public const byte AtypIPv4 = 1;
    public const byte AtypDomain = 3;
    public const byte AtypIPv6 = 4;

    /// <summary>The longest ATYP DST.ADDR DST.PORT: a 255-byte domain name.</summary>
    public const int MaxAddressLength = 1 + 1 + 255 + 2;

    /// <summary>VER NMETHODS METHODS (RFC 1928 section 3). Reports whether the wanted method was offered.</summary>
    public static SocksParse ParseGreeting(ReadOnlySpan<byte> data, byte wanted, out int consumed, out bool offered)
    {
        consumed = 0;
        offered = false;
        if (data.Length < 2)
        {
            return SocksParse.Incomplete;
        }

        if (data[0] != Version || data[1] == 0)
        {
            return SocksParse.Invalid;
        }

        var n = data[1];
        if (data.Length < 2 + n)
        {
            return SocksParse.Incomplete;
        }

        offered = data.Slice(2, n).IndexOf(wanted) >= 0;
        consumed = 2 + n;
        return SocksParse.Ok;
    }

    /// <summary>VER(1) ULEN UNAME PLEN PASSWD (RFC 1929 section 2); <paramref name="credentials"/> is
    /// "user:password" as UTF-8 bytes and is compared in constant time.</summary>
    public static SocksParse ParseUserPass(ReadOnlySpan<byte> data, ReadOnlySpan<byte> credentials, out int consumed,
        out bool accepted)
    {
        consumed = 0;
        accepted = false;
        if (data.Length < 2)
        {
            return SocksParse.Incomplete;
        }

        if (data[0] != 1 || data[1] == 0)
        {
            return SocksParse.Invalid;
        }

        var ulen = data[1];
        if (data.Length < 2 + ulen + 1)
        {
            return SocksParse.Incomplete;
        }

        var plen = data[2 + ulen];
        if (data.Length < 3 + ulen + plen)
        {
            return SocksParse.Incomplete;
        }

        Span<byte> given = stackalloc byte[ulen + 1 + plen];
        data.Slice(2, ulen).CopyTo(given);
        given[ulen] = (byte)':';
        data.Slice(3 + ulen, plen).CopyTo(given[(ulen + 1)..]);
        accepted = System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(given, credentials);
        consumed = 3 + ulen + plen;
        return SocksParse.Ok;
    }

    /// <summary>VER CMD RSV ATYP DST.ADDR DST.PORT (RFC 1928 section 4). An unknown address type is
    /// <see cref="SocksParse.Invalid"/> with <paramref name="badAddressType"/> set.</summary>
    public static SocksParse ParseRequest(ReadOnlySpan<byte> data, out int consumed, out byte command,
        out SocksAddress address, out bool badAddressType)
    {
        consumed = 0;
        command = 0;
        address = default;
        badAddressType = false;
        if (data.Length < 4)
        {
            return SocksParse.Incomplete;
        }

        if (data[0] != Version || data[2] != 0)
        {
            return SocksParse.Invalid;
        }

        command = data[1];
        var r = ParseAddress(data[3..], out var length, out address);
        if (r == SocksParse.Invalid)
        {
            badAddressType = true;
        }

        consumed = 3 + length;
        return r;
    }

    /// <summary>ATYP DST.ADDR DST.PORT; <paramref name="length"/> covers all three.</summary>
    public static SocksParse ParseAddress(ReadOnlySpan<byte> data, out int length, out SocksAddress address)
    {
        length = 0;
        address = default;
        if (data.Length < 1)
        {
            return SocksParse.Incomplete;
        }

        switch (data[0])
        {
            case AtypIPv4:
                if (data.Length < 7)
                {
                    return SocksParse.Incomplete;
                }

                address = new SocksAddress(new IPAddress(data.Slice(1, 4)), null,
                    BinaryPrimitives.ReadUInt16BigEndian(data[5..]));
                length = 7;
                return SocksParse.Ok;
            case AtypIPv6:
                if (data.Length < 19)
                {
                    return SocksParse.Incomplete;
                }

                address = new SocksAddress(new IPAddress(data.Slice(1, 16)), null,
                    BinaryPrimitives.ReadUInt16BigEndian(data[17..]));
                length = 19;
                return SocksParse.Ok;
            case AtypDomain:
                if (data.Length < 2)
                {
                    return SocksParse.Incomplete;
                }

                var n = data[1];
                if (n == 0)
                {
                    return SocksParse.Invalid;
                }

                if (data.Length < 2 + n + 2)
                {
                    return SocksParse.Incomplete;
                }

                var name = data.Slice(2, n);
                foreach (var b in name)
                {
                    if (b <= 0x20 || b >= 0x7F)
                    {
                        return SocksParse.Invalid;
                    }
                }

                var domain = Encoding.ASCII.GetString(name);
                address = IPAddress.TryParse(domain, out var literal)
                    ? new SocksAddress(literal, null, BinaryPrimitives.ReadUInt16BigEndian(data[(2 + n)..]))
                    : new SocksAddress(null, domain, BinaryPrimitives.ReadUInt16BigEndian(data[(2 + n)..]));
                length = 2 + n + 2;
                return SocksParse.Ok;
            default:
                return SocksParse.Invalid;
        }
    }

    /// <summary>VER REP RSV ATYP BND.ADDR BND.PORT. Returns the bytes written (at most 22).</summary>
    public static int WriteReply(Span<byte> destination, SocksReply reply, IPEndPoint? bound)
    {
        destination[0] = Version;
        destination[1] = (byte)reply;
        destination[2] = 0;
        return 3 + WriteAddress(destination[3..], bound ?? new IPEndPoint(IPAddress.Any, 0));
    }

    /// <summary>ATYP ADDR PORT for an IP endpoint; returns 7 or 19.</summary>
    public static int WriteAddress(Span<byte> destination, IPEndPoint endPoint)
    {
        var address = endPoint.Address;
        if (IsIPv4(address))
        {
            destination[0] = AtypIPv4;
            (address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address).TryWriteBytes(destination.Slice(1, 4), out _);
            BinaryPrimitives.WriteUInt16BigEndian(destination[5..], (ushort)endPoint.Port);
            return 7;
        }

        destination[0] = AtypIPv6;
        address.TryWriteBytes(destination.Slice(1, 16), out _);
        BinaryPrimitives.WriteUInt16BigEndian(destination[17..], (ushort)endPoint.Port);
        return 19;
    }

    /// <summary>RSV(2) FRAG(1) then an address (RFC 1928 section 7).</summary>
    public static SocksParse ParseUdpHeader(ReadOnlySpan<byte> datagram, out int headerLength, out byte fragment,
        out SocksAddress destination)
    {
        headerLength = 0;
        fragment = 0;
        destination = default;
        if (datagram.Length < 4 || datagram[0] != 0 || datagram[1] != 0)
        {
            return SocksParse.Invalid;
        }

        fragment = datagram[2];
        var r = ParseAddress(datagram[3..], out var length, out destination);
        if (r != SocksParse.Ok)
        {
            return SocksParse.Invalid;
        }

        headerLength = 3 + length;
        return SocksParse.Ok;
    }

    /// <summary>How many bytes <see cref="WriteUdpHeader"/> writes for <paramref name="source"/>: 10 for an IPv4
    /// address (IPv4-mapped included), 22 for IPv6.</summary>
    public static int UdpHeaderLength(IPEndPoint source) => IsIPv4(source.Address) ? 10 : 22;

    /// <summary>An address written as ATYP IPv4: an IPv4 one or an IPv4-mapped IPv6 one.</summary>
    private static bool IsIPv4(IPAddress address) =>
        address.AddressFamily == AddressFamily.InterNetwork || address.IsIPv4MappedToIPv6;

    /// <summary>The UDP header for a datagram relayed back to the client from <paramref name="source"/>;
    /// returns <see cref="UdpHeaderLength"/>.</summary>
    public static int WriteUdpHeader(Span<byte> destination, IPEndPoint source)
    {
        destination[0] = 0;
        destination[1] = 0;
        destination[2] = 0;
        return 3 + WriteAddress(destination[3..], source);
    }
}
