using System.Security.Cryptography;
using System.Text;

namespace NatKit.Stun;

/// <summary>PASSWORD-ALGORITHM values (RFC 8489 section 18.5).</summary>
public enum StunPasswordAlgorithm : ushort
{
    Md5 = 0x0001,
    Sha256 = 0x0002,
}

/// <summary>
/// Keys for MESSAGE-INTEGRITY(-SHA256) (RFC 8489 section 9): short-term (the prepared password itself) and
/// long-term (a hash of username:realm:password), and USERHASH.
/// </summary>
/// <remarks>
/// RFC 8489 prepares passwords and realms with the PRECIS OpaqueString profile (RFC 8265); its own test vector
/// (Appendix B.1), like RFC 5769's (section 2.4, SASLprep), expects "The&lt;U+00AD&gt;M&lt;U+00AA&gt;tr&lt;U+2168&gt;" to become
/// "TheMatrIX", which is what SASLprep's mapping (RFC 4013: drop "mapped to nothing" characters, non-ASCII
/// spaces to U+0020, NFKC) gives. <see cref="Prepare"/> does that mapping, with NFKC limited to the common
/// compatibility characters (the runtime is globalization-invariant, so full Unicode normalization is not
/// available: see AppendCompatibility); it does not reject the
/// prohibited code points of SASLprep or PRECIS (callers choose their own passwords; strings from the wire are
/// only hashed, never trusted).
/// </remarks>
public static class StunCredentials
{
    /// <summary>The short-term key: the prepared password's UTF-8 bytes (section 9.1.1).</summary>
    public static byte[] ShortTermKey(string password) => Encoding.UTF8.GetBytes(Prepare(password));

    /// <summary>The long-term key (section 9.2.2): MD5 or SHA-256 of "username:realm:password" in UTF-8, realm
    /// and password prepared.</summary>
    public static byte[] LongTermKey(string username, string realm, string password,
        StunPasswordAlgorithm algorithm = StunPasswordAlgorithm.Md5)
    {
        ArgumentNullException.ThrowIfNull(username);
        var input = Encoding.UTF8.GetBytes($"{username}:{Prepare(realm)}:{Prepare(password)}");
        return algorithm switch
        {
#pragma warning disable CA5351 // MD5 is what RFC 8489's long-term credential mechanism specifies.
            StunPasswordAlgorithm.Md5 => MD5.HashData(input),
#pragma warning restore CA5351
            StunPasswordAlgorithm.Sha256 => SHA256.HashData(input),
            _ => throw new ArgumentOutOfRangeException(nameof(algorithm), algorithm, "unknown password algorithm"),
        };
    }

    /// <summary>USERHASH (section 14.4): SHA-256 of "username:realm".</summary>
    public static byte[] UserHash(string username, string realm)
    {
        ArgumentNullException.ThrowIfNull(username);
        return SHA256.HashData(Encoding.UTF8.GetBytes($"{username}:{Prepare(realm)}"));
    }

    /// <summary>The string preparation described in the remarks.</summary>
    public static string Prepare(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ascii = true;
        foreach (var c in text)
        {
            if (c > 0x7E)
            {
                ascii = false;
                break;
            }
        }

        if (ascii)
        {
            return text;
        }

        var sb = new StringBuilder(text.Length);
        foreach (var c in text)
        {
            if (IsMappedToNothing(c))
            {
                continue;
            }

            if (IsNonAsciiSpace(c))
            {
                sb.Append(' ');
            }
            else
            {
                AppendCompatibility(sb, c);
            }
        }

        return sb.ToString();
    }

    // NatKit runs with InvariantGlobalization, where string.Normalize cannot apply NFKC. This covers the
    // compatibility decompositions that turn up in passwords: fullwidth ASCII, the ordinal indicators,
    // superscript digits, Roman numerals and Latin ligatures. Other characters pass unchanged.
    private static void AppendCompatibility(StringBuilder sb, char c)
    {
        switch (c)
        {
            case >= '\uFF01' and <= '\uFF5E':
                sb.Append((char)(c - 0xFF01 + 0x21));
                break;
            case '\u00AA':
                sb.Append('a');
                break;
            case '\u00BA':
                sb.Append('o');
                break;
            case '\u00B9':
                sb.Append('1');
                break;
            case '\u00B2':
                sb.Append('2');
                break;
            case '\u00B3':
                sb.Append('3');
                break;
            case >= '\u2160' and <= '\u216F':
                sb.Append(RomanNumerals[c - 0x2160]);
                break;
            case >= '\u2170' and <= '\u217F':
                sb.Append(RomanNumerals[c - 0x2170].ToLowerInvariant());
                break;
            case >= '\uFB00' and <= '\uFB04':
                sb.Append(Ligatures[c - 0xFB00]);
                break;
            default:
                sb.Append(c);
                break;
        }
    }

    private static readonly string[] RomanNumerals =
        ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII", "L", "C", "D", "M"];

    private static readonly string[] Ligatures = ["ff", "fi", "fl", "ffi", "ffl"];

    // RFC 3454 table B.1.
    private static bool IsMappedToNothing(char c) => c is '\u00AD' or '\u034F' or '\u1806' or '\u180B' or '\u180C'
        or '\u180D' or '\u200B' or '\u200C' or '\u200D' or '\u2060' or '\uFEFF' or (>= '\uFE00' and <= '\uFE0F');

    // RFC 3454 table C.1.2.
    private static bool IsNonAsciiSpace(char c) => c is '\u00A0' or '\u1680' or (>= '\u2000' and <= '\u200B')
        or '\u202F' or '\u205F' or '\u3000';
}
