using System.Buffers.Binary;
using System.Security.Cryptography;

namespace NatKit.Stun;

/// <summary>The 96-bit transaction ID as a value (no array), so matching responses to requests allocates nothing.</summary>
public readonly record struct StunTransactionId(uint High, ulong Low)
{
    public const int Size = 12;

    /// <summary>A new ID from a cryptographically strong source (RFC 8489 section 5: uniformly random).</summary>
    public static StunTransactionId NewRandom()
    {
        Span<byte> b = stackalloc byte[Size];
        RandomNumberGenerator.Fill(b);
        return Read(b);
    }

    /// <summary>Reads 12 bytes.</summary>
    public static StunTransactionId Read(ReadOnlySpan<byte> source) =>
        new(BinaryPrimitives.ReadUInt32BigEndian(source), BinaryPrimitives.ReadUInt64BigEndian(source[4..]));

    /// <summary>Writes 12 bytes.</summary>
    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, High);
        BinaryPrimitives.WriteUInt64BigEndian(destination[4..], Low);
    }

    public override string ToString() => $"{High:x8}{Low:x16}";
}
