using System.Buffers.Binary;

namespace NatKit.Packets;

/// <summary>Byte offsets of the ICMP header fields (RFC 792); ICMPv6 (RFC 4443) shares them.</summary>
public static class IcmpField
{
    public const int Type = 0;
    public const int Code = 1;
    public const int Checksum = 2;
    /// <summary>Echo/query identifier, or the start of the 32-bit "rest of header".</summary>
    public const int Identifier = 4;
    public const int SequenceNumber = 6;
    /// <summary>Next-hop MTU of Fragmentation Needed (RFC 1191 section 4), low half of the rest of header.</summary>
    public const int NextHopMtu = 6;
    /// <summary>Parameter Problem pointer (first byte of the rest of header).</summary>
    public const int Pointer = 4;
    public const int HeaderLength = 8;
}

/// <summary>ICMPv4 message types (RFC 792, RFC 950).</summary>
#pragma warning disable CA1028 // One wire byte.
public enum IcmpV4Type : byte
#pragma warning restore CA1028
{
    EchoReply = 0,
    DestinationUnreachable = 3,
    SourceQuench = 4,
    Redirect = 5,
    EchoRequest = 8,
    RouterAdvertisement = 9,
    RouterSolicitation = 10,
    TimeExceeded = 11,
    ParameterProblem = 12,
    Timestamp = 13,
    TimestampReply = 14,
    InformationRequest = 15,
    InformationReply = 16,
    AddressMaskRequest = 17,
    AddressMaskReply = 18,
}

/// <summary>Destination Unreachable codes (RFC 792, RFC 1122, RFC 1812).</summary>
#pragma warning disable CA1028
public enum IcmpV4UnreachableCode : byte
#pragma warning restore CA1028
{
    Network = 0,
    Host = 1,
    Protocol = 2,
    Port = 3,
    FragmentationNeeded = 4,
    SourceRouteFailed = 5,
    DestinationNetworkUnknown = 6,
    DestinationHostUnknown = 7,
    NetworkProhibited = 9,
    HostProhibited = 10,
    CommunicationProhibited = 13,
}

/// <summary>
/// A view over an ICMPv4 message (RFC 792), given the IP payload. <see cref="TryParse"/> checks the 8-byte
/// header; the message is the whole buffer. Errors quote the offending datagram: <see cref="TryGetQuotedPacket"/>.
/// </summary>
public readonly ref struct IcmpV4Message
{
    private readonly Span<byte> _buffer;

    private IcmpV4Message(Span<byte> buffer) => _buffer = buffer;

    public static bool TryParse(Span<byte> buffer, out IcmpV4Message message)
    {
        if (buffer.Length < IcmpField.HeaderLength)
        {
            message = default;
            return false;
        }

        message = new IcmpV4Message(buffer);
        return true;
    }

    /// <summary>True for the error types that quote a datagram: 3, 4, 5, 11, 12.</summary>
    public static bool IsErrorType(IcmpV4Type type) => type is IcmpV4Type.DestinationUnreachable or IcmpV4Type.SourceQuench
        or IcmpV4Type.Redirect or IcmpV4Type.TimeExceeded or IcmpV4Type.ParameterProblem;

    /// <summary>True for query types carrying an identifier and sequence number (echo, timestamp, information, mask).</summary>
    public static bool IsQueryType(IcmpV4Type type) => type is IcmpV4Type.EchoRequest or IcmpV4Type.EchoReply
        or IcmpV4Type.Timestamp or IcmpV4Type.TimestampReply or IcmpV4Type.InformationRequest
        or IcmpV4Type.InformationReply or IcmpV4Type.AddressMaskRequest or IcmpV4Type.AddressMaskReply;

    public Span<byte> Buffer => _buffer;

    /// <summary>Everything after the 8-byte header: echo data, or the quoted datagram of an error.</summary>
    public Span<byte> Payload => _buffer[IcmpField.HeaderLength..];

    public IcmpV4Type Type
    {
        get => (IcmpV4Type)_buffer[IcmpField.Type];
        set => _buffer[IcmpField.Type] = (byte)value;
    }

    public byte Code
    {
        get => _buffer[IcmpField.Code];
        set => _buffer[IcmpField.Code] = value;
    }

    public bool IsError => IsErrorType(Type);

    public bool IsQuery => IsQueryType(Type);

    public ushort Checksum
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_buffer[IcmpField.Checksum..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_buffer[IcmpField.Checksum..], value);
    }

    /// <summary>Query identifier (bytes 4..5).</summary>
    public ushort Identifier
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_buffer[IcmpField.Identifier..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_buffer[IcmpField.Identifier..], value);
    }

    /// <summary>Query sequence number (bytes 6..7).</summary>
    public ushort SequenceNumber
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_buffer[IcmpField.SequenceNumber..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_buffer[IcmpField.SequenceNumber..], value);
    }

    /// <summary>Bytes 4..7 as one number (unused, pointer, gateway or MTU depending on type).</summary>
    public uint RestOfHeader
    {
        get => BinaryPrimitives.ReadUInt32BigEndian(_buffer[IcmpField.Identifier..]);
        set => BinaryPrimitives.WriteUInt32BigEndian(_buffer[IcmpField.Identifier..], value);
    }

    /// <summary>Next-hop MTU of a Fragmentation Needed message (RFC 1191); 0 from pre-1191 routers.</summary>
    public ushort NextHopMtu
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_buffer[IcmpField.NextHopMtu..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_buffer[IcmpField.NextHopMtu..], value);
    }

    /// <summary>Parameter Problem pointer: the offending octet of the quoted datagram.</summary>
    public byte Pointer
    {
        get => _buffer[IcmpField.Pointer];
        set => _buffer[IcmpField.Pointer] = value;
    }

    public ushort ComputeChecksum() => Packets.Checksum.ComputeSkipping(0, _buffer, IcmpField.Checksum);

    public void FillChecksum() => Checksum = ComputeChecksum();

    public bool IsChecksumValid => Packets.Checksum.IsValid(_buffer);

    /// <summary>Sets the query identifier and patches the checksum incrementally (RFC 5508 echo translation).</summary>
    public void RewriteIdentifier(ushort identifier)
    {
        Checksum = Packets.Checksum.Update(Checksum, Identifier, identifier);
        Identifier = identifier;
    }

    /// <summary>
    /// The datagram quoted by an error message (see <see cref="Ipv4Packet.TryParseQuoted"/>). False for non-error
    /// types or when the quote does not hold a whole IPv4 header.
    /// </summary>
    public bool TryGetQuotedPacket(out Ipv4Packet quoted)
    {
        if (!IsError)
        {
            quoted = default;
            return false;
        }

        return Ipv4Packet.TryParseQuoted(Payload, out quoted);
    }
}
