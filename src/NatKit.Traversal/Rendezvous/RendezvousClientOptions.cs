namespace NatKit.Traversal.Rendezvous;

/// <summary>How a node uses the rendezvous service.</summary>
public sealed record RendezvousClientOptions
{
    /// <summary>The registration lifetime asked for (the service may grant less or more within its limits).</summary>
    public TimeSpan Lifetime { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>How often a Binding request keeps the NAT mapping toward the service open and checks that the
    /// reflexive address has not moved (RFC 4787 asks NATs to keep UDP mappings at least 2 minutes; many keep them
    /// 30 s).</summary>
    public TimeSpan KeepAliveInterval { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>Initial retransmission timeout of the node's requests.</summary>
    public TimeSpan InitialRto { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>How many times one request is sent before it times out.</summary>
    public int RequestCount { get; init; } = 6;

    /// <summary>How far a peer's signed TIMESTAMP may be from this node's clock.</summary>
    public TimeSpan SignatureWindow { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long <see cref="RendezvousClient.ConnectAsync"/> and an offer's answer wait for the peer and the
    /// Start.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Throws <see cref="ArgumentException"/> naming the bad field.</summary>
    public void Validate()
    {
        if (Lifetime < TimeSpan.FromSeconds(1) || Lifetime > TimeSpan.FromDays(1))
        {
            throw new ArgumentException("Lifetime: 1 s to 1 day", nameof(Lifetime));
        }

        if (KeepAliveInterval <= TimeSpan.Zero || InitialRto <= TimeSpan.Zero || ConnectTimeout <= TimeSpan.Zero ||
            SignatureWindow <= TimeSpan.Zero)
        {
            throw new ArgumentException("KeepAliveInterval/InitialRto/ConnectTimeout/SignatureWindow: must be positive",
                nameof(KeepAliveInterval));
        }

        if (RequestCount is < 1 or > 30)
        {
            throw new ArgumentException("RequestCount: 1 to 30", nameof(RequestCount));
        }
    }
}

/// <summary>The service refused a request (<see cref="Code"/> is its ERROR-CODE) or did not answer (0).</summary>
public sealed class RendezvousException : Exception
{
    public RendezvousException(string message, int code)
        : base(message)
    {
        Code = code;
    }

    public RendezvousException()
    {
    }

    public RendezvousException(string message)
        : base(message)
    {
    }

    public RendezvousException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>The service's error code, 0 for a timeout.</summary>
    public int Code { get; }
}

/// <summary>What <see cref="RendezvousClient.ConnectAsync"/> returns: the peer's answer and when to start.</summary>
public sealed record RendezvousConnection(RendezvousAnswer Answer, RendezvousStart Start);
