using System.Net;
using System.Security.Cryptography.X509Certificates;
using NatKit.Net;

namespace NatKit.Stun.Server;

/// <summary>
/// What a <see cref="StunServer"/> listens on and how it protects itself. Defaults follow RFC 8489 (port 3478,
/// 5349 for TLS) and the GUIDE (loopback unless told otherwise). <see cref="Validate"/> names the bad field.
/// </summary>
public sealed record StunServerOptions
{
    public const int DefaultPort = 3478;
    public const int DefaultTlsPort = 5349;

    /// <summary>The primary address and port (RFC 5780: PA/PP). Port 0 picks an ephemeral port.</summary>
    public IPEndPoint Primary { get; init; } = new(IPAddress.Loopback, DefaultPort);

    /// <summary>The alternate address (RFC 5780: AA). Setting it turns on RFC 5780 mode: four UDP sockets
    /// (PA/AA x PP/AP), CHANGE-REQUEST, RESPONSE-ORIGIN and OTHER-ADDRESS.</summary>
    public IPAddress? AlternateAddress { get; init; }

    /// <summary>The alternate port (AP) in RFC 5780 mode; 0 means primary port + 1 (or ephemeral when the
    /// primary port is ephemeral).</summary>
    public int AlternatePort { get; init; }

    /// <summary>The public address for <see cref="Primary"/> when the server sits behind a 1:1 NAT: reported in
    /// RESPONSE-ORIGIN and OTHER-ADDRESS instead of the local address.</summary>
    public IPAddress? AdvertisedPrimaryAddress { get; init; }

    /// <summary>The public address for <see cref="AlternateAddress"/> behind a 1:1 NAT.</summary>
    public IPAddress? AdvertisedAlternateAddress { get; init; }

    public bool EnableUdp { get; init; } = true;

    /// <summary>STUN over TCP (RFC 8489 section 6.2.2) on the primary endpoint.</summary>
    public bool EnableTcp { get; init; } = true;

    /// <summary>When set, STUN over TLS on <see cref="TlsPort"/> of the primary address.</summary>
    public X509Certificate2? TlsCertificate { get; init; }

    public int TlsPort { get; init; } = DefaultTlsPort;

    /// <summary>SOFTWARE sent in responses (when the amplification budget allows); null sends none.</summary>
    public string? Software { get; init; } = "NatKit";

    /// <summary>
    /// Credentials. Empty: no authentication. With <see cref="Realm"/> null: short-term credentials (RFC 8489
    /// section 9.1), the password is the key. With a realm: long-term credentials (section 9.2), 401 with REALM
    /// and NONCE first, 438 when the nonce expires.
    /// </summary>
    public IReadOnlyDictionary<string, string> Users { get; init; } = new Dictionary<string, string>();

    public string? Realm { get; init; }

    /// <summary>How long a long-term nonce stays valid (438 Stale Nonce after).</summary>
    public TimeSpan NonceLifetime { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Requests per second allowed from one source IP address (a token bucket with a burst of one
    /// second's worth); 0 turns the limit off. Excess requests are dropped silently.</summary>
    public int RateLimitPerSecond { get; init; } = 200;

    /// <summary>How many source addresses the rate limiter tracks (memory is bounded by this).</summary>
    public int RateLimitTableSize { get; init; } = 4096;

    /// <summary>Most TCP and TLS connections held at once, both listeners together; one over it is closed as soon
    /// as it is accepted (existing ones go on).</summary>
    public int MaxTcpConnections { get; init; } = 1024;

    /// <summary>Most TCP and TLS connections from one source IP address, so a single host cannot take every slot
    /// of <see cref="MaxTcpConnections"/>. Raise it for many clients behind one NAT address.</summary>
    public int MaxTcpConnectionsPerAddress { get; init; } = 128;

    /// <summary>Time a new TCP or TLS connection has to finish its TLS handshake and its first complete, valid
    /// STUN message; closed otherwise (bytes that never complete a message do not extend it).</summary>
    public TimeSpan TcpHandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>A TCP or TLS connection is closed after this long without a complete, valid STUN message (RFC 8489
    /// section 6.2.2 asks for at least 10 s); a trickle of bytes that never completes one does not reset it.</summary>
    public TimeSpan TcpIdleTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Honour RESPONSE-PORT only for ports at or above this (unless the request is authenticated), so
    /// the server cannot be aimed at a well-known service on the client's host.</summary>
    public int MinResponsePort { get; init; } = 1024;

    /// <summary>Answer classic RFC 3489 Binding requests (no magic cookie) with MAPPED-ADDRESS, as RFC 8489
    /// section 12.2 suggests.</summary>
    public bool AnswerRfc3489 { get; init; } = true;

    /// <summary>When set, Binding requests (after the credential checks) are redirected there with 300 Try
    /// Alternate and ALTERNATE-SERVER (RFC 8489 section 10), e.g. to drain a server.</summary>
    public IPEndPoint? RedirectTo { get; init; }

    /// <summary>ALTERNATE-DOMAIN sent with a redirect (the TLS name of <see cref="RedirectTo"/>).</summary>
    public string? RedirectDomain { get; init; }

    public bool Rfc5780 => AlternateAddress is not null;

    public bool RequiresAuthentication => Users.Count > 0;

    /// <summary>Throws <see cref="ArgumentException"/> naming the bad field.</summary>
    public void Validate()
    {
        if (Primary is null)
        {
            throw new ArgumentException("Primary: an endpoint is required", nameof(Primary));
        }

        if (!EnableUdp && !EnableTcp && TlsCertificate is null)
        {
            throw new ArgumentException("EnableUdp/EnableTcp: at least one transport must be on", nameof(EnableUdp));
        }

        if (AlternateAddress is not null)
        {
            if (AlternateAddress.Equals(Primary.Address))
            {
                throw new ArgumentException("AlternateAddress: must differ from the primary address",
                    nameof(AlternateAddress));
            }

            if (AlternateAddress.AddressFamily != Primary.AddressFamily)
            {
                throw new ArgumentException("AlternateAddress: must be the same family as the primary address",
                    nameof(AlternateAddress));
            }
        }

        if (AlternatePort is < 0 or > 65535 || (AlternatePort != 0 && AlternatePort == Primary.Port))
        {
            throw new ArgumentException("AlternatePort: must be 1-65535 and differ from the primary port",
                nameof(AlternatePort));
        }

        if (RateLimitPerSecond < 0 || RateLimitTableSize < 16)
        {
            throw new ArgumentException("RateLimitPerSecond/RateLimitTableSize: must be >= 0 and >= 16",
                nameof(RateLimitPerSecond));
        }

        if (Realm is not null && Users.Count == 0)
        {
            throw new ArgumentException("Realm: long-term credentials need at least one user", nameof(Realm));
        }

        if (NonceLifetime <= TimeSpan.Zero)
        {
            throw new ArgumentException("NonceLifetime: must be positive", nameof(NonceLifetime));
        }

        TcpConnectionLimits.Validate(MaxTcpConnections, MaxTcpConnectionsPerAddress, TcpHandshakeTimeout,
            TcpIdleTimeout);
    }
}
