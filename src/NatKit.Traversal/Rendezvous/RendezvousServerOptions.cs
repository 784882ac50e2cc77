using System.Net;

namespace NatKit.Traversal.Rendezvous;

/// <summary>
/// What the rendezvous service allows and how long things live (docs/rendezvous.md, "Limits"). Every limit bounds
/// what a stranger can make the service hold: memory is at most about <see cref="MaxRegistrations"/> records plus
/// <see cref="MaxPendingConnections"/> attempts plus the fixed rate-limit table, whatever arrives.
/// </summary>
public sealed record RendezvousServerOptions
{
    public const int DefaultPort = 3479;

    /// <summary>Where the service listens (UDP). Loopback unless told otherwise.</summary>
    public IPEndPoint Listen { get; init; } = new(IPAddress.Loopback, DefaultPort);

    /// <summary>Most registrations held at once (live ones and recently removed ones kept against replays).</summary>
    public int MaxRegistrations { get; init; } = 100_000;

    /// <summary>Most registrations from one IP address (many nodes may share a NAT's address).</summary>
    public int MaxRegistrationsPerAddress { get; init; } = 64;

    /// <summary>Requests per second one IP address may send (a token bucket with this burst); beyond it, silence.</summary>
    public int RequestsPerSecondPerAddress { get; init; } = 100;

    /// <summary>Sources the rate limiter tracks (a fixed table: memory does not grow with the number of sources).</summary>
    public int RateLimitTableSize { get; init; } = 65536;

    /// <summary>Shortest registration lifetime granted (a shorter request gets this).</summary>
    public TimeSpan MinLifetime { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Longest registration lifetime granted.</summary>
    public TimeSpan MaxLifetime { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>How far a signed TIMESTAMP may be from the service's clock, either way. Shorter than
    /// <see cref="MinLifetime"/>, so a registration cannot be replayed after it expires.</summary>
    public TimeSpan TimestampWindow { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long a NONCE stays valid.</summary>
    public TimeSpan NonceLifetime { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Most connection attempts in progress at once.</summary>
    public int MaxPendingConnections { get; init; } = 10_000;

    /// <summary>Most connection attempts one node may have in progress.</summary>
    public int MaxPendingConnectionsPerNode { get; init; } = 8;

    /// <summary>How long a connection attempt may take from Connect to Start.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Added to the later side's one-way delay when the service picks the start time: covers the time a
    /// Start takes to reach another instance.</summary>
    public TimeSpan StartMargin { get; init; } = TimeSpan.FromMilliseconds(20);

    /// <summary>Initial retransmission timeout of the service's own requests (Offer, Answer, Start).</summary>
    public TimeSpan InitialRto { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>How many times the service sends one of its requests before giving up.</summary>
    public int RequestCount { get; init; } = 5;

    /// <summary>True when several instances share one registry (the edge then answers lookups of nodes registered
    /// elsewhere and carries connections between instances).</summary>
    public bool SharedRegistry { get; init; }

    /// <summary>SOFTWARE in Binding responses (empty: none).</summary>
    public string? Software { get; init; } = "NatKit rendezvous";

    /// <summary>Throws <see cref="ArgumentException"/> naming the bad field.</summary>
    public void Validate()
    {
        if (Listen is null)
        {
            throw new ArgumentException("Listen: an endpoint is required", nameof(Listen));
        }

        Positive(MaxRegistrations, nameof(MaxRegistrations));
        Positive(MaxRegistrationsPerAddress, nameof(MaxRegistrationsPerAddress));
        Positive(RequestsPerSecondPerAddress, nameof(RequestsPerSecondPerAddress));
        Positive(MaxPendingConnections, nameof(MaxPendingConnections));
        Positive(MaxPendingConnectionsPerNode, nameof(MaxPendingConnectionsPerNode));
        Positive(RequestCount, nameof(RequestCount));
        if (RateLimitTableSize is < 16 or > 1 << 24)
        {
            throw new ArgumentException("RateLimitTableSize: must be 16 to 16777216", nameof(RateLimitTableSize));
        }

        if (MinLifetime <= TimeSpan.Zero || MaxLifetime < MinLifetime || MaxLifetime > TimeSpan.FromDays(1))
        {
            throw new ArgumentException("MinLifetime/MaxLifetime: need 0 < min <= max <= 1 day", nameof(MaxLifetime));
        }

        if (TimestampWindow <= TimeSpan.Zero || TimestampWindow >= MinLifetime)
        {
            throw new ArgumentException("TimestampWindow: must be positive and shorter than MinLifetime",
                nameof(TimestampWindow));
        }

        foreach (var (value, name) in new[]
                 {
                     (NonceLifetime, nameof(NonceLifetime)), (ConnectTimeout, nameof(ConnectTimeout)),
                     (InitialRto, nameof(InitialRto)),
                 })
        {
            if (value <= TimeSpan.Zero || value > TimeSpan.FromDays(1))
            {
                throw new ArgumentException($"{name}: must be positive and at most a day", name);
            }
        }

        if (StartMargin < TimeSpan.Zero || StartMargin > TimeSpan.FromSeconds(10))
        {
            throw new ArgumentException("StartMargin: must be 0 to 10 s", nameof(StartMargin));
        }
    }

    private static void Positive(int value, string name)
    {
        if (value < 1)
        {
            throw new ArgumentException($"{name}: must be at least 1", name);
        }
    }
}
