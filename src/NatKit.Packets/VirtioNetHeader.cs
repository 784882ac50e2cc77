using System.Buffers.Binary;

namespace NatKit.Packets;

/// <summary>
/// The 10-byte <c>struct virtio_net_hdr</c> that precedes every packet on a TUN opened with IFF_VNET_HDR: whether
/// the checksum is still to be finished (and where), and whether the packet is a GSO super-packet to be cut into
/// <see cref="GsoSize"/>-byte segments. Fields are little-endian (the x86/arm64 native order tun uses by default).
/// </summary>
public readonly record struct VirtioNetHeader(
    byte Flags, VirtioGsoType GsoType, ushort HeaderLength, ushort GsoSize, ushort ChecksumStart, ushort ChecksumOffset)
{
    public const int Size = 10;

    /// <summary>VIRTIO_NET_HDR_F_NEEDS_CSUM: the L4 checksum field holds only the pseudo-header sum; the data from
    /// <see cref="ChecksumStart"/> is still to be summed into it.</summary>
    public const byte NeedsChecksum = 0x01;

    /// <summary>VIRTIO_NET_HDR_F_DATA_VALID: the checksum was already verified.</summary>
    public const byte DataValid = 0x02;

    /// <summary>A plain, finished packet.</summary>
    public static VirtioNetHeader None => default;

    public bool NeedsChecksumCompletion => (Flags & NeedsChecksum) != 0;

    public bool IsGso => (GsoType & ~VirtioGsoType.Ecn) != VirtioGsoType.None;

    /// <summary>Reads a header; false when <paramref name="source"/> is shorter than <see cref="Size"/>.</summary>
    public static bool TryRead(ReadOnlySpan<byte> source, out VirtioNetHeader header)
    {
        if (source.Length < Size)
        {
            header = default;
            return false;
        }

        header = new VirtioNetHeader(
            source[0],
            (VirtioGsoType)source[1],
            BinaryPrimitives.ReadUInt16LittleEndian(source[2..]),
            BinaryPrimitives.ReadUInt16LittleEndian(source[4..]),
            BinaryPrimitives.ReadUInt16LittleEndian(source[6..]),
            BinaryPrimitives.ReadUInt16LittleEndian(source[8..]));
        return true;
    }

    /// <summary>Writes the header into the first <see cref="Size"/> bytes of <paramref name="destination"/>.</summary>
    public void Write(Span<byte> destination)
    {
        destination[0] = Flags;
        destination[1] = (byte)GsoType;
        BinaryPrimitives.WriteUInt16LittleEndian(destination[2..], HeaderLength);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[4..], GsoSize);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[6..], ChecksumStart);
        BinaryPrimitives.WriteUInt16LittleEndian(destination[8..], ChecksumOffset);
    }
}

/// <summary>VIRTIO_NET_HDR_GSO_*: what kind of super-packet this is.</summary>
public enum VirtioGsoType : byte
{
    None = 0,
    TcpV4 = 1,
    Udp = 3,
    TcpV6 = 4,

    /// <summary>VIRTIO_NET_HDR_GSO_UDP_L4: UDP segmentation (USO), each segment a whole datagram.</summary>
    UdpL4 = 5,

    /// <summary>Flag: the TCP stream uses ECN (CWR must be on the first segment only).</summary>
    Ecn = 0x80,
}
