using System.Buffers.Binary;

namespace NatKit.Packets;

/// <summary>Byte offsets of the TCP header fields (RFC 9293 section 3.1).</summary>
public static class TcpField
{
    public const int SourcePort = 0;
    public const int DestinationPort = 2;
    public const int SequenceNumber = 4;
    public const int AcknowledgmentNumber = 8;
    /// <summary>Data offset (high 4 bits) and the reserved bits / AE flag (low 4 bits).</summary>
    public const int DataOffset = 12;
    public const int Flags = 13;
    public const int WindowSize = 14;
    public const int Checksum = 16;
    public const int UrgentPointer = 18;
    public const int Options = 20;
    public const int MinHeaderLength = 20;
    public const int MaxHeaderLength = 60;
}

/// <summary>TCP control bits (RFC 9293 section 3.1; ECE/CWR from RFC 3168; AE is RFC 3540's old NS bit).</summary>
[Flags]
#pragma warning disable CA1028 // Nine wire bits.
public enum TcpFlags : ushort
#pragma warning restore CA1028
{
    None = 0,
    Fin = 0x001,
    Syn = 0x002,
    Rst = 0x004,
    Psh = 0x008,
    Ack = 0x010,
    Urg = 0x020,
    Ece = 0x040,
    Cwr = 0x080,
    Ae = 0x100,
}

/// <summary>
/// A view over a TCP segment, given the IP payload. <see cref="TryParse"/> checks 20 bytes, data offset &gt;= 5
/// and the header inside the buffer. The segment is the whole buffer (TCP has no length field).
/// </summary>
public readonly ref struct TcpSegment
{
    private readonly Span<byte> _buffer;

    private TcpSegment(Span<byte> buffer) => _buffer = buffer;

    public static bool TryParse(Span<byte> buffer, out TcpSegment segment)
    {
        segment = default;
        if (buffer.Length < TcpField.MinHeaderLength)
        {
            return false;
        }

        var headerLength = (buffer[TcpField.DataOffset] >> 4) * 4;
        if (headerLength < TcpField.MinHeaderLength || headerLength > buffer.Length)
        {
            return false;
        }

        segment = new TcpSegment(buffer);
        return true;
    }

    public Span<byte> Buffer => _buffer;

    /// <summary>Header length in bytes (data offset * 4), 20..60.</summary>
    public int HeaderLength => (_buffer[TcpField.DataOffset] >> 4) * 4;

    /// <summary>Options bytes; read them with <see cref="TlvOptionReader"/>.</summary>
    public Span<byte> Options => _buffer[TcpField.Options..HeaderLength];

    public Span<byte> Payload => _buffer[HeaderLength..];

    public ushort SourcePort
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_buffer);
        set => BinaryPrimitives.WriteUInt16BigEndian(_buffer, value);
    }

    public ushort DestinationPort
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_buffer[TcpField.DestinationPort..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_buffer[TcpField.DestinationPort..], value);
    }

    public uint SequenceNumber
    {
        get => BinaryPrimitives.ReadUInt32BigEndian(_buffer[TcpField.SequenceNumber..]);
        set => BinaryPrimitives.WriteUInt32BigEndian(_buffer[TcpField.SequenceNumber..], value);
    }

    public uint AcknowledgmentNumber
    {
        get => BinaryPrimitives.ReadUInt32BigEndian(_buffer[TcpField.AcknowledgmentNumber..]);
        set => BinaryPrimitives.WriteUInt32BigEndian(_buffer[TcpField.AcknowledgmentNumber..], value);
    }

    /// <summary>All nine control bits.</summary>
    public TcpFlags Flags
    {
        get => (TcpFlags)(BinaryPrimitives.ReadUInt16BigEndian(_buffer[TcpField.DataOffset..]) & 0x1FF);
        set
        {
            var word = BinaryPrimitives.ReadUInt16BigEndian(_buffer[TcpField.DataOffset..]);
            BinaryPrimitives.WriteUInt16BigEndian(_buffer[TcpField.DataOffset..], (ushort)((word & 0xFE00) | ((ushort)value & 0x1FF)));
        }
    }

    public bool Syn => (_buffer[TcpField.Flags] & (byte)TcpFlags.Syn) != 0;
    public bool Ack => (_buffer[TcpField.Flags] & (byte)TcpFlags.Ack) != 0;
    public bool Fin => (_buffer[TcpField.Flags] & (byte)TcpFlags.Fin) != 0;
    public bool Rst => (_buffer[TcpField.Flags] & (byte)TcpFlags.Rst) != 0;

    public ushort WindowSize
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_buffer[TcpField.WindowSize..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_buffer[TcpField.WindowSize..], value);
    }

    public ushort Checksum
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_buffer[TcpField.Checksum..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_buffer[TcpField.Checksum..], value);
    }

    public ushort UrgentPointer
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_buffer[TcpField.UrgentPointer..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_buffer[TcpField.UrgentPointer..], value);
    }

    public ushort ComputeChecksum(Ipv4Address source, Ipv4Address destination) =>
        ComputeWith(Packets.Checksum.PseudoHeader(source, destination, IpProtocol.Tcp, _buffer.Length));

    public ushort ComputeChecksum(in Ipv6Address source, in Ipv6Address destination) =>
        ComputeWith(Packets.Checksum.PseudoHeader(source, destination, IpProtocol.Tcp, _buffer.Length));

    public void FillChecksum(Ipv4Address source, Ipv4Address destination) => Checksum = ComputeChecksum(source, destination);

    public void FillChecksum(in Ipv6Address source, in Ipv6Address destination) => Checksum = ComputeChecksum(source, destination);

    public bool IsChecksumValid(Ipv4Address source, Ipv4Address destination) =>
        Packets.Checksum.Add(Packets.Checksum.PseudoHeader(source, destination, IpProtocol.Tcp, _buffer.Length), _buffer) == 0xFFFF;

    public bool IsChecksumValid(in Ipv6Address source, in Ipv6Address destination) =>
        Packets.Checksum.Add(Packets.Checksum.PseudoHeader(source, destination, IpProtocol.Tcp, _buffer.Length), _buffer) == 0xFFFF;

    /// <summary>Sets the source port and patches the checksum incrementally.</summary>
    public void RewriteSourcePort(ushort port)
    {
        Checksum = Packets.Checksum.Update(Checksum, SourcePort, port);
        SourcePort = port;
    }

    /// <summary>Sets the destination port and patches the checksum incrementally.</summary>
    public void RewriteDestinationPort(ushort port)
    {
        Checksum = Packets.Checksum.Update(Checksum, DestinationPort, port);
        DestinationPort = port;
    }

    /// <summary>Patches the checksum for a pseudo-header address change made by the IP layer.</summary>
    public void UpdateChecksumForAddress(Ipv4Address oldAddress, Ipv4Address newAddress) =>
        Checksum = Packets.Checksum.Update(Checksum, oldAddress, newAddress);

    /// <summary>Patches the checksum for an IPv6 pseudo-header address change.</summary>
    public void UpdateChecksumForAddress(in Ipv6Address oldAddress, in Ipv6Address newAddress) =>
        Checksum = Packets.Checksum.Update(Checksum, oldAddress, newAddress);

    /// <summary>The MSS option (kind 2, RFC 9293 section 3.7.1) if present and well-formed (length 4).</summary>
    public bool TryGetMaximumSegmentSize(out ushort mss)
    {
        mss = 0;
        var at = FindMaximumSegmentSize();
        if (at < 0)
        {
            return false;
        }

        mss = BinaryPrimitives.ReadUInt16BigEndian(_buffer[at..]);
        return true;
    }

    /// <summary>
    /// MSS clamping: lowers an MSS option above <paramref name="maximum"/> to it and patches the checksum
    /// incrementally (the value may sit at an odd offset behind NOPs). True when the option was changed.
    /// </summary>
    public bool ClampMaximumSegmentSize(ushort maximum)
    {
        var at = FindMaximumSegmentSize();
        if (at < 0)
        {
            return false;
        }

        var old = BinaryPrimitives.ReadUInt16BigEndian(_buffer[at..]);
        if (old <= maximum)
        {
            return false;
        }

        BinaryPrimitives.WriteUInt16BigEndian(_buffer[at..], maximum);
        // At an odd offset the two bytes fall in different checksum words: the word sum sees them swapped.
        Checksum = at % 2 == 0
            ? Packets.Checksum.Update(Checksum, old, maximum)
            : Packets.Checksum.Update(Checksum, BinaryPrimitives.ReverseEndianness(old), BinaryPrimitives.ReverseEndianness(maximum));
        return true;
    }

    /// <summary>Offset in the segment of the MSS value, or -1.</summary>
    private int FindMaximumSegmentSize()
    {
        var options = new TlvOptionReader(Options);
        while (options.TryReadNext(out var kind, out var data))
        {
            if (kind == MaximumSegmentSizeKind && data.Length == 2)
            {
                return TcpField.Options + options.CurrentOffset + 2;
            }
        }

        return -1;
    }

    /// <summary>TCP option kind of the Maximum Segment Size.</summary>
    public const byte MaximumSegmentSizeKind = 2;

    private ushort ComputeWith(uint pseudoHeader) => Packets.Checksum.ComputeSkipping(pseudoHeader, _buffer, TcpField.Checksum);
}
