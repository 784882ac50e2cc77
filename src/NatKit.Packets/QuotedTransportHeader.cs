using System.Buffers.Binary;

namespace NatKit.Packets;

/// <summary>
/// The start of a transport header quoted inside an ICMP error, where only 8 bytes are guaranteed (RFC 792,
/// RFC 4443 quotes more but may cut anywhere). Gives the ports (TCP, UDP), the ICMP query identifier, and the
/// checksum when the quote reaches it, which a NAT rewrites (RFC 5508 section 4.2, RFC 5382).
/// </summary>
public readonly ref struct QuotedTransportHeader
{
    /// <summary>Bytes every ICMP error quotes after the IP header.</summary>
    public const int MinLength = 8;

    private readonly Span<byte> _buffer;

    private QuotedTransportHeader(Span<byte> buffer, IpProtocol protocol)
    {
        _buffer = buffer;
        Protocol = protocol;
    }

    /// <summary>Wraps at least 8 quoted bytes of a TCP, UDP, ICMP or ICMPv6 header; false otherwise.</summary>
    public static bool TryParse(Span<byte> buffer, IpProtocol protocol, out QuotedTransportHeader header)
    {
        header = default;
        if (buffer.Length < MinLength
            || protocol is not (IpProtocol.Tcp or IpProtocol.Udp or IpProtocol.Icmp or IpProtocol.IcmpV6))
        {
            return false;
        }

        header = new QuotedTransportHeader(buffer, protocol);
        return true;
    }

    public IpProtocol Protocol { get; }

    /// <summary>The quoted bytes (at least 8).</summary>
    public Span<byte> Buffer => _buffer;

    /// <summary>TCP/UDP source port (for ICMP: the type and code bytes).</summary>
    public ushort SourcePort
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_buffer);
        set => BinaryPrimitives.WriteUInt16BigEndian(_buffer, value);
    }

    /// <summary>TCP/UDP destination port (for ICMP: the checksum).</summary>
    public ushort DestinationPort
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_buffer[2..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_buffer[2..], value);
    }

    /// <summary>ICMP/ICMPv6 query identifier (bytes 4..5).</summary>
    public ushort IcmpIdentifier
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_buffer[IcmpField.Identifier..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_buffer[IcmpField.Identifier..], value);
    }

    /// <summary>Offset of the checksum field for <see cref="Protocol"/>.</summary>
    public int ChecksumOffset => Protocol switch
    {
        IpProtocol.Tcp => TcpField.Checksum,
        IpProtocol.Udp => UdpField.Checksum,
        _ => IcmpField.Checksum,
    };

    /// <summary>True when the quote reaches the checksum field (always for UDP and ICMP; TCP needs 18 bytes).</summary>
    public bool HasChecksum => ChecksumOffset + 2 <= _buffer.Length;

    public bool TryGetChecksum(out ushort checksum)
    {
        checksum = 0;
        if (!HasChecksum)
        {
            return false;
        }

        checksum = BinaryPrimitives.ReadUInt16BigEndian(_buffer[ChecksumOffset..]);
        return true;
    }

    public bool TrySetChecksum(ushort checksum)
    {
        if (!HasChecksum)
        {
            return false;
        }

        BinaryPrimitives.WriteUInt16BigEndian(_buffer[ChecksumOffset..], checksum);
        return true;
    }
}
