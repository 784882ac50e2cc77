using System.Buffers;
using System.Buffers.Binary;
using System.Security.Cryptography;

namespace NatKit.Stun;

/// <summary>
/// The message-integrity and fingerprint computations of RFC 8489 sections 14.5-14.7. Each covers the message
/// up to the attribute in question, with the header length rewritten as if that attribute were the last one.
/// </summary>
public static class StunIntegrity
{
    public const int Sha1Length = 20;
    public const int Sha256Length = 32;

    /// <summary>FINGERPRINT is CRC-32 of the message xor this ("STUN").</summary>
    public const uint FingerprintXor = 0x5354554E;

    private const int StackLimit = 1024;

    private static readonly uint[] CrcTable = BuildCrcTable();

    /// <summary>CRC-32 (ISO-HDLC, the one zlib uses) of <paramref name="data"/>.</summary>
    public static uint Crc32(ReadOnlySpan<byte> data) => Crc32Update(0xFFFF_FFFFu, data) ^ 0xFFFF_FFFFu;

    /// <summary>
    /// The FINGERPRINT value for a message whose first <paramref name="prefixLength"/> bytes precede the
    /// FINGERPRINT attribute (header length treated as prefix + 8 - 20).
    /// </summary>
    public static uint Fingerprint(ReadOnlySpan<byte> message, int prefixLength)
    {
        Span<byte> header = stackalloc byte[4];
        message[..4].CopyTo(header);
        BinaryPrimitives.WriteUInt16BigEndian(header[2..], (ushort)(prefixLength + 8 - StunMessageReader.HeaderLength));
        var crc = Crc32Update(0xFFFF_FFFFu, header);
        crc = Crc32Update(crc, message[4..prefixLength]);
        return crc ^ 0xFFFF_FFFFu ^ FingerprintXor;
    }

    /// <summary>
    /// Computes the HMAC of a message prefix for MESSAGE-INTEGRITY (SHA-1, 20 bytes) or MESSAGE-INTEGRITY-SHA256
    /// (32 bytes, possibly truncated by the caller): the header length is patched to end after an attribute of
    /// <paramref name="valueLength"/> bytes placed at <paramref name="prefixLength"/>.
    /// </summary>
    public static void Hmac(ReadOnlySpan<byte> message, int prefixLength, int valueLength, ReadOnlySpan<byte> key,
        bool sha256, Span<byte> destination)
    {
        byte[]? rented = null;
        var copy = prefixLength <= StackLimit
            ? stackalloc byte[StackLimit]
            : (rented = ArrayPool<byte>.Shared.Rent(prefixLength));
        try
        {
            var prefix = copy[..prefixLength];
            message[..prefixLength].CopyTo(prefix);
            BinaryPrimitives.WriteUInt16BigEndian(prefix[2..],
                (ushort)(prefixLength + 4 + valueLength - StunMessageReader.HeaderLength));
            if (sha256)
            {
                HMACSHA256.HashData(key, prefix, destination);
            }
            else
            {
                HMACSHA1.HashData(key, prefix, destination);
            }
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    private static uint Crc32Update(uint crc, ReadOnlySpan<byte> data)
    {
        var table = CrcTable;
        foreach (var b in data)
        {
            crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8);
        }

        return crc;
    }

    private static uint[] BuildCrcTable()
    {
        var table = new uint[256];
        for (uint i = 0; i < 256; i++)
        {
            var c = i;
            for (var k = 0; k < 8; k++)
            {
                c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            }

            table[i] = c;
        }

        return table;
    }
}
