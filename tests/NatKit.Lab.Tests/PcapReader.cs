using System.Buffers.Binary;

namespace NatKit.Lab.Tests;

/// <summary>Reads back the records of a classic pcap file (tests only).</summary>
internal static class PcapReader
{
    public static List<byte[]> Read(byte[] file) => ReadWithTimes(file).Select(r => r.Packet).ToList();

    public static List<(long Seconds, long Micros, byte[] Packet)> ReadWithTimes(byte[] file)
    {
        Assert.Equal(0xa1b2c3d4u, BinaryPrimitives.ReadUInt32LittleEndian(file));
        Assert.Equal(101u, BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(20)));
        var result = new List<(long, long, byte[])>();
        var at = 24;
        while (at < file.Length)
        {
            var sec = BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(at));
            var usec = BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(at + 4));
            var len = (int)BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(at + 8));
            result.Add((sec, usec, file.AsSpan(at + 16, len).ToArray()));
            at += 16 + len;
        }

        return result;
    }
}
