using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace NatKit.Turn.Auth;

/// <summary>
/// The TURN REST API's ephemeral credentials (draft-uberti-behave-turn-rest, as coturn's --use-auth-secret and
/// every WebRTC deployment use them): a web service that shares <c>secret</c> with the relay hands out
/// username <c>expiry:user</c> (expiry in Unix seconds) and password base64(HMAC-SHA1(secret, username)). The
/// relay needs no user database, and a username past its expiry is refused.
/// </summary>
public static class RestCredentials
{
    /// <summary>The password that goes with <paramref name="username"/>.</summary>
    public static string Password(ReadOnlySpan<byte> secret, string username)
    {
        ArgumentNullException.ThrowIfNull(username);
        Span<byte> mac = stackalloc byte[HMACSHA1.HashSizeInBytes];
#pragma warning disable CA5350 // HMAC-SHA1 is what the TURN REST API specifies; the MAC is not used as a hash.
        HMACSHA1.HashData(secret, Encoding.UTF8.GetBytes(username), mac);
#pragma warning restore CA5350
        return Convert.ToBase64String(mac);
    }

    /// <summary>A username valid until <paramref name="expiry"/> and its password (what the web service hands out).</summary>
    public static (string Username, string Password) Issue(ReadOnlySpan<byte> secret, string user,
        DateTimeOffset expiry)
    {
        var username = string.Create(CultureInfo.InvariantCulture, $"{expiry.ToUnixTimeSeconds()}:{user}");
        return (username, Password(secret, username));
    }

    /// <summary>The expiry a REST username carries: the digits before the first ':' (or the whole username
    /// when it has no ':'). False when there are none.</summary>
    public static bool TryGetExpiry(ReadOnlySpan<char> username, out DateTimeOffset expiry)
    {
        expiry = default;
        var colon = username.IndexOf(':');
        var digits = colon < 0 ? username : username[..colon];
        if (!long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) ||
            seconds > 253_402_300_799) // 9999-12-31
        {
            return false;
        }

        expiry = DateTimeOffset.FromUnixTimeSeconds(seconds);
        return true;
    }

    /// <summary>True when <paramref name="username"/> carries an expiry that is still ahead of <paramref name="now"/>.</summary>
    public static bool IsCurrent(ReadOnlySpan<char> username, DateTimeOffset now) =>
        TryGetExpiry(username, out var expiry) && expiry > now;
}
