using System.Buffers.Binary;
using NatKit.Packets;

namespace NatKit.Linux;

/// <summary>
/// Cuts a GSO super-packet read from a TUN (TCP over IPv4/IPv6, or UDP with USO) into the MTU-sized packets the
/// sender's stack would have sent without the offload, and finishes partial checksums. Used when a packet must
/// leave on a device that did not accept the same offload. Pure: bytes in, bytes out, no allocation.
/// </summary>
/// <remarks>
/// Per segment, as Linux's tcp_gso_segment does: the IP header is copied with its length fixed (and, for IPv4, the
/// identification incremented per segment and the header checksum recomputed); TCP sequence numbers advance by the
/// payload before the segment; FIN and PSH stay only on the last segment and CWR only on the first; UDP segments
/// get their own length; every L4 checksum is computed in full (pseudo-header included).
/// </remarks>
public static class GsoSegmenter
{
    private const int TcpFlagFin = 0x01;
    private const int TcpFlagPsh = 0x08;
    private const int TcpFlagCwr = 0x80;

    /// <summary>
    /// Splits <paramref name="packet"/> (an IP packet, no virtio header) into segments written back to back into
    /// <paramref name="output"/>, each preceded by <paramref name="headerRoom"/> zero bytes (room for a plain
    /// virtio header). The length of each segment, header room included, goes to <paramref name="lengths"/>.
    /// Returns the number of segments, or -1 when the packet is not a super-packet this can split (malformed,
    /// unknown type, or the output is too small).
    /// </summary>
    public static int Split(ReadOnlySpan<byte> packet, in VirtioNetHeader header, Span<byte> output, int headerRoom,
        Span<int> lengths)
    {
        if (packet.Length < 20 || header.GsoSize == 0)
        {
            return -1;
        }

        var version = packet[0] >> 4;
        var gsoType = header.GsoType & ~VirtioGsoType.Ecn;
        var isTcp = gsoType is VirtioGsoType.TcpV4 or VirtioGsoType.TcpV6;
        var isUdp = gsoType is VirtioGsoType.UdpL4;
        if (!isTcp && !isUdp)
        {
            return -1; // UFO (IP fragmentation of UDP) is never negotiated
        }

        int ipHeaderLength;
        if (version == 4)
        {
            ipHeaderLength = (packet[0] & 0xF) * 4;
            if (ipHeaderLength < 20 || BinaryPrimitives.ReadUInt16BigEndian(packet[2..]) != packet.Length)
            {
                return -1;
            }
        }
        else if (version == 6 && packet.Length >= 40)
        {
            // csum_start is where the transport header begins (after any extension headers)
            ipHeaderLength = header.ChecksumStart;
            if (ipHeaderLength < 40)
            {
                return -1;
            }
        }
        else
        {
            return -1;
        }

        if (header.ChecksumStart != ipHeaderLength || packet.Length < ipHeaderLength + 8)
        {
            return -1;
        }

        var l4 = packet[ipHeaderLength..];
        var l4HeaderLength = isTcp ? (l4.Length >= 20 ? (l4[12] >> 4) * 4 : 0) : 8;
        if (l4HeaderLength < 8 || l4.Length < l4HeaderLength)
        {
            return -1;
        }

        var headersLength = ipHeaderLength + l4HeaderLength;
        var payload = packet[headersLength..];
        var count = (payload.Length + header.GsoSize - 1) / header.GsoSize;
        if (count == 0 || count > lengths.Length ||
            output.Length < (count * (headerRoom + headersLength)) + payload.Length)
        {
            return -1;
        }

        var protocol = isTcp ? IpProtocol.Tcp : IpProtocol.Udp;
        var ipId = version == 4 ? BinaryPrimitives.ReadUInt16BigEndian(packet[4..]) : (ushort)0;
        var sequence = isTcp ? BinaryPrimitives.ReadUInt32BigEndian(l4[4..]) : 0u;
        var flags = isTcp ? l4[13] : (byte)0;
        var position = 0;
        for (var i = 0; i < count; i++)
        {
            var chunk = payload.Slice(i * header.GsoSize, Math.Min(header.GsoSize, payload.Length - (i * header.GsoSize)));
            var segmentLength = headersLength + chunk.Length;
            var room = output.Slice(position, headerRoom);
            room.Clear();
            var segment = output.Slice(position + headerRoom, segmentLength);
            packet[..headersLength].CopyTo(segment);
            chunk.CopyTo(segment[headersLength..]);

            if (version == 4)
            {
                BinaryPrimitives.WriteUInt16BigEndian(segment[2..], (ushort)segmentLength);
                BinaryPrimitives.WriteUInt16BigEndian(segment[4..], (ushort)(ipId + i));
                segment[10] = 0;
                segment[11] = 0;
                BinaryPrimitives.WriteUInt16BigEndian(segment[10..], Checksum.Compute(segment[..ipHeaderLength]));
            }
            else
            {
                BinaryPrimitives.WriteUInt16BigEndian(segment[4..], (ushort)(segmentLength - 40));
            }

            var l4Segment = segment[ipHeaderLength..];
            int checksumOffset;
            if (isTcp)
            {
                BinaryPrimitives.WriteUInt32BigEndian(l4Segment[4..], sequence + (uint)(i * header.GsoSize));
                var f = flags;
                if (i != count - 1)
                {
                    f &= unchecked((byte)~(TcpFlagFin | TcpFlagPsh));
                }

                if (i != 0)
                {
                    f &= unchecked((byte)~TcpFlagCwr);
                }

                l4Segment[13] = f;
                checksumOffset = 16;
            }
            else
            {
                BinaryPrimitives.WriteUInt16BigEndian(l4Segment[4..], (ushort)l4Segment.Length);
                checksumOffset = 6;
            }

            l4Segment[checksumOffset] = 0;
            l4Segment[checksumOffset + 1] = 0;
            var pseudo = version == 4
                ? Checksum.PseudoHeader(Ipv4Address.Read(segment[12..]), Ipv4Address.Read(segment[16..]), protocol,
                    l4Segment.Length)
                : Checksum.PseudoHeader(Ipv6Address.Read(segment[8..]), Ipv6Address.Read(segment[24..]), protocol,
                    l4Segment.Length);
            var sum = Checksum.Add(pseudo, l4Segment);
            var value = Checksum.Finish(sum);
            if (isUdp && value == 0)
            {
                value = 0xFFFF;
            }

            BinaryPrimitives.WriteUInt16BigEndian(l4Segment[checksumOffset..], value);
            lengths[i] = headerRoom + segmentLength;
            position += headerRoom + segmentLength;
        }

        return count;
    }

    /// <summary>
    /// Finishes a packet whose L4 checksum is partial (virtio NEEDS_CSUM): sums the bytes from
    /// <see cref="VirtioNetHeader.ChecksumStart"/> (the checksum field already holds the pseudo-header sum) and
    /// stores the complement. False when the header points outside the packet.
    /// </summary>
    public static bool CompleteChecksum(Span<byte> packet, in VirtioNetHeader header)
    {
        var field = header.ChecksumStart + header.ChecksumOffset;
        if (!header.NeedsChecksumCompletion || header.ChecksumStart >= packet.Length || field + 2 > packet.Length)
        {
            return false;
        }

        var value = Checksum.Finish(Checksum.Add(0, packet[header.ChecksumStart..]));
        if (value == 0 && header.ChecksumOffset == 6)
        {
            value = 0xFFFF; // UDP sends a computed zero as all ones (RFC 768)
        }

        BinaryPrimitives.WriteUInt16BigEndian(packet[field..], value);
        return true;
    }
}
