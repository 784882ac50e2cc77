using System.Buffers.Binary;

namespace NatKit.Utp;

/// <summary>
/// A read-only view of a uTP (BEP 29, version 1) packet: the 20-byte header, its extension chain and the payload.
/// <see cref="TryParse"/> checks every length before a field is read; untrusted bytes never throw.
/// </summary>
/// <remarks>
/// Layout: type(4 bits) | version(4 bits), extension, connection_id(16), timestamp_microseconds(32),
/// timestamp_difference_microseconds(32), wnd_size(32), seq_nr(16), ack_nr(16); all big-endian. Each extension
/// is next-type(8), length(8), data(length). Type 1 is the selective ACK: a bitmask whose bit i (least
/// significant bit of byte 0 first) stands for packet ack_nr + 2 + i; its length is a multiple of 4, at least 4.
/// </remarks>
public readonly ref struct UtpHeader
{
    /// <summary>The fixed header size in bytes.</summary>
    public const int Size = 20;

    /// <summary>The only protocol version BEP 29 defines.</summary>
    public const byte ProtocolVersion = 1;

    /// <summary>Extension type of the selective ACK.</summary>
    public const byte SelectiveAckExtension = 1;

    private readonly ReadOnlySpan<byte> _packet;
    private readonly int _payloadOffset;
    private readonly int _sackOffset;
    private readonly int _sackLength;

    private UtpHeader(ReadOnlySpan<byte> packet, int payloadOffset, int sackOffset, int sackLength)
    {
        _packet = packet;
        _payloadOffset = payloadOffset;
        _sackOffset = sackOffset;
        _sackLength = sackLength;
    }

    public UtpPacketType Type => (UtpPacketType)(_packet[0] >> 4);

    public byte Version => (byte)(_packet[0] & 0x0F);

    /// <summary>The type of the first extension (0: none).</summary>
    public byte FirstExtension => _packet[1];

    public ushort ConnectionId => BinaryPrimitives.ReadUInt16BigEndian(_packet[2..]);

    public uint TimestampMicroseconds => BinaryPrimitives.ReadUInt32BigEndian(_packet[4..]);

    public uint TimestampDifferenceMicroseconds => BinaryPrimitives.ReadUInt32BigEndian(_packet[8..]);

    /// <summary>The sender's advertised receive window, in bytes.</summary>
    public uint WindowSize => BinaryPrimitives.ReadUInt32BigEndian(_packet[12..]);

    public ushort SequenceNumber => BinaryPrimitives.ReadUInt16BigEndian(_packet[16..]);

    public ushort AckNumber => BinaryPrimitives.ReadUInt16BigEndian(_packet[18..]);

    /// <summary>The selective-ACK bitmask, or empty when the packet carries none.</summary>
    public ReadOnlySpan<byte> SelectiveAck => _packet.Slice(_sackOffset, _sackLength);

    /// <summary>Where the payload starts (after the header and every extension).</summary>
    public int PayloadOffset => _payloadOffset;

    public ReadOnlySpan<byte> Payload => _packet[_payloadOffset..];

    /// <summary>
    /// Parses a datagram as a uTP packet. False (never an exception) when it is shorter than a header, has another
    /// version or an unknown type, when an extension runs past the end, or when a selective ACK's length is not a
    /// positive multiple of 4.
    /// </summary>
    public static bool TryParse(ReadOnlySpan<byte> packet, out UtpHeader header)
    {
        header = default;
        if (packet.Length < Size)
        {
            return false;
        }

        var first = packet[0];
        if ((first & 0x0F) != ProtocolVersion || (first >> 4) > (int)UtpPacketType.Syn)
        {
            return false;
        }

        var offset = Size;
        var extension = packet[1];
        var sackOffset = 0;
        var sackLength = 0;
        while (extension != 0)
        {
            if (packet.Length - offset < 2)
            {
                return false;
            }

            var next = packet[offset];
            var length = packet[offset + 1];
            offset += 2;
            if (packet.Length - offset < length)
            {
                return false;
            }

            if (extension == SelectiveAckExtension)
            {
                if (length < 4 || length % 4 != 0)
                {
                    return false;
                }

                sackOffset = offset;
                sackLength = length;
            }

            offset += length;
            extension = next;
        }

        header = new UtpHeader(packet, offset, sackOffset, sackLength);
        return true;
    }

    /// <summary>Writes a 20-byte header into <paramref name="destination"/> (which must hold at least
    /// <see cref="Size"/> bytes).</summary>
    public static void Write(Span<byte> destination, UtpPacketType type, byte firstExtension, ushort connectionId,
        uint timestamp, uint timestampDifference, uint windowSize, ushort sequenceNumber, ushort ackNumber)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(destination.Length, Size, nameof(destination));
        destination[0] = (byte)(((int)type << 4) | ProtocolVersion);
        destination[1] = firstExtension;
        BinaryPrimitives.WriteUInt16BigEndian(destination[2..], connectionId);
        BinaryPrimitives.WriteUInt32BigEndian(destination[4..], timestamp);
        BinaryPrimitives.WriteUInt32BigEndian(destination[8..], timestampDifference);
        BinaryPrimitives.WriteUInt32BigEndian(destination[12..], windowSize);
        BinaryPrimitives.WriteUInt16BigEndian(destination[16..], sequenceNumber);
        BinaryPrimitives.WriteUInt16BigEndian(destination[18..], ackNumber);
    }

    /// <summary>Rewrites the fields a retransmission refreshes: timestamps, window and ack_nr.</summary>
    internal static void Refresh(Span<byte> packet, uint timestamp, uint timestampDifference, uint windowSize,
        ushort ackNumber)
    {
        BinaryPrimitives.WriteUInt32BigEndian(packet[4..], timestamp);
        BinaryPrimitives.WriteUInt32BigEndian(packet[8..], timestampDifference);
        BinaryPrimitives.WriteUInt32BigEndian(packet[12..], windowSize);
        BinaryPrimitives.WriteUInt16BigEndian(packet[18..], ackNumber);
    }

    /// <summary>Writes one selective-ACK extension (next-type, length, mask) and returns the bytes written. The
    /// mask length must be a positive multiple of 4.</summary>
    public static int WriteSelectiveAck(Span<byte> destination, byte nextExtension, ReadOnlySpan<byte> mask)
    {
        if (mask.Length < 4 || mask.Length % 4 != 0 || mask.Length > 252)
        {
            throw new ArgumentException("a selective ACK mask is a positive multiple of 4 bytes, at most 252",
                nameof(mask));
        }

        destination[0] = nextExtension;
        destination[1] = (byte)mask.Length;
        mask.CopyTo(destination[2..]);
        return 2 + mask.Length;
    }
}
