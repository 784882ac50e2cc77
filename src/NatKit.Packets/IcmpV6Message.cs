using System.Buffers.Binary;

namespace NatKit.Packets;

/// <summary>ICMPv6 message types (RFC 4443, RFC 4861, RFC 2710).</summary>
#pragma warning disable CA1028 // One wire byte.
public enum IcmpV6Type : byte
#pragma warning restore CA1028
{
    DestinationUnreachable = 1,
    PacketTooBig = 2,
    TimeExceeded = 3,
    ParameterProblem = 4,
    EchoRequest = 128,
    EchoReply = 129,
    MulticastListenerQuery = 130,
    MulticastListenerReport = 131,
    MulticastListenerDone = 132,
    RouterSolicitation = 133,
    RouterAdvertisement = 134,
    NeighborSolicitation = 135,
    NeighborAdvertisement = 136,
    Redirect = 137,
}

/// <summary>
/// A view over an ICMPv6 message (RFC 4443), given the upper-layer bytes. <see cref="TryParse"/> checks 8 bytes
/// (every message RFC 4443 and RFC 4861 define has them). The checksum covers the IPv6 pseudo-header (RFC 4443
/// section 2.3). Error messages (types 0..127) quote the offending packet: <see cref="TryGetQuotedPacket"/>.
/// </summary>
public readonly ref struct IcmpV6Message
{
    private readonly Span<byte> _buffer;

    private IcmpV6Message(Span<byte> buffer) => _buffer = buffer;

    public static bool TryParse(Span<byte> buffer, out IcmpV6Message message)
    {
        if (buffer.Length < IcmpField.HeaderLength)
        {
            message = default;
            return false;
        }

        message = new IcmpV6Message(buffer);
        return true;
    }

    /// <summary>RFC 4443 section 2.1: types 0..127 are errors, 128..255 informational.</summary>
    public static bool IsErrorType(IcmpV6Type type) => (byte)type < 128;

    public Span<byte> Buffer => _buffer;

    public Span<byte> Payload => _buffer[IcmpField.HeaderLength..];

    public IcmpV6Type Type
    {
        get => (IcmpV6Type)_buffer[IcmpField.Type];
        set => _buffer[IcmpField.Type] = (byte)value;
    }

    public byte Code
    {
        get => _buffer[IcmpField.Code];
        set => _buffer[IcmpField.Code] = value;
    }

    public bool IsError => IsErrorType(Type);

    public bool IsEcho => Type is IcmpV6Type.EchoRequest or IcmpV6Type.EchoReply;

    public ushort Checksum
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_buffer[IcmpField.Checksum..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_buffer[IcmpField.Checksum..], value);
    }

    public ushort Identifier
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_buffer[IcmpField.Identifier..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_buffer[IcmpField.Identifier..], value);
    }

    public ushort SequenceNumber
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_buffer[IcmpField.SequenceNumber..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_buffer[IcmpField.SequenceNumber..], value);
    }

    /// <summary>Bytes 4..7: the MTU of Packet Too Big, the pointer of Parameter Problem, unused otherwise.</summary>
    public uint RestOfHeader
    {
        get => BinaryPrimitives.ReadUInt32BigEndian(_buffer[IcmpField.Identifier..]);
        set => BinaryPrimitives.WriteUInt32BigEndian(_buffer[IcmpField.Identifier..], value);
    }

    /// <summary>Packet Too Big MTU (RFC 4443 section 3.2).</summary>
    public uint Mtu
    {
        get => RestOfHeader;
        set => RestOfHeader = value;
    }

    public ushort ComputeChecksum(in Ipv6Address source, in Ipv6Address destination) => Packets.Checksum.ComputeSkipping(
        Packets.Checksum.PseudoHeader(source, destination, IpProtocol.IcmpV6, _buffer.Length), _buffer, IcmpField.Checksum);

    public void FillChecksum(in Ipv6Address source, in Ipv6Address destination) => Checksum = ComputeChecksum(source, destination);

    public bool IsChecksumValid(in Ipv6Address source, in Ipv6Address destination) =>
        Packets.Checksum.Add(Packets.Checksum.PseudoHeader(source, destination, IpProtocol.IcmpV6, _buffer.Length), _buffer) == 0xFFFF;

    /// <summary>Sets the echo identifier and patches the checksum incrementally.</summary>
    public void RewriteIdentifier(ushort identifier)
    {
        Checksum = Packets.Checksum.Update(Checksum, Identifier, identifier);
        Identifier = identifier;
    }

    /// <summary>The packet quoted by an error message; false for informational types or a quote without a full header.</summary>
    public bool TryGetQuotedPacket(out Ipv6Packet quoted)
    {
        if (!IsError)
        {
            quoted = default;
            return false;
        }

        return Ipv6Packet.TryParseQuoted(Payload, out quoted);
    }
}
