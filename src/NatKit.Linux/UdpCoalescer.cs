using System.Buffers.Binary;
using NatKit.Packets;

namespace NatKit.Linux;

/// <summary>
/// Gathers consecutive IPv4 UDP datagrams of one flow, all the same size (the last may be shorter), into one USO
/// super-packet (virtio GSO_UDP_L4), so a burst of small datagrams costs one TUN write instead of one each; the
/// receiving kernel cuts it back into the same datagrams. Only datagrams whose checksum is still partial (made by a
/// local stack, so never damaged in transit) are gathered: the super-packet's checksum is partial again.
/// </summary>
/// <remarks>The same idea as wireguard-go's UDP coalescing on its TUN writes; the layout is Linux's: one IP and
/// UDP header whose lengths cover the whole payload, the UDP checksum field holding the pseudo-header sum.</remarks>
internal sealed class UdpCoalescer
{
    /// <summary>Linux's UDP_MAX_SEGMENTS: most datagrams one USO packet may carry.</summary>
    public const int MaxSegments = 64;

    private const int IpHeader = 20;
    private const int UdpHeader = 8;
    private const int Headers = IpHeader + UdpHeader;

    private readonly byte[] _buffer = new byte[VirtioNetHeader.Size + 65535];
    private int _length; // IP packet bytes gathered (after the virtio header room)
    private int _segmentSize;
    private bool _closed; // a shorter datagram ended the run

    /// <summary>Datagrams gathered so far.</summary>
    public int Count { get; private set; }

    /// <summary>
    /// True when <paramref name="packet"/> (an IP packet; <paramref name="header"/> its virtio header) was added to
    /// the pending run; false when it cannot join it (then flush the run, send this packet, or start a new run with
    /// it if <see cref="CanStart"/>).
    /// </summary>
    public bool TryAppend(ReadOnlySpan<byte> packet, in VirtioNetHeader header)
    {
        if (Count == 0 || _closed || Count >= MaxSegments || !CanStart(packet, header))
        {
            return false;
        }

        var pending = _buffer.AsSpan(VirtioNetHeader.Size, _length);
        var payload = packet[Headers..];
        if (payload.Length > _segmentSize || _length + payload.Length > 65535 ||
            !packet[12..20].SequenceEqual(pending[12..20]) || !packet[IpHeader..(IpHeader + 4)].SequenceEqual(pending[IpHeader..(IpHeader + 4)]) ||
            packet[1] != pending[1] || packet[8] != pending[8])
        {
            return false;
        }

        payload.CopyTo(_buffer.AsSpan(VirtioNetHeader.Size + _length));
        _length += payload.Length;
        _closed = payload.Length < _segmentSize;
        Count++;
        return true;
    }

    /// <summary>True when <paramref name="packet"/> could start a run: IPv4 without options, not a fragment, UDP
    /// with a partial checksum, a non-empty payload, not itself a super-packet.</summary>
    public static bool CanStart(ReadOnlySpan<byte> packet, in VirtioNetHeader header) =>
        packet.Length > Headers && packet[0] == 0x45 && packet[9] == (byte)IpProtocol.Udp &&
        header.NeedsChecksumCompletion && !header.IsGso &&
        header.ChecksumStart == IpHeader && header.ChecksumOffset == 6 &&
        (BinaryPrimitives.ReadUInt16BigEndian(packet[6..]) & 0x3FFF) == 0 &&
        BinaryPrimitives.ReadUInt16BigEndian(packet[2..]) == packet.Length;

    /// <summary>Starts a new run with <paramref name="packet"/> (check <see cref="CanStart"/> first).</summary>
    public void Start(ReadOnlySpan<byte> packet)
    {
        packet.CopyTo(_buffer.AsSpan(VirtioNetHeader.Size));
        _length = packet.Length;
        _segmentSize = packet.Length - Headers;
        _closed = false;
        Count = 1;
    }

    /// <summary>
    /// Finishes the run and returns it with its virtio header in front: a USO super-packet when it holds more than
    /// one datagram, else the single datagram unchanged. Empties the coalescer.
    /// </summary>
    public ReadOnlySpan<byte> Take()
    {
        var packet = _buffer.AsSpan(VirtioNetHeader.Size, _length);
        VirtioNetHeader header;
        if (Count > 1)
        {
            BinaryPrimitives.WriteUInt16BigEndian(packet[2..], (ushort)_length);
            packet[10] = 0;
            packet[11] = 0;
            BinaryPrimitives.WriteUInt16BigEndian(packet[10..], Checksum.Compute(packet[..IpHeader]));
            var udpLength = _length - IpHeader;
            BinaryPrimitives.WriteUInt16BigEndian(packet[(IpHeader + 4)..], (ushort)udpLength);
            var pseudo = Checksum.PseudoHeader(Ipv4Address.Read(packet[12..]), Ipv4Address.Read(packet[16..]),
                IpProtocol.Udp, udpLength);
            BinaryPrimitives.WriteUInt16BigEndian(packet[(IpHeader + 6)..], (ushort)~Checksum.Finish(pseudo));
            header = new VirtioNetHeader(VirtioNetHeader.NeedsChecksum, VirtioGsoType.UdpL4, Headers,
                (ushort)_segmentSize, IpHeader, 6);
        }
        else
        {
            header = new VirtioNetHeader(VirtioNetHeader.NeedsChecksum, VirtioGsoType.None, 0, 0, IpHeader, 6);
        }

        header.Write(_buffer);
        var result = _buffer.AsSpan(0, VirtioNetHeader.Size + _length);
        Count = 0;
        _length = 0;
        return result;
    }
}
