using System.Buffers.Binary;
using NatKit.Packets;

namespace NatKit.Tunnel.Server;

/// <summary>
/// Moves a packet between the address a client calls itself and the session's own inside address, statelessly (a
/// 1:1 NAT at the session's edge, like Linux's NETMAP): the IPv4 address, the header checksum, the TCP or UDP
/// checksum over the pseudo-header, and, for an ICMP error, the quoted packet's address and checksums too (RFC 5508
/// section 4.2), all by RFC 1624 incremental updates. Non-first fragments carry no transport header and get only the
/// IP part. Malformed packets are left alone (the NAT engine drops them).
/// </summary>
internal static class InnerAddressTranslation
{
    /// <summary>Client to server: the source becomes <paramref name="address"/>; an ICMP error's quoted packet (one the
    /// client received) has its destination moved the same way.</summary>
    public static void RewriteSource(Span<byte> packet, Ipv4Address address) => Rewrite(packet, address, source: true);

    /// <summary>Server to client: the destination becomes <paramref name="address"/>; an ICMP error's quoted packet
    /// (one the client sent) has its source moved the same way.</summary>
    public static void RewriteDestination(Span<byte> packet, Ipv4Address address) => Rewrite(packet, address, source: false);

    private static void Rewrite(Span<byte> buffer, Ipv4Address address, bool source)
    {
        if (!Ipv4Packet.TryParse(buffer, out var ip))
        {
            return;
        }

        var old = source ? ip.Source : ip.Destination;
        if (old == address)
        {
            return;
        }

        address.Write(buffer[(source ? Ipv4Field.Source : Ipv4Field.Destination)..]);
        ip.HeaderChecksum = Checksum.Update(ip.HeaderChecksum, old, address);
        if (!ip.IsFirstFragment)
        {
            return;
        }

        var l4 = ip.Payload;
        switch (ip.Protocol)
        {
            case IpProtocol.Tcp when l4.Length >= 18:
                Patch(l4[16..], old, address, udp: false);
                break;
            case IpProtocol.Udp when l4.Length >= 8:
                Patch(l4[6..], old, address, udp: true);
                break;
            case IpProtocol.Icmp when l4.Length >= 8 + Ipv4Field.MinHeaderLength && IsError(l4[0]):
                RewriteQuoted(l4, old, address, quotedSource: !source);
                break;
        }
    }

    /// <summary>The quoted packet of an ICMP error: its address (the other end of the one in the outer header), its
    /// header checksum and its transport checksum when quoted, and the ICMP checksum over all of them.</summary>
    private static void RewriteQuoted(Span<byte> icmp, Ipv4Address old, Ipv4Address address, bool quotedSource)
    {
        var quoted = icmp[8..];
        var headerLength = (quoted[0] & 0xF) * 4;
        if (quoted[0] >> 4 != 4 || headerLength < Ipv4Field.MinHeaderLength || quoted.Length < headerLength)
        {
            return;
        }

        var at = quotedSource ? Ipv4Field.Source : Ipv4Field.Destination;
        if (Ipv4Address.Read(quoted[at..]) != old)
        {
            return;
        }

        var icmpChecksum = BinaryPrimitives.ReadUInt16BigEndian(icmp[2..]);
        address.Write(quoted[at..]);
        icmpChecksum = Checksum.Update(icmpChecksum, old, address);

        var oldHeaderChecksum = BinaryPrimitives.ReadUInt16BigEndian(quoted[Ipv4Field.HeaderChecksum..]);
        var newHeaderChecksum = Checksum.Update(oldHeaderChecksum, old, address);
        BinaryPrimitives.WriteUInt16BigEndian(quoted[Ipv4Field.HeaderChecksum..], newHeaderChecksum);
        icmpChecksum = Checksum.Update(icmpChecksum, oldHeaderChecksum, newHeaderChecksum);

        var firstFragment = (BinaryPrimitives.ReadUInt16BigEndian(quoted[Ipv4Field.FlagsAndFragmentOffset..]) & 0x1FFF) == 0;
        var transport = quoted[headerLength..];
        var field = (IpProtocol)quoted[Ipv4Field.Protocol] switch
        {
            IpProtocol.Tcp when transport.Length >= 18 => 16,
            IpProtocol.Udp when transport.Length >= 8 => 6,
            _ => -1,
        };
        if (firstFragment && field >= 0)
        {
            var before = BinaryPrimitives.ReadUInt16BigEndian(transport[field..]);
            Patch(transport[field..], old, address, udp: field == 6);
            var after = BinaryPrimitives.ReadUInt16BigEndian(transport[field..]);
            icmpChecksum = Checksum.Update(icmpChecksum, before, after);
        }

        BinaryPrimitives.WriteUInt16BigEndian(icmp[2..], icmpChecksum);
    }

    private static void Patch(Span<byte> field, Ipv4Address old, Ipv4Address address, bool udp)
    {
        var checksum = BinaryPrimitives.ReadUInt16BigEndian(field);
        if (udp && checksum == 0)
        {
            return; // no UDP checksum: stays none (RFC 768)
        }

        checksum = udp ? Checksum.UpdateUdp(checksum, old.Value, address.Value) : Checksum.Update(checksum, old, address);
        BinaryPrimitives.WriteUInt16BigEndian(field, checksum);
    }

    private static bool IsError(byte type) => type is 3 or 11 or 12;
}
