namespace NatKit.Stun.Client;

/// <summary>
/// Retransmission and credentials for <see cref="StunClient"/>. Defaults are RFC 8489 section 6.2.1's: RTO
/// 500 ms doubling each retransmission, Rc = 7 requests, and Rm = 16 RTOs of waiting after the last one (39.5 s
/// in all); over TCP the transaction times out after Ti = 39.5 s.
/// </summary>
public sealed record StunClientOptions
{
    public TimeSpan InitialRto { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Rc: how many times a request is sent in all.</summary>
    public int RequestCount { get; init; } = StunRetransmission.DefaultRequestCount;

    /// <summary>Rm: after the last request, wait this many initial RTOs for a response.</summary>
    public int LastWaitMultiplier { get; init; } = StunRetransmission.DefaultLastWaitMultiplier;

    /// <summary>Ti: the transaction timeout over TCP/TLS.</summary>
    public TimeSpan StreamTimeout { get; init; } = TimeSpan.FromMilliseconds(39_500);

    /// <summary>SOFTWARE to send; null sends none.</summary>
    public string? Software { get; init; }

    /// <summary>Add FINGERPRINT to requests (RFC 8489 section 7.1 SHOULD for multiplexed use).</summary>
    public bool Fingerprint { get; init; } = true;

    /// <summary>Username for short-term (no <see cref="Password"/> realm needed) or long-term credentials.</summary>
    public string? Username { get; init; }

    public string? Password { get; init; }

    /// <summary>Short-term credentials (RFC 8489 section 9.1) instead of long-term when true.</summary>
    public bool ShortTermCredentials { get; init; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the bad field.</summary>
    public void Validate()
    {
        if (InitialRto <= TimeSpan.Zero)
        {
            throw new ArgumentException("InitialRto: must be positive", nameof(InitialRto));
        }

        if (RequestCount < 1)
        {
            throw new ArgumentException("RequestCount: at least one request", nameof(RequestCount));
        }

        if (LastWaitMultiplier < 1)
        {
            throw new ArgumentException("LastWaitMultiplier: at least 1", nameof(LastWaitMultiplier));
        }

        if ((Username is null) != (Password is null))
        {
            throw new ArgumentException("Username/Password: give both or neither", nameof(Username));
        }
    }

    /// <summary>The UDP schedule as a policy for <see cref="Transactions.StunTransactions"/>.</summary>
    public Transactions.StunRetransmitPolicy RetransmitPolicy =>
        new(InitialRto, RequestCount, InitialRto * LastWaitMultiplier);

    /// <summary>The whole UDP transaction time: the sum of the waits (39.5 s with the defaults).</summary>
    public TimeSpan UdpTransactionTimeout =>
        StunRetransmission.TransactionTimeout(RequestCount, InitialRto, LastWaitMultiplier);
}
