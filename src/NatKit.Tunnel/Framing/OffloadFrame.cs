using NatKit.Packets;

namespace NatKit.Tunnel.Framing;

/// <summary>
/// A view over an offload message: type 0x06, the packet's virtio-net header (10 bytes, its own little-endian
/// layout), then the IP packet: a GSO super-packet to be cut into <see cref="VirtioNetHeader.GsoSize"/>-byte
/// segments, or a packet whose checksum is still partial. What a TUN device with offloads reads, carried whole, so
/// one message replaces up to 45.
/// </summary>
internal readonly ref struct OffloadFrame
{
    private OffloadFrame(VirtioNetHeader header, ReadOnlySpan<byte> packet)
    {
        Header = header;
        Packet = packet;
    }

    /// <summary>The offload state, checked (see <see cref="TryParse"/>).</summary>
    public VirtioNetHeader Header { get; }

    /// <summary>The IP packet.</summary>
    public ReadOnlySpan<byte> Packet { get; }

    /// <summary>
    /// Parses an offload message from the network and checks its header as a receiver must: known GSO types only
    /// (TCPv4/v6, UDP L4, with ECN only on TCP), a segment size for a super-packet, the partial-checksum flag on every
    /// super-packet, the checksum field inside the packet, and the packet an IPv4 or IPv6 one. A "checksum already
    /// verified" flag is cleared: a peer's word is not a verification.
    /// </summary>
    public static bool TryParse(ReadOnlySpan<byte> message, out OffloadFrame frame)
    {
        frame = default;
        if (message.Length <= TunnelMessage.OffloadPrefix || message[0] != TunnelMessage.OffloadType ||
            !VirtioNetHeader.TryRead(message[1..], out var header))
        {
            return false;
        }

        var packet = message[TunnelMessage.OffloadPrefix..];
        if (packet[0] >> 4 is not (4 or 6))
        {
            return false;
        }

        var gso = header.GsoType & ~VirtioGsoType.Ecn;
        var ecn = (header.GsoType & VirtioGsoType.Ecn) != 0;
        if (gso is not (VirtioGsoType.None or VirtioGsoType.TcpV4 or VirtioGsoType.TcpV6 or VirtioGsoType.UdpL4) ||
            (ecn && gso is not (VirtioGsoType.TcpV4 or VirtioGsoType.TcpV6)))
        {
            return false;
        }

        var needsChecksum = header.NeedsChecksumCompletion;
        if (gso != VirtioGsoType.None && (header.GsoSize == 0 || !needsChecksum))
        {
            return false;
        }

        if (needsChecksum && header.ChecksumStart + header.ChecksumOffset + 2 > packet.Length)
        {
            return false;
        }

        var flags = (byte)(header.Flags & VirtioNetHeader.NeedsChecksum);
        frame = new OffloadFrame(header with { Flags = flags }, packet);
        return true;
    }

    /// <summary>Writes the type and <paramref name="header"/> into the first <see cref="TunnelMessage.OffloadPrefix"/>
    /// bytes of <paramref name="destination"/> (the packet follows them).</summary>
    public static void WritePrefix(Span<byte> destination, in VirtioNetHeader header)
    {
        destination[0] = TunnelMessage.OffloadType;
        header.Write(destination[1..]);
    }
}
