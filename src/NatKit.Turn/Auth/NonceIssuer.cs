using System.Buffers.Binary;
using System.Net;
using System.Security.Cryptography;
using System.Text;

namespace NatKit.Turn.Auth;

/// <summary>What a presented nonce is worth.</summary>
public enum NonceStatus
{
    /// <summary>Issued by this server, for this client address, and not yet expired.</summary>
    Valid,

    /// <summary>Issued by this server but older than the nonce lifetime: answer 438 Stale Nonce.</summary>
    Stale,

    /// <summary>Not one of ours (forged, mangled, another client's or from a previous key): also 438, so the
    /// client fetches a fresh one.</summary>
    Invalid,
}

/// <summary>
/// Stateless expiring nonces (RFC 8489 section 9.2): the nonce carries its issue time and an HMAC over that time
/// and the client's address under a key only this server knows, so the server checks one without remembering
/// any, a stale one is recognised (438) and one copied to another client address is not accepted.
/// The nonce begins with RFC 8489's cookie "obMatJos2" and the security-feature bits announcing
/// PASSWORD-ALGORITHMS support (section 9.2.1).
/// </summary>
public sealed class NonceIssuer
{
    /// <summary>RFC 8489 section 9.2: "obMatJos2" then 24 feature bits in base64; bit 0 (password algorithms) set.</summary>
    public const string FeatureCookie = "obMatJos2gAAA";

    private const int TimeBytes = 8;
    private const int MacBytes = 12;
    private static readonly int EncodedLength = FeatureCookie.Length + (2 * (TimeBytes + MacBytes));

    private readonly byte[] _key;

    public NonceIssuer(TimeSpan lifetime, byte[]? key = null)
    {
        if (lifetime <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(lifetime), lifetime, "nonce lifetime must be positive");
        }

        Lifetime = lifetime;
        _key = key ?? RandomNumberGenerator.GetBytes(32);
    }

    public TimeSpan Lifetime { get; }

    /// <summary>A nonce for <paramref name="client"/> issued at <paramref name="now"/>.</summary>
    public string Issue(IPAddress client, DateTimeOffset now)
    {
        Span<byte> raw = stackalloc byte[TimeBytes + MacBytes];
        BinaryPrimitives.WriteInt64BigEndian(raw, now.ToUnixTimeMilliseconds());
        Mac(raw[..TimeBytes], client, raw[TimeBytes..]);
        return FeatureCookie + Convert.ToHexStringLower(raw);
    }

    /// <summary>Checks a nonce's bytes as they came off the wire; allocates nothing.</summary>
    public NonceStatus Check(ReadOnlySpan<byte> nonce, IPAddress client, DateTimeOffset now)
    {
        if (nonce.Length != EncodedLength || !nonce[..FeatureCookie.Length].SequenceEqual("obMatJos2gAAA"u8))
        {
            return NonceStatus.Invalid;
        }

        Span<byte> raw = stackalloc byte[TimeBytes + MacBytes];
        var hex = nonce[FeatureCookie.Length..];
        for (var i = 0; i < raw.Length; i++)
        {
            var hi = Hex(hex[2 * i]);
            var lo = Hex(hex[(2 * i) + 1]);
            if ((hi | lo) < 0)
            {
                return NonceStatus.Invalid;
            }

            raw[i] = (byte)((hi << 4) | lo);
        }

        Span<byte> expected = stackalloc byte[MacBytes];
        Mac(raw[..TimeBytes], client, expected);
        if (!CryptographicOperations.FixedTimeEquals(expected, raw[TimeBytes..]))
        {
            return NonceStatus.Invalid;
        }

        var issued = BinaryPrimitives.ReadInt64BigEndian(raw);
        var age = now.ToUnixTimeMilliseconds() - issued;
        if (age < -5_000)
        {
            return NonceStatus.Invalid; // from the future: not a clock we issued with
        }

        return age > (long)Lifetime.TotalMilliseconds ? NonceStatus.Stale : NonceStatus.Valid;
    }

    public NonceStatus Check(string nonce, IPAddress client, DateTimeOffset now) =>
        Check(Encoding.UTF8.GetBytes(nonce), client, now);

    private void Mac(ReadOnlySpan<byte> time, IPAddress client, Span<byte> destination)
    {
        Span<byte> input = stackalloc byte[TimeBytes + 16];
        time.CopyTo(input);
        var key = Policy.IpKey.Normalized(client);
        BinaryPrimitives.WriteUInt128BigEndian(input[TimeBytes..], key.Bits);
        Span<byte> mac = stackalloc byte[HMACSHA256.HashSizeInBytes];
        HMACSHA256.HashData(_key, input, mac);
        mac[..destination.Length].CopyTo(destination);
    }

    private static int Hex(byte c) => c switch
    {
        >= (byte)'0' and <= (byte)'9' => c - '0',
        >= (byte)'a' and <= (byte)'f' => c - 'a' + 10,
        _ => -1,
    };
}
