using System.Buffers.Binary;

namespace NatKit.Packets;

/// <summary>Byte offsets of the UDP header fields (RFC 768).</summary>
public static class UdpField
{
    public const int SourcePort = 0;
    public const int DestinationPort = 2;
    public const int Length = 4;
    public const int Checksum = 6;
    public const int HeaderLength = 8;
}

/// <summary>
/// A view over a UDP datagram (RFC 768), given the IP payload. <see cref="TryParse"/> checks 8 &lt;= Length &lt;=
/// buffer and cuts the view to Length. Over IPv4 a checksum of 0 means "none"; a computed 0 is sent as 0xFFFF.
/// </summary>
public readonly ref struct UdpDatagram
{
    private readonly Span<byte> _buffer;

    private UdpDatagram(Span<byte> buffer) => _buffer = buffer;

    public static bool TryParse(Span<byte> buffer, out UdpDatagram datagram)
    {
        datagram = default;
        if (buffer.Length < UdpField.HeaderLength)
        {
            return false;
        }

        int length = BinaryPrimitives.ReadUInt16BigEndian(buffer[UdpField.Length..]);
        if (length < UdpField.HeaderLength || length > buffer.Length)
        {
            return false;
        }

        datagram = new UdpDatagram(buffer[..length]);
        return true;
    }

    /// <summary>Header and payload, cut to the Length field.</summary>
    public Span<byte> Buffer => _buffer;

    public Span<byte> Payload => _buffer[UdpField.HeaderLength..];

    public ushort SourcePort
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_buffer);
        set => BinaryPrimitives.WriteUInt16BigEndian(_buffer, value);
    }

    public ushort DestinationPort
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_buffer[UdpField.DestinationPort..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_buffer[UdpField.DestinationPort..], value);
    }

    public ushort Length
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_buffer[UdpField.Length..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_buffer[UdpField.Length..], value);
    }

    public ushort Checksum
    {
        get => BinaryPrimitives.ReadUInt16BigEndian(_buffer[UdpField.Checksum..]);
        set => BinaryPrimitives.WriteUInt16BigEndian(_buffer[UdpField.Checksum..], value);
    }

    /// <summary>The checksum this datagram should carry over IPv4 (never 0: a computed 0 becomes 0xFFFF).</summary>
    public ushort ComputeChecksum(Ipv4Address source, Ipv4Address destination) =>
        ComputeWith(Packets.Checksum.PseudoHeader(source, destination, IpProtocol.Udp, _buffer.Length));

    /// <summary>The checksum this datagram should carry over IPv6 (never 0).</summary>
    public ushort ComputeChecksum(in Ipv6Address source, in Ipv6Address destination) =>
        ComputeWith(Packets.Checksum.PseudoHeader(source, destination, IpProtocol.Udp, _buffer.Length));

    public void FillChecksum(Ipv4Address source, Ipv4Address destination) => Checksum = ComputeChecksum(source, destination);

    public void FillChecksum(in Ipv6Address source, in Ipv6Address destination) => Checksum = ComputeChecksum(source, destination);

    /// <summary>True when the checksum verifies, or is 0 ("not computed", allowed over IPv4).</summary>
    public bool IsChecksumValid(Ipv4Address source, Ipv4Address destination) =>
        Checksum == 0 || Packets.Checksum.Add(Packets.Checksum.PseudoHeader(source, destination, IpProtocol.Udp, _buffer.Length), _buffer) == 0xFFFF;

    /// <summary>True when the checksum verifies. Over IPv6 a 0 checksum is invalid (RFC 8200 section 8.1).</summary>
    public bool IsChecksumValid(in Ipv6Address source, in Ipv6Address destination) =>
        Checksum != 0 && Packets.Checksum.Add(Packets.Checksum.PseudoHeader(source, destination, IpProtocol.Udp, _buffer.Length), _buffer) == 0xFFFF;

    /// <summary>Sets the source port and patches a non-zero checksum incrementally.</summary>
    public void RewriteSourcePort(ushort port)
    {
        Checksum = Packets.Checksum.UpdateUdp(Checksum, SourcePort, port);
        SourcePort = port;
    }

    /// <summary>Sets the destination port and patches a non-zero checksum incrementally.</summary>
    public void RewriteDestinationPort(ushort port)
    {
        Checksum = Packets.Checksum.UpdateUdp(Checksum, DestinationPort, port);
        DestinationPort = port;
    }

    /// <summary>Patches the checksum for a pseudo-header address change made by the IP layer (0 stays 0).</summary>
    public void UpdateChecksumForAddress(Ipv4Address oldAddress, Ipv4Address newAddress) =>
        Checksum = Packets.Checksum.UpdateUdp(Checksum, oldAddress.Value, newAddress.Value);

    /// <summary>Patches the checksum for an IPv6 pseudo-header address change (mandatory over IPv6, never 0).</summary>
    public void UpdateChecksumForAddress(in Ipv6Address oldAddress, in Ipv6Address newAddress) =>
        Checksum = Packets.Checksum.NonZero(Packets.Checksum.Update(Checksum, oldAddress, newAddress));

    private ushort ComputeWith(uint pseudoHeader) =>
        Packets.Checksum.NonZero(Packets.Checksum.ComputeSkipping(pseudoHeader, _buffer, UdpField.Checksum));
}
