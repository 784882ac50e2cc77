using System.Buffers.Binary;

namespace NatKit.Stun;

/// <summary>What the first bytes of a datagram or stream frame are (RFC 7983 demultiplexing by first byte).</summary>
public enum StunPacketKind
{
    /// <summary>Neither STUN nor ChannelData (or too short to tell).</summary>
    Unknown,

    /// <summary>A STUN message: top two bits zero and the magic cookie.</summary>
    Stun,

    /// <summary>TURN ChannelData (RFC 8656 section 12.4): first byte 0x40-0x7F, a 4-byte header.</summary>
    ChannelData,
}

/// <summary>
/// Classifies packets and finds message boundaries on streams (RFC 8489 section 6.2.2: over TCP and TLS, STUN
/// messages follow each other with no extra framing; RFC 8656 section 12.5: ChannelData is padded to a multiple
/// of four over streams). The TURN server and client use this for their ChannelData path.
/// </summary>
public static class StunFraming
{
    public const int ChannelDataHeaderLength = 4;

    public static StunPacketKind Classify(ReadOnlySpan<byte> data)
    {
        if (data.Length >= StunMessageReader.HeaderLength && StunMessageReader.LooksLikeStun(data))
        {
            return StunPacketKind.Stun;
        }

        return IsChannelData(data) ? StunPacketKind.ChannelData : StunPacketKind.Unknown;
    }

    /// <summary>True when <paramref name="data"/> starts like TURN ChannelData: a first byte of 0x40-0x7F (RFC 7983)
    /// and room for the 4-byte header. Its length field is not checked.</summary>
    public static bool IsChannelData(ReadOnlySpan<byte> data) =>
        data.Length >= ChannelDataHeaderLength && data[0] is >= 0x40 and <= 0x7F;

    /// <summary>
    /// For bytes buffered from a stream: the length of the first frame (a STUN message, or ChannelData with its
    /// padding to four), or 0 when more bytes are needed to know. False when the bytes are neither.
    /// </summary>
    public static bool TryGetFrameLength(ReadOnlySpan<byte> buffered, out int frameLength)
    {
        frameLength = 0;
        if (buffered.Length == 0)
        {
            return true;
        }

        var first = buffered[0];
        if ((first & 0xC0) == 0)
        {
            if (buffered.Length < 8)
            {
                return true;
            }

            if (BinaryPrimitives.ReadUInt32BigEndian(buffered[4..]) != StunMessageReader.MagicCookie)
            {
                return false;
            }

            frameLength = StunMessageReader.HeaderLength + BinaryPrimitives.ReadUInt16BigEndian(buffered[2..]);
            return true;
        }

        if (first is >= 0x40 and <= 0x7F)
        {
            if (buffered.Length < ChannelDataHeaderLength)
            {
                return true;
            }

            var length = BinaryPrimitives.ReadUInt16BigEndian(buffered[2..]);
            frameLength = ChannelDataHeaderLength + ((length + 3) & ~3);
            return true;
        }

        return false;
    }
}
