using System.Buffers.Binary;
using System.Net;
using System.Security.Cryptography;

namespace NatKit.Stun.Server;

/// <summary>
/// Stateless nonces bound to a source address: 16 hex digits of issue time (ms) and 16 hex digits of
/// HMAC(secret, time || source address). The server keeps nothing per client, and a nonce proves its holder receives
/// what is sent to the address it claims (RFC 8489 section 9.2's nonce; the rendezvous service asks for one before it
/// spends a signature check).
/// </summary>
internal sealed class StunNonces
{
    /// <summary>Characters of a nonce.</summary>
    public const int Length = 32;

    private readonly byte[] _secret = RandomNumberGenerator.GetBytes(32);
    private readonly TimeProvider _time;
    private readonly TimeSpan _lifetime;

    public StunNonces(TimeProvider time, TimeSpan lifetime)
    {
        _time = time ?? throw new ArgumentNullException(nameof(time));
        _lifetime = lifetime;
    }

    /// <summary>Writes a nonce for <paramref name="source"/> (<see cref="Length"/> characters).</summary>
    public void Make(IPEndPoint source, Span<char> destination)
    {
        var issued = _time.GetUtcNow().ToUnixTimeMilliseconds();
        Span<byte> mac = stackalloc byte[8];
        Mac(issued, source, mac);
        Span<byte> raw = stackalloc byte[16];
        BinaryPrimitives.WriteInt64BigEndian(raw, issued);
        mac.CopyTo(raw[8..]);
        Convert.TryToHexStringLower(raw, destination, out _);
    }

    /// <summary>True when <paramref name="nonce"/> was issued to <paramref name="source"/>'s address by this
    /// instance and has not expired.</summary>
    public bool IsValid(ReadOnlySpan<byte> nonce, IPEndPoint source)
    {
        if (nonce.Length != Length)
        {
            return false;
        }

        Span<byte> raw = stackalloc byte[16];
        if (Convert.FromHexString(nonce, raw, out _, out var written) != System.Buffers.OperationStatus.Done ||
            written != 16)
        {
            return false;
        }

        var issued = BinaryPrimitives.ReadInt64BigEndian(raw);
        Span<byte> mac = stackalloc byte[8];
        Mac(issued, source, mac);
        if (!CryptographicOperations.FixedTimeEquals(mac, raw[8..]))
        {
            return false;
        }

        var age = _time.GetUtcNow().ToUnixTimeMilliseconds() - issued;
        return age >= 0 && age <= (long)_lifetime.TotalMilliseconds;
    }

    private void Mac(long issued, IPEndPoint source, Span<byte> destination)
    {
        Span<byte> input = stackalloc byte[8 + 16];
        BinaryPrimitives.WriteInt64BigEndian(input, issued);
        var n = StunAddress.FromEndPoint(source).WriteAddressBytes(input[8..]);
        Span<byte> full = stackalloc byte[32];
        HMACSHA256.HashData(_secret, input[..(8 + n)], full);
        full[..destination.Length].CopyTo(destination);
    }
}
