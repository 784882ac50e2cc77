using System.Buffers.Binary;
using System.Net;
using System.Security.Cryptography;

namespace NatKit.Traversal.Ice;

/// <summary>
/// Foundations (RFC 8445 section 5.1.1.3): two candidates share one when they have the same type, the same base
/// IP address, were learned from the same STUN or TURN server and use the same transport. Computed here as eight
/// ice-chars of a hash of those fields (and of the origin, so a port-mapped or predicted candidate never shares a
/// foundation with a STUN one). Hard-NAT methods that want their pairs checked side by side rather than one
/// foundation at a time give each candidate a foundation of its own (<see cref="Distinct"/>): the check list
/// unfreezes one pair per foundation (section 6.1.2.6).
/// </summary>
public static class IceFoundation
{
    private const string IceChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    /// <summary>The foundation of a candidate with these properties.</summary>
    public static string Compute(IceCandidateType type, IPAddress baseAddress, IPAddress? server, IceProtocol protocol,
        IceCandidateOrigin origin = IceCandidateOrigin.Host)
    {
        ArgumentNullException.ThrowIfNull(baseAddress);
        Span<byte> input = stackalloc byte[3 + 16 + 16];
        input.Clear();
        input[0] = (byte)type;
        input[1] = (byte)protocol;
        input[2] = (byte)origin;
        baseAddress.TryWriteBytes(input[3..], out _);
        server?.TryWriteBytes(input[19..], out _);
        return Encode(input);
    }

    /// <summary>A foundation of its own for one candidate among many alike (a predicted port, one of a birthday
    /// set's sockets): <paramref name="shared"/> joined with <paramref name="index"/>, at most 32 ice-chars.</summary>
    public static string Distinct(string shared, int index)
    {
        ArgumentException.ThrowIfNullOrEmpty(shared);
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        var suffix = index.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return shared.Length + suffix.Length + 1 <= 32
            ? shared + "+" + suffix
            : shared[..(31 - suffix.Length)] + "+" + suffix;
    }

    private static string Encode(ReadOnlySpan<byte> input)
    {
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(input, hash);
        var bits = BinaryPrimitives.ReadUInt64BigEndian(hash);
        Span<char> text = stackalloc char[8];
        for (var i = 0; i < text.Length; i++)
        {
            text[i] = IceChars[(int)(bits & 63)];
            bits >>= 6;
        }

        return new string(text);
    }
}
