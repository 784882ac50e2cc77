using System.Buffers.Binary;

namespace NatKit.Net;

/// <summary>
/// The shapes that tell protocols apart on one shared UDP socket, for receivers that must leave another protocol's
/// datagrams alone. The first byte alone cannot do it (RFC 7983's table has no row for uTP): a uTP DATA packet starts
/// with 0x01 like a STUN success response, and a uTP SYN (0x41) falls in TURN ChannelData's 0x40-0x7F.
/// </summary>
public static class DatagramShape
{
    /// <summary>The STUN magic cookie (RFC 8489 section 5).</summary>
    public const uint StunMagicCookie = 0x2112A442;

    /// <summary>The STUN header: type, length, cookie, transaction id.</summary>
    public const int StunHeaderLength = 20;

    /// <summary>True when the datagram is shaped like one whole STUN message (RFC 8489 section 5): the top two bits
    /// zero, the magic cookie at bytes 4-7, and a length field (a multiple of 4) that accounts for exactly the rest
    /// of the datagram. The attributes are not checked (that is the parser's job).</summary>
    public static bool IsStun(ReadOnlySpan<byte> datagram)
    {
        if (datagram.Length < StunHeaderLength || (datagram[0] & 0xC0) != 0)
        {
            return false;
        }

        var length = BinaryPrimitives.ReadUInt16BigEndian(datagram[2..]);
        return BinaryPrimitives.ReadUInt32BigEndian(datagram[4..]) == StunMagicCookie && length % 4 == 0 &&
               length + StunHeaderLength == datagram.Length;
    }
}
