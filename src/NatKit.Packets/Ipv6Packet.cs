using System.Buffers.Binary;

namespace NatKit.Packets;

/// <summary>Byte offsets of the IPv6 fixed header fields (RFC 8200 section 3).</summary>
public static class Ipv6Field
{
    /// <summary>Version (4 bits), traffic class (8), flow label (20).</summary>
    public const int VersionClassFlow = 0;
    public const int PayloadLength = 4;
    public const int NextHeader = 6;
    public const int HopLimit = 7;
    public const int Source = 8;
    public const int Destination = 24;
    public const int HeaderLength = 40;
}

/// <summary>
/// A view over an IPv6 packet (RFC 8200). <see cref="TryParse"/> checks version 6, the 40-byte header and
/// 40 + payload length &lt;= buffer, and cuts the view to that length. Jumbograms (payload length 0 with a
/// Jumbo Payload option, RFC 2675) are not supported: payload length 0 is an empty payload. Extension headers
/// are walked by <see cref="Ipv6ExtensionHeaderReader"/> and summarised by <see cref="TryGetHeaderChain"/>.
/// </summary>
public readonly ref struct Ipv6Packet
{
    private readonly Span<byte> _buffer;

    private Ipv6Packet(Span<byte> buffer) => _buffer = buffer;

    public static bool TryParse(Span<byte> buffer, out Ipv6Packet packet)
    {
        packet = default;
        if (buffer.Length < Ipv6Field.HeaderLength || buffer[0] >> 4 != 6)
        {
            return false;
        }

        var total = Ipv6Field.HeaderLength + BinaryPrimitives.ReadUInt16BigEndian(buffer[Ipv6Field.PayloadLength..]);
        if (total > buffer.Length)
        {
            return false;
        }

        packet = new Ipv6Packet(buffer[..total]);
        return true;
    }

    /// <summary>Wraps a packet quoted in an ICMPv6 error: the 40-byte header must be present, the payload may be cut.</summary>
    public static bool TryParseQuoted(Span<byte> buffer, out Ipv6Packet packet)
    {
        packet = default;
        if (buffer.Length < Ipv6Field.HeaderLength || buffer[0] >> 4 != 6)
        {
            return false;
        }

        var total = Ipv6Field.HeaderLength + BinaryPrimitives.ReadUInt16BigEndian(buffer[Ipv6Field.PayloadLength..]);
        packet = new Ipv6Packet(buffer[..Math.Min(total, buffer.Length)]);
        return true;
    }

    /// <summary>Header and payload, cut to 40 + payload length (or to what was quoted).</summary>
    public Span<byte> Buffer => _buffer;

    public int Version => _buffer[0] >> 4;

    /// <summary>Everything after the fixed header: extension headers and the upper-layer data.</summary>
    public Span<byte> Payload => _buffer[Ipv6Field.HeaderLength..];

    /// <summary>True for a quoted packet whose payload length is more than the bytes present.</summary>
    public bool IsTruncated => Ipv6Field.HeaderLength + PayloadLength > _buffer.Length;

    public byte TrafficClass
    {
        get => (byte)(BinaryPrimitives.ReadUInt16BigEndian(_buffer) >> 4);
        set
        {
            var word = BinaryPrimitives.ReadUInt16BigEndian(_buffer);
            BinaryPrimitives.WriteUInt16BigEndian(_buffer, (ushort)((word & 0xF00F) | (value << 4)));
        }
    }

    /// <summary>The 20-bit flow label.</summary>
    public uint FlowLabel
    {
        get => BinaryPrimitives.ReadUInt32BigEndian(_buffer) & 0xFFFFF;
        set
        {
            var word = BinaryPrimitives.ReadUInt32BigEndian(_buffer);
            BinaryPrimitives.WriteUInt32BigEndian(_buffer, (word & 0xFFF00000) | (value & 0xFFFFF));
        }
    }

    public ushort PayloadLength
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_buffer[Ipv6Field.PayloadLength..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_buffer[Ipv6Field.PayloadLength..], value);
    }

    /// <summary>The type of the header after the fixed header (an extension header or the upper layer).</summary>
    public IpProtocol NextHeader
    {
        get => (IpProtocol)_buffer[Ipv6Field.NextHeader];
        set => _buffer[Ipv6Field.NextHeader] = (byte)value;
    }

    public byte HopLimit
    {
        get => _buffer[Ipv6Field.HopLimit];
        set => _buffer[Ipv6Field.HopLimit] = value;
    }

    public Ipv6Address Source
    {
        get => Ipv6Address.Read(_buffer[Ipv6Field.Source..]);
        set => value.Write(_buffer[Ipv6Field.Source..]);
    }

    public Ipv6Address Destination
    {
        get => Ipv6Address.Read(_buffer[Ipv6Field.Destination..]);
        set => value.Write(_buffer[Ipv6Field.Destination..]);
    }

    /// <summary>A reader over the extension headers, starting after the fixed header.</summary>
    public Ipv6ExtensionHeaderReader ExtensionHeaders => new(Payload, NextHeader);

    /// <summary>
    /// Walks the extension headers (bounded by <see cref="Ipv6ExtensionHeaderReader.MaxHeaders"/>) and summarises
    /// the chain. False when a header is cut short, Hop-by-Hop is not first, there are two Fragment headers, or
    /// there are too many headers.
    /// </summary>
    public bool TryGetHeaderChain(out Ipv6HeaderChain chain)
    {
        var reader = ExtensionHeaders;
        var count = 0;
        var hasRouting = false;
        var fragmentAt = -1;
        uint identification = 0;
        ushort fragmentWord = 0;
        while (reader.TryReadNext(out var type, out var header))
        {
            if (type == IpProtocol.HopByHop && count > 0)
            {
                chain = default;
                return false;
            }

            if (type == IpProtocol.Ipv6Fragment)
            {
                if (fragmentAt >= 0)
                {
                    chain = default;
                    return false;
                }

                fragmentAt = Ipv6Field.HeaderLength + reader.CurrentOffset;
                fragmentWord = BinaryPrimitives.ReadUInt16BigEndian(header[2..]);
                identification = BinaryPrimitives.ReadUInt32BigEndian(header[4..]);
            }

            hasRouting |= type == IpProtocol.Ipv6Routing;
            count++;
        }

        if (reader.IsMalformed)
        {
            chain = default;
            return false;
        }

        chain = new Ipv6HeaderChain(reader.NextHeader, Ipv6Field.HeaderLength + reader.Offset, count, hasRouting,
            fragmentAt, (fragmentWord & 0xFFF8), (fragmentWord & 1) != 0, identification);
        return true;
    }

    /// <summary>Partial sum of the pseudo-header for an upper-layer payload of <paramref name="length"/> bytes
    /// (RFC 8200 section 8.1; with a Routing header the final destination belongs there instead).</summary>
    public uint PseudoHeaderSum(IpProtocol upperLayer, int length) => Checksum.PseudoHeader(Source, Destination, upperLayer, length);
}

/// <summary>
/// What an IPv6 extension-header walk found: the upper-layer protocol and where it starts, and the fragment
/// header's fields if there was one (RFC 8200 sections 4.1 and 4.5).
/// </summary>
public readonly struct Ipv6HeaderChain
{
    internal Ipv6HeaderChain(IpProtocol upperLayer, int upperLayerOffset, int extensionHeaderCount, bool hasRoutingHeader,
        int fragmentHeaderOffset, int fragmentOffset, bool moreFragments, uint fragmentIdentification)
    {
        UpperLayerProtocol = upperLayer;
        UpperLayerOffset = upperLayerOffset;
        ExtensionHeaderCount = extensionHeaderCount;
        HasRoutingHeader = hasRoutingHeader;
        FragmentHeaderOffset = fragmentHeaderOffset;
        FragmentOffset = fragmentOffset;
        MoreFragments = moreFragments;
        FragmentIdentification = fragmentIdentification;
    }

    /// <summary>The Next Header value that ended the walk: TCP, UDP, ICMPv6, ESP, No Next Header, or any other.</summary>
    public IpProtocol UpperLayerProtocol { get; }

    /// <summary>Offset of the upper-layer header from the start of the IPv6 packet.</summary>
    public int UpperLayerOffset { get; }

    public int ExtensionHeaderCount { get; }

    /// <summary>With a Routing header the pseudo-header uses the final destination (RFC 8200 section 8.1).</summary>
    public bool HasRoutingHeader { get; }

    public bool HasFragmentHeader => FragmentHeaderOffset >= 0;

    /// <summary>Offset of the Fragment header from the start of the packet, or -1.</summary>
    public int FragmentHeaderOffset { get; }

    /// <summary>Fragment offset in bytes (0 without a Fragment header).</summary>
    public int FragmentOffset { get; }

    public bool MoreFragments { get; }

    public uint FragmentIdentification { get; }

    /// <summary>True when this packet is one fragment of several (an atomic fragment, RFC 6946, is not).</summary>
    public bool IsFragment => HasFragmentHeader && (FragmentOffset != 0 || MoreFragments);

    /// <summary>True when the upper-layer header is in this packet: not a later fragment, not No Next Header.</summary>
    public bool HasUpperLayerHeader => FragmentOffset == 0 && UpperLayerProtocol != IpProtocol.NoNextHeader;
}

/// <summary>
/// Walks IPv6 extension headers: Hop-by-Hop, Routing, Destination Options ((length + 1) * 8 bytes), Fragment
/// (8 bytes) and AH ((length + 2) * 4 bytes). Stops at any other Next Header (upper layer, ESP, No Next Header),
/// after a Fragment header with a non-zero offset (the rest is not a header), at a header cut short (sets
/// <see cref="IsMalformed"/>) or after <see cref="MaxHeaders"/> headers. Every step advances at least 8 bytes,
/// so the walk always terminates.
/// </summary>
public ref struct Ipv6ExtensionHeaderReader
{
    /// <summary>RFC 8200 section 4.1 allows each header once (Destination Options twice): more is an attack.</summary>
    public const int MaxHeaders = 8;

    private readonly ReadOnlySpan<byte> _payload;
    private int _count;
    private bool _done;

    public Ipv6ExtensionHeaderReader(ReadOnlySpan<byte> payload, IpProtocol firstHeader)
    {
        _payload = payload;
        NextHeader = firstHeader;
        Offset = 0;
        CurrentOffset = 0;
        _count = 0;
        _done = false;
        IsMalformed = false;
    }

    /// <summary>The Next Header value after the headers read so far.</summary>
    public IpProtocol NextHeader { get; private set; }

    /// <summary>Offset (from the end of the fixed header) of what follows the headers read so far.</summary>
    public int Offset { get; private set; }

    /// <summary>Offset of the header last returned.</summary>
    public int CurrentOffset { get; private set; }

    public bool IsMalformed { get; private set; }

    /// <summary>True when <paramref name="protocol"/> is an extension header this reader walks.</summary>
    public static bool IsExtensionHeader(IpProtocol protocol) => protocol is IpProtocol.HopByHop or IpProtocol.Ipv6Routing
        or IpProtocol.Ipv6DestinationOptions or IpProtocol.Ipv6Fragment or IpProtocol.AuthenticationHeader;

    /// <summary>Reads the next extension header (whole, with its Next Header and length bytes).</summary>
    public bool TryReadNext(out IpProtocol type, out ReadOnlySpan<byte> header)
    {
        type = NextHeader;
        header = default;
        if (_done || !IsExtensionHeader(NextHeader))
        {
            return false;
        }

        if (_count >= MaxHeaders)
        {
            return Fail();
        }

        var remaining = _payload.Length - Offset;
        if (remaining < 8)
        {
            return Fail();
        }

        int length = NextHeader switch
        {
            IpProtocol.Ipv6Fragment => 8,
            IpProtocol.AuthenticationHeader => (_payload[Offset + 1] + 2) * 4,
            _ => (_payload[Offset + 1] + 1) * 8,
        };
        if (length > remaining)
        {
            return Fail();
        }

        header = _payload.Slice(Offset, length);
        CurrentOffset = Offset;
        var isLaterFragment = NextHeader == IpProtocol.Ipv6Fragment && (BinaryPrimitives.ReadUInt16BigEndian(header[2..]) & 0xFFF8) != 0;
        NextHeader = (IpProtocol)header[0];
        Offset += length;
        _count++;
        _done = isLaterFragment;
        return true;
    }

    private bool Fail()
    {
        IsMalformed = true;
        _done = true;
        return false;
    }
}
