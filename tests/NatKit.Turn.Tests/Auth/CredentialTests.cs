using System.Net;
using FsCheck;
using FsCheck.Fluent;
using NatKit.Turn.Auth;

namespace NatKit.Turn.Tests.Auth;

public class RestCredentialTests
{
    [Fact]
    public void Password_IsBase64HmacSha1OfTheUsername()
    {
        // Computed independently: printf '%s' 1700000000:alice | openssl dgst -sha1 -hmac north -binary | base64
        Assert.Equal("Cd/49soE35ICqcJF/bCTn8Z4OyE=", RestCredentials.Password("north"u8, "1700000000:alice"));
    }

    [Fact]
    public void Issue_GivesAUsernameThatCarriesItsExpiry()
    {
        var expiry = DateTimeOffset.FromUnixTimeSeconds(1_800_000_000);
        var (user, pass) = RestCredentials.Issue("s"u8, "bob", expiry);
        Assert.Equal("1800000000:bob", user);
        Assert.Equal(RestCredentials.Password("s"u8, user), pass);
        Assert.True(RestCredentials.IsCurrent(user, expiry.AddSeconds(-1)));
        Assert.False(RestCredentials.IsCurrent(user, expiry));
        Assert.False(RestCredentials.IsCurrent(user, expiry.AddDays(1)));
    }

    [Theory]
    [InlineData("alice")]
    [InlineData(":alice")]
    [InlineData("-5:alice")]
    [InlineData("99999999999999999999:alice")]
    [InlineData("")]
    public void Usernames_WithoutAnExpiry_AreNotCurrent(string username)
    {
        Assert.False(RestCredentials.IsCurrent(username, DateTimeOffset.UnixEpoch));
    }

    [Fact]
    public void BareTimestamp_IsAnExpiry()
    {
        Assert.True(RestCredentials.TryGetExpiry("1800000000", out var e));
        Assert.Equal(1_800_000_000, e.ToUnixTimeSeconds());
    }
}

public class NonceIssuerTests
{
    private static readonly IPAddress Client = IPAddress.Parse("192.0.2.10");
    private static readonly DateTimeOffset T0 = DateTimeOffset.FromUnixTimeSeconds(1_700_000_000);

    [Fact]
    public void FreshNonce_IsValid_ForItsClient()
    {
        var issuer = new NonceIssuer(TimeSpan.FromMinutes(10));
        var nonce = issuer.Issue(Client, T0);
        Assert.StartsWith(NonceIssuer.FeatureCookie, nonce, StringComparison.Ordinal);
        Assert.Equal(NonceStatus.Valid, issuer.Check(nonce, Client, T0.AddMinutes(9)));
        Assert.Equal(NonceStatus.Valid, issuer.Check(nonce, IPAddress.Parse("::ffff:192.0.2.10"), T0));
    }

    [Fact]
    public void Rfc8489_9_2_OldNonce_IsStale()
    {
        var issuer = new NonceIssuer(TimeSpan.FromMinutes(10));
        var nonce = issuer.Issue(Client, T0);
        Assert.Equal(NonceStatus.Stale, issuer.Check(nonce, Client, T0.AddMinutes(10).AddSeconds(1)));
    }

    [Fact]
    public void Nonce_FromAnotherClientOrServer_OrMangled_IsInvalid()
    {
        var issuer = new NonceIssuer(TimeSpan.FromMinutes(10));
        var nonce = issuer.Issue(Client, T0);
        Assert.Equal(NonceStatus.Invalid, issuer.Check(nonce, IPAddress.Parse("192.0.2.11"), T0));
        Assert.Equal(NonceStatus.Invalid, new NonceIssuer(TimeSpan.FromMinutes(10)).Check(nonce, Client, T0));
        var chars = nonce.ToCharArray();
        chars[^1] = chars[^1] == '0' ? '1' : '0';
        Assert.Equal(NonceStatus.Invalid, issuer.Check(new string(chars), Client, T0));
        Assert.Equal(NonceStatus.Invalid, issuer.Check("", Client, T0));
        Assert.Equal(NonceStatus.Invalid, issuer.Check(nonce.ToUpperInvariant(), Client, T0));
    }

    [Fact]
    public void Property_RandomBytes_AreNeverValid_AndNeverThrow()
    {
        var issuer = new NonceIssuer(TimeSpan.FromMinutes(10));
        Prop.ForAll<byte[]>(b =>
            issuer.Check(b ?? [], Client, T0) == NonceStatus.Invalid).QuickCheckThrowOnFailure();
        Prop.ForAll<string>(s =>
            issuer.Check(NonceIssuer.FeatureCookie + s, Client, T0) == NonceStatus.Invalid)
            .QuickCheckThrowOnFailure();
    }
}
