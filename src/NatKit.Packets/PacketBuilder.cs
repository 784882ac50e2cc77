using System.Buffers.Binary;

namespace NatKit.Packets;

/// <summary>
/// Writes whole, valid packets (checksums filled) into a caller's buffer and returns their length. Allocates
/// nothing. A destination that is too small, or field values that cannot be encoded, are caller bugs and throw
/// <see cref="ArgumentException"/>; these builders take trusted input, the views take untrusted bytes.
/// </summary>
public static partial class PacketBuilder
{
    /// <summary>RFC 1812 section 4.3.2.3: an ICMP error should not make a datagram longer than 576 bytes.</summary>
    public const int IcmpErrorMaxLength = 576;

    /// <summary>
    /// Writes an IPv4 header (with <paramref name="options"/>, a multiple of 4 bytes, at most 40) for a payload
    /// of <paramref name="payloadLength"/> bytes and fills its checksum. Returns the header length.
    /// </summary>
    public static int WriteIpv4Header(Span<byte> destination, in Ipv4Header header, IpProtocol protocol, int payloadLength,
        ReadOnlySpan<byte> options = default)
    {
        if (options.Length % 4 != 0 || options.Length > Ipv4Field.MaxHeaderLength - Ipv4Field.MinHeaderLength)
        {
            throw new ArgumentException("IPv4 options must be a multiple of 4 bytes, at most 40.", nameof(options));
        }

        var headerLength = Ipv4Field.MinHeaderLength + options.Length;
        var total = headerLength + payloadLength;
        if (payloadLength < 0 || total > ushort.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(payloadLength), payloadLength, "An IPv4 datagram is at most 65535 bytes.");
        }

        EnsureRoom(destination, headerLength);
        destination[Ipv4Field.VersionAndHeaderLength] = (byte)(0x40 | (headerLength / 4));
        destination[Ipv4Field.TypeOfService] = header.TypeOfService;
        BinaryPrimitives.WriteUInt16BigEndian(destination[Ipv4Field.TotalLength..], (ushort)total);
        BinaryPrimitives.WriteUInt16BigEndian(destination[Ipv4Field.Identification..], header.Identification);
        BinaryPrimitives.WriteUInt16BigEndian(destination[Ipv4Field.FlagsAndFragmentOffset..], header.DontFragment ? (ushort)0x4000 : (ushort)0);
        destination[Ipv4Field.Ttl] = header.Ttl;
        destination[Ipv4Field.Protocol] = (byte)protocol;
        BinaryPrimitives.WriteUInt16BigEndian(destination[Ipv4Field.HeaderChecksum..], 0);
        header.Source.Write(destination[Ipv4Field.Source..]);
        header.Destination.Write(destination[Ipv4Field.Destination..]);
        options.CopyTo(destination[Ipv4Field.Options..]);
        var checksum = Checksum.Compute(destination[..headerLength]);
        BinaryPrimitives.WriteUInt16BigEndian(destination[Ipv4Field.HeaderChecksum..], checksum);
        return headerLength;
    }

    /// <summary>IPv4 + UDP. With <paramref name="computeChecksum"/> false the UDP checksum is 0 ("none", RFC 768).</summary>
    public static int WriteIpv4Udp(Span<byte> destination, in Ipv4Header ip, ushort sourcePort, ushort destinationPort,
        ReadOnlySpan<byte> payload, bool computeChecksum = true)
    {
        var udpLength = UdpField.HeaderLength + payload.Length;
        var headerLength = WriteIpv4Header(destination, ip, IpProtocol.Udp, udpLength);
        EnsureRoom(destination, headerLength + udpLength);
        var udpBytes = destination.Slice(headerLength, udpLength);
        WriteUdp(udpBytes, sourcePort, destinationPort, payload);
        if (computeChecksum)
        {
            UdpDatagram.TryParse(udpBytes, out var udp);
            udp.FillChecksum(ip.Source, ip.Destination);
        }

        return headerLength + udpLength;
    }

    /// <summary>IPv4 + TCP with optional TCP <paramref name="options"/> (a multiple of 4 bytes, at most 40).</summary>
    public static int WriteIpv4Tcp(Span<byte> destination, in Ipv4Header ip, in TcpHeader tcp, ReadOnlySpan<byte> payload,
        ReadOnlySpan<byte> options = default)
    {
        var tcpLength = TcpHeaderLength(options) + payload.Length;
        var headerLength = WriteIpv4Header(destination, ip, IpProtocol.Tcp, tcpLength);
        EnsureRoom(destination, headerLength + tcpLength);
        var tcpBytes = destination.Slice(headerLength, tcpLength);
        WriteTcp(tcpBytes, tcp, options, payload);
        TcpSegment.TryParse(tcpBytes, out var segment);
        segment.FillChecksum(ip.Source, ip.Destination);
        return headerLength + tcpLength;
    }

    /// <summary>IPv4 + ICMP Echo Request (or Echo Reply when <paramref name="reply"/>).</summary>
    public static int WriteIpv4IcmpEcho(Span<byte> destination, in Ipv4Header ip, ushort identifier, ushort sequenceNumber,
        ReadOnlySpan<byte> payload, bool reply = false)
    {
        var icmpLength = IcmpField.HeaderLength + payload.Length;
        var headerLength = WriteIpv4Header(destination, ip, IpProtocol.Icmp, icmpLength);
        EnsureRoom(destination, headerLength + icmpLength);
        var icmp = destination.Slice(headerLength, icmpLength);
        icmp[IcmpField.Type] = (byte)(reply ? IcmpV4Type.EchoReply : IcmpV4Type.EchoRequest);
        icmp[IcmpField.Code] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(icmp[IcmpField.Checksum..], 0);
        BinaryPrimitives.WriteUInt16BigEndian(icmp[IcmpField.Identifier..], identifier);
        BinaryPrimitives.WriteUInt16BigEndian(icmp[IcmpField.SequenceNumber..], sequenceNumber);
        payload.CopyTo(icmp[IcmpField.HeaderLength..]);
        BinaryPrimitives.WriteUInt16BigEndian(icmp[IcmpField.Checksum..], Checksum.Compute(icmp));
        return headerLength + icmpLength;
    }

    /// <summary>
    /// IPv4 + an ICMP error quoting <paramref name="original"/> (the offending datagram as received): as much as
    /// fits without the error exceeding <paramref name="maxLength"/> bytes (RFC 1812 section 4.3.2.3, default 576)
    /// nor the destination, and never less than its IP header plus 8 bytes (RFC 792) unless the original is shorter.
    /// </summary>
    public static int WriteIpv4IcmpError(Span<byte> destination, in Ipv4Header ip, IcmpV4Type type, byte code, uint restOfHeader,
        ReadOnlySpan<byte> original, int maxLength = IcmpErrorMaxLength)
    {
        var overhead = Ipv4Field.MinHeaderLength + IcmpField.HeaderLength;
        var quote = Math.Min(original.Length, Math.Min(maxLength, Math.Min(destination.Length, ushort.MaxValue)) - overhead);
        var originalHeader = original.Length > 0 ? (original[0] & 0xF) * 4 : 0;
        var required = Math.Min(original.Length, originalHeader + 8);
        if (quote < required)
        {
            throw new ArgumentException($"An ICMP error needs room for {overhead + required} bytes: the IP header and 8 bytes of the original.", nameof(destination));
        }

        var icmpLength = IcmpField.HeaderLength + quote;
        var headerLength = WriteIpv4Header(destination, ip, IpProtocol.Icmp, icmpLength);
        var icmp = destination.Slice(headerLength, icmpLength);
        icmp[IcmpField.Type] = (byte)type;
        icmp[IcmpField.Code] = code;
        BinaryPrimitives.WriteUInt16BigEndian(icmp[IcmpField.Checksum..], 0);
        BinaryPrimitives.WriteUInt32BigEndian(icmp[IcmpField.Identifier..], restOfHeader);
        original[..quote].CopyTo(icmp[IcmpField.HeaderLength..]);
        BinaryPrimitives.WriteUInt16BigEndian(icmp[IcmpField.Checksum..], Checksum.Compute(icmp));
        return headerLength + icmpLength;
    }

    /// <summary>ICMP Time Exceeded (type 11; code 0 = TTL exceeded in transit, 1 = reassembly time exceeded).</summary>
    public static int WriteIpv4TimeExceeded(Span<byte> destination, in Ipv4Header ip, ReadOnlySpan<byte> original, byte code = 0) =>
        WriteIpv4IcmpError(destination, ip, IcmpV4Type.TimeExceeded, code, 0, original);

    /// <summary>ICMP Destination Unreachable (type 3) with the given code.</summary>
    public static int WriteIpv4DestinationUnreachable(Span<byte> destination, in Ipv4Header ip, IcmpV4UnreachableCode code,
        ReadOnlySpan<byte> original) =>
        WriteIpv4IcmpError(destination, ip, IcmpV4Type.DestinationUnreachable, (byte)code, 0, original);

    /// <summary>ICMP Fragmentation Needed and DF Set (type 3 code 4) with the next-hop MTU (RFC 1191 section 4).</summary>
    public static int WriteIpv4FragmentationNeeded(Span<byte> destination, in Ipv4Header ip, ushort nextHopMtu,
        ReadOnlySpan<byte> original) =>
        WriteIpv4IcmpError(destination, ip, IcmpV4Type.DestinationUnreachable, (byte)IcmpV4UnreachableCode.FragmentationNeeded,
            nextHopMtu, original);

    /// <summary>Writes a UDP header and payload with a zero checksum; returns 8 + payload length.</summary>
    public static int WriteUdp(Span<byte> destination, ushort sourcePort, ushort destinationPort, ReadOnlySpan<byte> payload)
    {
        var length = UdpField.HeaderLength + payload.Length;
        if (length > ushort.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(payload), payload.Length, "A UDP datagram is at most 65535 bytes.");
        }

        EnsureRoom(destination, length);
        BinaryPrimitives.WriteUInt16BigEndian(destination[UdpField.SourcePort..], sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(destination[UdpField.DestinationPort..], destinationPort);
        BinaryPrimitives.WriteUInt16BigEndian(destination[UdpField.Length..], (ushort)length);
        BinaryPrimitives.WriteUInt16BigEndian(destination[UdpField.Checksum..], 0);
        payload.CopyTo(destination[UdpField.HeaderLength..]);
        return length;
    }

    /// <summary>Writes a TCP header, options and payload with a zero checksum; returns the segment length.</summary>
    public static int WriteTcp(Span<byte> destination, in TcpHeader tcp, ReadOnlySpan<byte> options, ReadOnlySpan<byte> payload)
    {
        var headerLength = TcpHeaderLength(options);
        var length = headerLength + payload.Length;
        EnsureRoom(destination, length);
        BinaryPrimitives.WriteUInt16BigEndian(destination[TcpField.SourcePort..], tcp.SourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(destination[TcpField.DestinationPort..], tcp.DestinationPort);
        BinaryPrimitives.WriteUInt32BigEndian(destination[TcpField.SequenceNumber..], tcp.SequenceNumber);
        BinaryPrimitives.WriteUInt32BigEndian(destination[TcpField.AcknowledgmentNumber..], tcp.AcknowledgmentNumber);
        BinaryPrimitives.WriteUInt16BigEndian(destination[TcpField.DataOffset..],
            (ushort)((headerLength / 4) << 12 | ((ushort)tcp.Flags & 0x1FF)));
        BinaryPrimitives.WriteUInt16BigEndian(destination[TcpField.WindowSize..], tcp.WindowSize);
        BinaryPrimitives.WriteUInt16BigEndian(destination[TcpField.Checksum..], 0);
        BinaryPrimitives.WriteUInt16BigEndian(destination[TcpField.UrgentPointer..], tcp.UrgentPointer);
        options.CopyTo(destination[TcpField.Options..]);
        payload.CopyTo(destination[headerLength..]);
        return length;
    }

    private static int TcpHeaderLength(ReadOnlySpan<byte> options)
    {
        if (options.Length % 4 != 0 || options.Length > TcpField.MaxHeaderLength - TcpField.MinHeaderLength)
        {
            throw new ArgumentException("TCP options must be a multiple of 4 bytes, at most 40.", nameof(options));
        }

        return TcpField.MinHeaderLength + options.Length;
    }

    private static void EnsureRoom(Span<byte> destination, int needed)
    {
        if (destination.Length < needed)
        {
            throw new ArgumentException($"The destination holds {destination.Length} bytes; the packet needs {needed}.", nameof(destination));
        }
    }
}
