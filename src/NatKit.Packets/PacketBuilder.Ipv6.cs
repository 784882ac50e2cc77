using System.Buffers.Binary;

namespace NatKit.Packets;

public static partial class PacketBuilder
{
    /// <summary>RFC 4443 section 2.4(c): an ICMPv6 error must not exceed the minimum IPv6 MTU.</summary>
    public const int IcmpV6ErrorMaxLength = 1280;

    /// <summary>Writes the 40-byte IPv6 header for a payload of <paramref name="payloadLength"/> bytes; returns 40.</summary>
    public static int WriteIpv6Header(Span<byte> destination, in Ipv6Header header, IpProtocol nextHeader, int payloadLength)
    {
        if (payloadLength is < 0 or > ushort.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(payloadLength), payloadLength, "An IPv6 payload is at most 65535 bytes (no jumbograms).");
        }

        if (header.FlowLabel > 0xFFFFF)
        {
            throw new ArgumentException("The flow label has 20 bits.", nameof(header));
        }

        EnsureRoom(destination, Ipv6Field.HeaderLength);
        BinaryPrimitives.WriteUInt32BigEndian(destination, 6u << 28 | (uint)header.TrafficClass << 20 | header.FlowLabel);
        BinaryPrimitives.WriteUInt16BigEndian(destination[Ipv6Field.PayloadLength..], (ushort)payloadLength);
        destination[Ipv6Field.NextHeader] = (byte)nextHeader;
        destination[Ipv6Field.HopLimit] = header.HopLimit;
        header.Source.Write(destination[Ipv6Field.Source..]);
        header.Destination.Write(destination[Ipv6Field.Destination..]);
        return Ipv6Field.HeaderLength;
    }

    /// <summary>IPv6 + UDP; the checksum is mandatory over IPv6 (RFC 8200 section 8.1) and always filled.</summary>
    public static int WriteIpv6Udp(Span<byte> destination, in Ipv6Header ip, ushort sourcePort, ushort destinationPort,
        ReadOnlySpan<byte> payload)
    {
        var udpLength = UdpField.HeaderLength + payload.Length;
        WriteIpv6Header(destination, ip, IpProtocol.Udp, udpLength);
        EnsureRoom(destination, Ipv6Field.HeaderLength + udpLength);
        var udpBytes = destination.Slice(Ipv6Field.HeaderLength, udpLength);
        WriteUdp(udpBytes, sourcePort, destinationPort, payload);
        UdpDatagram.TryParse(udpBytes, out var udp);
        udp.FillChecksum(ip.Source, ip.Destination);
        return Ipv6Field.HeaderLength + udpLength;
    }

    /// <summary>IPv6 + TCP with optional options (a multiple of 4 bytes, at most 40).</summary>
    public static int WriteIpv6Tcp(Span<byte> destination, in Ipv6Header ip, in TcpHeader tcp, ReadOnlySpan<byte> payload,
        ReadOnlySpan<byte> options = default)
    {
        var tcpLength = TcpHeaderLength(options) + payload.Length;
        WriteIpv6Header(destination, ip, IpProtocol.Tcp, tcpLength);
        EnsureRoom(destination, Ipv6Field.HeaderLength + tcpLength);
        var tcpBytes = destination.Slice(Ipv6Field.HeaderLength, tcpLength);
        WriteTcp(tcpBytes, tcp, options, payload);
        TcpSegment.TryParse(tcpBytes, out var segment);
        segment.FillChecksum(ip.Source, ip.Destination);
        return Ipv6Field.HeaderLength + tcpLength;
    }

    /// <summary>IPv6 + ICMPv6 Echo Request (or Echo Reply when <paramref name="reply"/>).</summary>
    public static int WriteIpv6IcmpEcho(Span<byte> destination, in Ipv6Header ip, ushort identifier, ushort sequenceNumber,
        ReadOnlySpan<byte> payload, bool reply = false)
    {
        var icmpLength = IcmpField.HeaderLength + payload.Length;
        WriteIpv6Header(destination, ip, IpProtocol.IcmpV6, icmpLength);
        EnsureRoom(destination, Ipv6Field.HeaderLength + icmpLength);
        var icmp = destination.Slice(Ipv6Field.HeaderLength, icmpLength);
        icmp[IcmpField.Type] = (byte)(reply ? IcmpV6Type.EchoReply : IcmpV6Type.EchoRequest);
        icmp[IcmpField.Code] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(icmp[IcmpField.Identifier..], identifier);
        BinaryPrimitives.WriteUInt16BigEndian(icmp[IcmpField.SequenceNumber..], sequenceNumber);
        payload.CopyTo(icmp[IcmpField.HeaderLength..]);
        IcmpV6Message.TryParse(icmp, out var message);
        message.FillChecksum(ip.Source, ip.Destination);
        return Ipv6Field.HeaderLength + icmpLength;
    }

    /// <summary>
    /// IPv6 + an ICMPv6 error (type below 128) quoting as much of <paramref name="original"/> as fits in
    /// <paramref name="maxLength"/> (RFC 4443 section 2.4(c): 1280) and the destination, at least its 40-byte
    /// header and 8 bytes unless it is shorter.
    /// </summary>
    public static int WriteIpv6IcmpError(Span<byte> destination, in Ipv6Header ip, IcmpV6Type type, byte code, uint restOfHeader,
        ReadOnlySpan<byte> original, int maxLength = IcmpV6ErrorMaxLength)
    {
        if (!IcmpV6Message.IsErrorType(type))
        {
            throw new ArgumentException("ICMPv6 error types are below 128.", nameof(type));
        }

        var overhead = Ipv6Field.HeaderLength + IcmpField.HeaderLength;
        var quote = Math.Min(original.Length, Math.Min(maxLength, Math.Min(destination.Length, ushort.MaxValue)) - overhead);
        var required = Math.Min(original.Length, Ipv6Field.HeaderLength + 8);
        if (quote < required)
        {
            throw new ArgumentException($"An ICMPv6 error needs room for {overhead + required} bytes: the header and 8 bytes of the original.", nameof(destination));
        }

        var icmpLength = IcmpField.HeaderLength + quote;
        WriteIpv6Header(destination, ip, IpProtocol.IcmpV6, icmpLength);
        var icmp = destination.Slice(Ipv6Field.HeaderLength, icmpLength);
        icmp[IcmpField.Type] = (byte)type;
        icmp[IcmpField.Code] = code;
        BinaryPrimitives.WriteUInt32BigEndian(icmp[IcmpField.Identifier..], restOfHeader);
        original[..quote].CopyTo(icmp[IcmpField.HeaderLength..]);
        IcmpV6Message.TryParse(icmp, out var message);
        message.FillChecksum(ip.Source, ip.Destination);
        return Ipv6Field.HeaderLength + icmpLength;
    }

    /// <summary>ICMPv6 Packet Too Big (RFC 4443 section 3.2) with the next-hop MTU.</summary>
    public static int WriteIpv6PacketTooBig(Span<byte> destination, in Ipv6Header ip, uint mtu, ReadOnlySpan<byte> original) =>
        WriteIpv6IcmpError(destination, ip, IcmpV6Type.PacketTooBig, 0, mtu, original);

    /// <summary>ICMPv6 Time Exceeded (RFC 4443 section 3.3; code 0 = hop limit exceeded in transit).</summary>
    public static int WriteIpv6TimeExceeded(Span<byte> destination, in Ipv6Header ip, ReadOnlySpan<byte> original, byte code = 0) =>
        WriteIpv6IcmpError(destination, ip, IcmpV6Type.TimeExceeded, code, 0, original);
}
