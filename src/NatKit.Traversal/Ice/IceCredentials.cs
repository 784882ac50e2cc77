using System.Security.Cryptography;

namespace NatKit.Traversal.Ice;

/// <summary>
/// An agent's username fragment and password (RFC 8445 section 5.3, RFC 8839 section 5.4): the ufrag is 4-256
/// ice-chars with at least 24 bits of randomness, the password 22-256 ice-chars with at least 128 bits. A check's
/// USERNAME is "remote ufrag:local ufrag" and its MESSAGE-INTEGRITY is keyed with the receiver's password.
/// </summary>
public sealed record IceCredentials
{
    private const string IceChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    public IceCredentials(string ufrag, string password)
    {
        if (!IsValidUfrag(ufrag))
        {
            throw new ArgumentException("an ICE ufrag is 4-256 characters of ALPHA, DIGIT, '+' and '/'", nameof(ufrag));
        }

        if (!IsValidPassword(password))
        {
            throw new ArgumentException("an ICE password is 22-256 characters of ALPHA, DIGIT, '+' and '/'",
                nameof(password));
        }

        Ufrag = ufrag;
        Password = password;
    }

    public string Ufrag { get; }

    public string Password { get; }

    /// <summary>New random credentials: an 8-character ufrag (48 bits) and a 24-character password (144 bits).
    /// <paramref name="random"/> (for a lab run that must repeat) or, by default, a cryptographic source.</summary>
    public static IceCredentials Generate(Random? random = null) =>
        new(RandomIceChars(8, random), RandomIceChars(24, random));

    public static bool IsValidUfrag(string? ufrag) =>
        ufrag is { Length: >= 4 and <= 256 } && IceCandidateSdp.IsIceChars(ufrag);

    public static bool IsValidPassword(string? password) =>
        password is { Length: >= 22 and <= 256 } && IceCandidateSdp.IsIceChars(password);

    /// <summary>Leaves the password out, so logs do not carry it.</summary>
    public override string ToString() => $"ufrag {Ufrag}";

    private static string RandomIceChars(int length, Random? random)
    {
        Span<byte> bytes = stackalloc byte[length];
        if (random is null)
        {
            RandomNumberGenerator.Fill(bytes);
        }
        else
        {
            random.NextBytes(bytes);
        }

        Span<char> text = stackalloc char[length];
        for (var i = 0; i < length; i++)
        {
            text[i] = IceChars[bytes[i] & 63];
        }

        return new string(text);
    }
}
