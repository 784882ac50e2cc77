using System.Buffers.Binary;

namespace NatKit.Packets;

/// <summary>
/// Splits an IPv4 datagram into fragments that fit an MTU (RFC 791 section 3.2, "An Example Fragmentation
/// Procedure"), written one by one into caller buffers without allocating. The first fragment keeps every
/// option; later ones keep only options with the copied flag. Offsets are relative to the datagram's own
/// offset, so a fragment can be fragmented again; the last fragment keeps the original MF.
/// <code>
/// if (Ipv4Fragmenter.TryCreate(datagram, mtu, out var f))
///     while (f.TryWriteNext(buffer, out var length)) Send(buffer[..length]);
/// </code>
/// </summary>
public ref struct Ipv4Fragmenter
{
    private readonly Span<byte> _datagram;
    private readonly int _mtu;
    private readonly int _firstHeaderLength;
    private readonly int _laterHeaderLength;
    private readonly int _baseOffset;
    private readonly bool _lastMoreFragments;
    private int _sent;
    private int _written;

    private Ipv4Fragmenter(Span<byte> datagram, int mtu, int firstHeaderLength, int laterHeaderLength, int baseOffset, bool lastMoreFragments)
    {
        _datagram = datagram;
        _mtu = mtu;
        _firstHeaderLength = firstHeaderLength;
        _laterHeaderLength = laterHeaderLength;
        _baseOffset = baseOffset;
        _lastMoreFragments = lastMoreFragments;
        _sent = 0;
        _written = 0;
        FragmentCount = CountFragments(datagram.Length - firstHeaderLength, mtu, firstHeaderLength, laterHeaderLength);
    }

    /// <summary>How many fragments <see cref="TryWriteNext"/> will write (1 when the datagram already fits).</summary>
    public int FragmentCount { get; }

    /// <summary>
    /// Prepares to fragment <paramref name="datagram"/> (a whole IPv4 datagram) for <paramref name="mtu"/>. False
    /// when it does not parse, has DF set while it does not fit (the sender gets ICMP Fragmentation Needed
    /// instead), has malformed options, or the MTU cannot carry its header and 8 bytes of data (RFC 791: every
    /// host must accept 68).
    /// </summary>
    public static bool TryCreate(Span<byte> datagram, int mtu, out Ipv4Fragmenter fragmenter)
    {
        fragmenter = default;
        if (!Ipv4Packet.TryParse(datagram, out var ip))
        {
            return false;
        }

        var fits = ip.TotalLength <= mtu;
        if (ip.DontFragment && !fits)
        {
            return false;
        }

        var options = new TlvOptionReader(ip.Options);
        var copied = 0;
        while (options.TryReadNext(out var kind, out var data))
        {
            if ((kind & 0x80) != 0)
            {
                copied += data.Length + 2;
            }
        }

        if (options.IsMalformed)
        {
            return false;
        }

        var laterHeaderLength = Ipv4Field.MinHeaderLength + (copied + 3) / 4 * 4;
        if (!fits && mtu < Math.Max(ip.HeaderLength, laterHeaderLength) + 8)
        {
            return false;
        }

        fragmenter = new Ipv4Fragmenter(ip.Buffer, fits ? int.MaxValue : mtu, ip.HeaderLength, laterHeaderLength,
            ip.FragmentOffset, ip.MoreFragments);
        return true;
    }

    /// <summary>Writes the next fragment; false when all were written. Throws if the destination is too small.</summary>
    public bool TryWriteNext(scoped Span<byte> destination, out int length)
    {
        length = 0;
        if (_written >= FragmentCount)
        {
            return false;
        }

        var dataLength = _datagram.Length - _firstHeaderLength;
        var first = _written == 0;
        var headerLength = first ? _firstHeaderLength : _laterHeaderLength;
        var chunk = Math.Min(dataLength - _sent, _mtu == int.MaxValue ? int.MaxValue : (_mtu - headerLength) / 8 * 8);
        var last = _sent + chunk >= dataLength;
        length = headerLength + chunk;
        if (destination.Length < length)
        {
            throw new ArgumentException($"The destination holds {destination.Length} bytes; the fragment needs {length}.", nameof(destination));
        }

        if (first)
        {
            _datagram[.._firstHeaderLength].CopyTo(destination);
        }
        else
        {
            _datagram[..Ipv4Field.MinHeaderLength].CopyTo(destination);
            WriteCopiedOptions(destination.Slice(Ipv4Field.MinHeaderLength, headerLength - Ipv4Field.MinHeaderLength));
            destination[0] = (byte)(0x40 | (headerLength / 4));
        }

        _datagram.Slice(_firstHeaderLength + _sent, chunk).CopyTo(destination[headerLength..]);
        BinaryPrimitives.WriteUInt16BigEndian(destination[Ipv4Field.TotalLength..], (ushort)length);
        var flags = BinaryPrimitives.ReadUInt16BigEndian(_datagram[Ipv4Field.FlagsAndFragmentOffset..]) & 0x4000;
        var more = !last || _lastMoreFragments;
        var word = flags | (more ? 0x2000 : 0) | ((_baseOffset + _sent) / 8);
        BinaryPrimitives.WriteUInt16BigEndian(destination[Ipv4Field.FlagsAndFragmentOffset..], (ushort)word);
        BinaryPrimitives.WriteUInt16BigEndian(destination[Ipv4Field.HeaderChecksum..], 0);
        BinaryPrimitives.WriteUInt16BigEndian(destination[Ipv4Field.HeaderChecksum..], Checksum.Compute(destination[..headerLength]));
        _sent += chunk;
        _written++;
        return true;
    }

    private readonly void WriteCopiedOptions(scoped Span<byte> destination)
    {
        var options = new TlvOptionReader(_datagram[Ipv4Field.MinHeaderLength.._firstHeaderLength]);
        var at = 0;
        while (options.TryReadNext(out var kind, out var data))
        {
            if ((kind & 0x80) != 0)
            {
                _datagram.Slice(Ipv4Field.MinHeaderLength + options.CurrentOffset, data.Length + 2).CopyTo(destination[at..]);
                at += data.Length + 2;
            }
        }

        destination[at..].Clear(); // End of Option List, then padding
    }

    private static int CountFragments(int dataLength, int mtu, int firstHeaderLength, int laterHeaderLength)
    {
        if (mtu == int.MaxValue || dataLength == 0)
        {
            return 1;
        }

        var firstChunk = (mtu - firstHeaderLength) / 8 * 8;
        if (dataLength <= firstChunk)
        {
            return 1;
        }

        var laterChunk = (mtu - laterHeaderLength) / 8 * 8;
        return 1 + (dataLength - firstChunk + laterChunk - 1) / laterChunk;
    }
}
