using System.Buffers.Binary;

namespace NatKit.Packets;

/// <summary>Byte offsets of the IPv4 header fields (RFC 791 section 3.1).</summary>
public static class Ipv4Field
{
    public const int VersionAndHeaderLength = 0;
    public const int TypeOfService = 1;
    public const int TotalLength = 2;
    public const int Identification = 4;
    public const int FlagsAndFragmentOffset = 6;
    public const int Ttl = 8;
    public const int Protocol = 9;
    public const int HeaderChecksum = 10;
    public const int Source = 12;
    public const int Destination = 16;
    public const int Options = 20;

    /// <summary>Header without options (IHL 5).</summary>
    public const int MinHeaderLength = 20;

    /// <summary>Header with 40 bytes of options (IHL 15).</summary>
    public const int MaxHeaderLength = 60;
}

/// <summary>
/// A view over an IPv4 datagram (RFC 791). <see cref="TryParse"/> checks version 4, IHL &gt;= 5, the header
/// inside the buffer and header length &lt;= total length &lt;= buffer; the view is cut to the total length, so
/// link-layer padding is not payload. Getters read and setters write the buffer in place; the setters do not
/// touch the checksum except the <c>Rewrite*</c> methods, which patch it incrementally (RFC 1624).
/// </summary>
public readonly ref struct Ipv4Packet
{
    private const ushort DontFragmentBit = 0x4000;
    private const ushort MoreFragmentsBit = 0x2000;
    private const ushort OffsetMask = 0x1FFF;

    private readonly Span<byte> _buffer;

    private Ipv4Packet(Span<byte> buffer) => _buffer = buffer;

    /// <summary>Validates and wraps a whole datagram. False (never an exception) when it is malformed.</summary>
    public static bool TryParse(Span<byte> buffer, out Ipv4Packet packet)
    {
        packet = default;
        if (!TryHeaderLength(buffer, out var headerLength))
        {
            return false;
        }

        int total = BinaryPrimitives.ReadUInt16BigEndian(buffer[Ipv4Field.TotalLength..]);
        if (total < headerLength || total > buffer.Length)
        {
            return false;
        }

        packet = new Ipv4Packet(buffer[..total]);
        return true;
    }

    /// <summary>
    /// Wraps a datagram quoted inside an ICMP error (RFC 792: the header and at least 8 bytes of data), whose
    /// total length may exceed what was quoted. Requires a complete header and total length &gt;= header length;
    /// <see cref="Payload"/> is what was quoted, <see cref="IsTruncated"/> tells if some is missing.
    /// </summary>
    public static bool TryParseQuoted(Span<byte> buffer, out Ipv4Packet packet)
    {
        packet = default;
        if (!TryHeaderLength(buffer, out var headerLength))
        {
            return false;
        }

        int total = BinaryPrimitives.ReadUInt16BigEndian(buffer[Ipv4Field.TotalLength..]);
        if (total < headerLength)
        {
            return false;
        }

        packet = new Ipv4Packet(buffer[..Math.Min(total, buffer.Length)]);
        return true;
    }

    private static bool TryHeaderLength(ReadOnlySpan<byte> buffer, out int headerLength)
    {
        headerLength = 0;
        if (buffer.Length < Ipv4Field.MinHeaderLength || buffer[0] >> 4 != 4)
        {
            return false;
        }

        headerLength = (buffer[0] & 0xF) * 4;
        return headerLength >= Ipv4Field.MinHeaderLength && headerLength <= buffer.Length;
    }

    /// <summary>The datagram: header and payload, cut to the total length (or to what was quoted).</summary>
    public Span<byte> Buffer => _buffer;

    public int Version => _buffer[0] >> 4;

    /// <summary>Header length in bytes (IHL * 4), 20..60.</summary>
    public int HeaderLength => (_buffer[0] & 0xF) * 4;

    public Span<byte> Header => _buffer[..HeaderLength];

    /// <summary>Options bytes (empty when IHL is 5). Read them with <see cref="TlvOptionReader"/>.</summary>
    public Span<byte> Options => _buffer[Ipv4Field.Options..HeaderLength];

    /// <summary>The data after the header: up to the total length, or what was quoted.</summary>
    public Span<byte> Payload => _buffer[HeaderLength..];

    /// <summary>True for a quoted datagram whose total length is more than the bytes present.</summary>
    public bool IsTruncated => TotalLength > _buffer.Length;

    public byte TypeOfService
    {
        get => _buffer[Ipv4Field.TypeOfService];
        set => _buffer[Ipv4Field.TypeOfService] = value;
    }

    /// <summary>Differentiated Services code point (high 6 bits of the TOS byte, RFC 2474).</summary>
    public int Dscp => _buffer[Ipv4Field.TypeOfService] >> 2;

    /// <summary>ECN field (low 2 bits of the TOS byte, RFC 3168).</summary>
    public int Ecn => _buffer[Ipv4Field.TypeOfService] & 3;

    public ushort TotalLength
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_buffer[Ipv4Field.TotalLength..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_buffer[Ipv4Field.TotalLength..], value);
    }

    public ushort Identification
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_buffer[Ipv4Field.Identification..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_buffer[Ipv4Field.Identification..], value);
    }

    /// <summary>The flags and fragment offset word as on the wire.</summary>
    public ushort FlagsAndFragmentOffset
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_buffer[Ipv4Field.FlagsAndFragmentOffset..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_buffer[Ipv4Field.FlagsAndFragmentOffset..], value);
    }

    /// <summary>DF: the datagram must not be fragmented.</summary>
    public bool DontFragment
    {
        get => (FlagsAndFragmentOffset & DontFragmentBit) != 0;
        set => FlagsAndFragmentOffset = (ushort)(value ? FlagsAndFragmentOffset | DontFragmentBit : FlagsAndFragmentOffset & ~DontFragmentBit);
    }

    /// <summary>MF: more fragments follow.</summary>
    public bool MoreFragments
    {
        get => (FlagsAndFragmentOffset & MoreFragmentsBit) != 0;
        set => FlagsAndFragmentOffset = (ushort)(value ? FlagsAndFragmentOffset | MoreFragmentsBit : FlagsAndFragmentOffset & ~MoreFragmentsBit);
    }

    /// <summary>Fragment offset in bytes (the wire field times 8). The setter takes a multiple of 8 below 65536.</summary>
    public int FragmentOffset
    {
        get => (FlagsAndFragmentOffset & OffsetMask) * 8;
        set
        {
            if (value < 0 || value % 8 != 0 || value / 8 > OffsetMask)
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, "A fragment offset is a multiple of 8 below 65536.");
            }

            FlagsAndFragmentOffset = (ushort)((FlagsAndFragmentOffset & ~OffsetMask) | (value / 8));
        }
    }

    /// <summary>True when this is a fragment of a larger datagram (MF set or a non-zero offset).</summary>
    public bool IsFragment => (FlagsAndFragmentOffset & (MoreFragmentsBit | OffsetMask)) != 0;

    /// <summary>True for the first fragment or an unfragmented datagram: the upper-layer header is here.</summary>
    public bool IsFirstFragment => (FlagsAndFragmentOffset & OffsetMask) == 0;

    public byte Ttl
    {
        get => _buffer[Ipv4Field.Ttl];
        set => _buffer[Ipv4Field.Ttl] = value;
    }

    public IpProtocol Protocol
    {
        get => (IpProtocol)_buffer[Ipv4Field.Protocol];
        set => _buffer[Ipv4Field.Protocol] = (byte)value;
    }

    public ushort HeaderChecksum
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_buffer[Ipv4Field.HeaderChecksum..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_buffer[Ipv4Field.HeaderChecksum..], value);
    }

    public Ipv4Address Source
    {
        get => Ipv4Address.Read(_buffer[Ipv4Field.Source..]);
        set => value.Write(_buffer[Ipv4Field.Source..]);
    }

    public Ipv4Address Destination
    {
        get => Ipv4Address.Read(_buffer[Ipv4Field.Destination..]);
        set => value.Write(_buffer[Ipv4Field.Destination..]);
    }

    /// <summary>Recomputes the header checksum over the whole header.</summary>
    public ushort ComputeHeaderChecksum() => Checksum.ComputeSkipping(0, Header, Ipv4Field.HeaderChecksum);

    /// <summary>Writes the computed header checksum.</summary>
    public void FillHeaderChecksum() => HeaderChecksum = ComputeHeaderChecksum();

    /// <summary>True when the header checksum verifies.</summary>
    public bool IsHeaderChecksumValid => Checksum.IsValid(Header);

    /// <summary>Partial sum of this datagram's pseudo-header for its upper-layer checksum (length = payload length).</summary>
    public uint PseudoHeaderSum() => Checksum.PseudoHeader(Source, Destination, Protocol, Payload.Length);

    /// <summary>Sets the source and patches the header checksum incrementally (the L4 checksum is the caller's).</summary>
    public void RewriteSource(Ipv4Address address)
    {
        HeaderChecksum = Checksum.Update(HeaderChecksum, Source, address);
        Source = address;
    }

    /// <summary>Sets the destination and patches the header checksum incrementally.</summary>
    public void RewriteDestination(Ipv4Address address)
    {
        HeaderChecksum = Checksum.Update(HeaderChecksum, Destination, address);
        Destination = address;
    }

    /// <summary>Sets the TTL and patches the header checksum incrementally (TTL shares a word with Protocol).</summary>
    public void RewriteTtl(byte ttl)
    {
        var oldWord = BinaryPrimitives.ReadUInt16BigEndian(_buffer[Ipv4Field.Ttl..]);
        Ttl = ttl;
        var newWord = BinaryPrimitives.ReadUInt16BigEndian(_buffer[Ipv4Field.Ttl..]);
        HeaderChecksum = Checksum.Update(HeaderChecksum, oldWord, newWord);
    }

    /// <summary>Sets the flags/offset word and patches the header checksum incrementally.</summary>
    public void RewriteFlagsAndFragmentOffset(ushort value)
    {
        HeaderChecksum = Checksum.Update(HeaderChecksum, FlagsAndFragmentOffset, value);
        FlagsAndFragmentOffset = value;
    }
}
