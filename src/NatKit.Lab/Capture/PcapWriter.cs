using System.Buffers.Binary;

namespace NatKit.Lab.Capture;

/// <summary>
/// Writes the classic libpcap file format (magic a1b2c3d4, version 2.4, microsecond timestamps) with link type
/// LINKTYPE_RAW (101): each record is a bare IPv4 packet. Wireshark and tshark open it as is. Timestamps come
/// from the caller (the lab's virtual clock), so the same run writes the same bytes.
/// </summary>
public sealed class PcapWriter : IDisposable
{
    /// <summary>LINKTYPE_RAW: raw IPv4/IPv6, the version nibble tells which.</summary>
    public const uint LinkTypeRaw = 101;

    /// <summary>Bytes kept of each packet.</summary>
    public const int SnapLength = 65535;

    private readonly Stream _stream;
    private readonly bool _ownsStream;
    private readonly byte[] _recordHeader = new byte[16];

    public PcapWriter(Stream stream, bool ownsStream = true)
    {
        ArgumentNullException.ThrowIfNull(stream);
        _stream = stream;
        _ownsStream = ownsStream;
        Span<byte> header = stackalloc byte[24];
        BinaryPrimitives.WriteUInt32LittleEndian(header, 0xa1b2c3d4);
        BinaryPrimitives.WriteUInt16LittleEndian(header[4..], 2);
        BinaryPrimitives.WriteUInt16LittleEndian(header[6..], 4);
        BinaryPrimitives.WriteInt32LittleEndian(header[8..], 0); // thiszone
        BinaryPrimitives.WriteUInt32LittleEndian(header[12..], 0); // sigfigs
        BinaryPrimitives.WriteUInt32LittleEndian(header[16..], SnapLength);
        BinaryPrimitives.WriteUInt32LittleEndian(header[20..], LinkTypeRaw);
        _stream.Write(header);
    }

    /// <summary>Packets written so far.</summary>
    public long Packets { get; private set; }

    /// <summary>Appends one packet captured at <paramref name="timestamp"/>.</summary>
    public void Write(DateTimeOffset timestamp, ReadOnlySpan<byte> packet)
    {
        var sinceEpoch = timestamp - DateTimeOffset.UnixEpoch;
        var seconds = sinceEpoch.Ticks / TimeSpan.TicksPerSecond;
        var micros = sinceEpoch.Ticks % TimeSpan.TicksPerSecond / 10;
        var kept = Math.Min(packet.Length, SnapLength);
        BinaryPrimitives.WriteUInt32LittleEndian(_recordHeader, (uint)seconds);
        BinaryPrimitives.WriteUInt32LittleEndian(_recordHeader.AsSpan(4), (uint)micros);
        BinaryPrimitives.WriteUInt32LittleEndian(_recordHeader.AsSpan(8), (uint)kept);
        BinaryPrimitives.WriteUInt32LittleEndian(_recordHeader.AsSpan(12), (uint)packet.Length);
        _stream.Write(_recordHeader);
        _stream.Write(packet[..kept]);
        Packets++;
    }

    public void Flush() => _stream.Flush();

    public void Dispose()
    {
        _stream.Flush();
        if (_ownsStream)
        {
            _stream.Dispose();
        }
    }
}
