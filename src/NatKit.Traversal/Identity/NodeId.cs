using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace NatKit.Traversal.Identity;

/// <summary>
/// A node's identity on the wire and on screen: the first 20 bytes (160 bits) of SHA-256 over the node's public key
/// in SubjectPublicKeyInfo DER form, written as 32 characters of lowercase RFC 4648 base32 without padding. It is
/// derived, never chosen: a peer proves it owns an id by signing with the key that hashes to it (a rendezvous
/// registration, a TLS 1.3 handshake). Held by value (three integers), so comparing and hashing allocate nothing.
/// </summary>
public readonly struct NodeId : IEquatable<NodeId>, ISpanFormattable
{
    /// <summary>Bytes of an id on the wire.</summary>
    public const int Size = 20;

    /// <summary>Characters of the printed form.</summary>
    public const int TextLength = 32;

    private const string Alphabet = "abcdefghijklmnopqrstuvwxyz234567";

    private readonly ulong _a;
    private readonly ulong _b;
    private readonly uint _c;

    private NodeId(ulong a, ulong b, uint c)
    {
        _a = a;
        _b = b;
        _c = c;
    }

    /// <summary>True for the default value, which no key hashes to in practice and which no parser returns.</summary>
    public bool IsEmpty => _a == 0 && _b == 0 && _c == 0;

    /// <summary>The id of the key whose SubjectPublicKeyInfo DER is <paramref name="subjectPublicKeyInfo"/>.</summary>
    public static NodeId FromPublicKey(ReadOnlySpan<byte> subjectPublicKeyInfo)
    {
        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(subjectPublicKeyInfo, hash);
        return Read(hash);
    }

    /// <summary>The id of the key in <paramref name="certificate"/> (what a TLS peer presented).</summary>
    public static NodeId FromCertificate(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        return FromPublicKey(certificate.PublicKey.ExportSubjectPublicKeyInfo());
    }

    /// <summary>Reads the 20 wire bytes; false when <paramref name="source"/> is not exactly <see cref="Size"/> long.</summary>
    public static bool TryRead(ReadOnlySpan<byte> source, out NodeId id)
    {
        if (source.Length != Size)
        {
            id = default;
            return false;
        }

        id = Read(source);
        return true;
    }

    private static NodeId Read(ReadOnlySpan<byte> source) =>
        new(BinaryPrimitives.ReadUInt64BigEndian(source), BinaryPrimitives.ReadUInt64BigEndian(source[8..]),
            BinaryPrimitives.ReadUInt32BigEndian(source[16..]));

    /// <summary>Writes the 20 wire bytes.</summary>
    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt64BigEndian(destination, _a);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], _b);
        BinaryPrimitives.WriteUInt32BigEndian(destination[16..], _c);
    }

    /// <summary>Parses the printed form (either case). False for anything else: wrong length, a character outside
    /// the base32 alphabet, null. Never throws.</summary>
    public static bool TryParse([NotNullWhen(true)] string? text, out NodeId id) => TryParse(text.AsSpan(), out id);

    /// <inheritdoc cref="TryParse(string?, out NodeId)"/>
    public static bool TryParse(ReadOnlySpan<char> text, out NodeId id)
    {
        id = default;
        if (text.Length != TextLength)
        {
            return false;
        }

        Span<byte> bytes = stackalloc byte[Size];
        ulong buffer = 0;
        var bits = 0;
        var written = 0;
        foreach (var ch in text)
        {
            int value = ch switch
            {
                >= 'a' and <= 'z' => ch - 'a',
                >= 'A' and <= 'Z' => ch - 'A',
                >= '2' and <= '7' => ch - '2' + 26,
                _ => -1,
            };
            if (value < 0)
            {
                return false;
            }

            buffer = (buffer << 5) | (uint)value;
            bits += 5;
            if (bits >= 8)
            {
                bits -= 8;
                bytes[written++] = (byte)(buffer >> bits);
            }
        }

        id = Read(bytes);
        return true;
    }

    /// <summary>Parses the printed form; throws <see cref="FormatException"/> naming the text otherwise.</summary>
    public static NodeId Parse(string text) => TryParse(text, out var id)
        ? id
        : throw new FormatException($"'{text}' is not a node id ({TextLength} base32 characters)");

    public bool TryFormat(Span<char> destination, out int charsWritten, ReadOnlySpan<char> format = default,
        IFormatProvider? provider = null)
    {
        charsWritten = 0;
        if (destination.Length < TextLength)
        {
            return false;
        }

        Span<byte> bytes = stackalloc byte[Size];
        Write(bytes);
        ulong buffer = 0;
        var bits = 0;
        foreach (var b in bytes)
        {
            buffer = (buffer << 8) | b;
            bits += 8;
            while (bits >= 5)
            {
                bits -= 5;
                destination[charsWritten++] = Alphabet[(int)((buffer >> bits) & 31)];
            }
        }

        return true;
    }

    public override string ToString() => string.Create(TextLength, this, (span, id) => id.TryFormat(span, out _));

    public string ToString(string? format, IFormatProvider? formatProvider) => ToString();

    /// <summary>The first eight characters, for tables and logs where the full id is too wide.</summary>
    public string ToShortString() => ToString()[..8];

    public bool Equals(NodeId other) => _a == other._a && _b == other._b && _c == other._c;

    public override bool Equals(object? obj) => obj is NodeId other && Equals(other);

    // Seeded per process (HashCode): ids are chosen by whoever makes keys, so a table keyed by them must not let
    // anyone grind keys into one bucket.
    public override int GetHashCode() => HashCode.Combine(_a, _b, _c);

    public static bool operator ==(NodeId left, NodeId right) => left.Equals(right);

    public static bool operator !=(NodeId left, NodeId right) => !left.Equals(right);
}
