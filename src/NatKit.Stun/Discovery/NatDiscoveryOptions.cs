using System.Net;
using NatKit.Stun.Client;

namespace NatKit.Stun.Discovery;

/// <summary>Which RFC 5780 tests <see cref="NatBehaviorDiscovery"/> runs and how long it waits.</summary>
public sealed record NatDiscoveryOptions
{
    /// <summary>Local address to bind test sockets to; null binds the wildcard of the server's family.</summary>
    public IPAddress? LocalAddress { get; init; }

    /// <summary>Retransmission for each test. A filtering test that gets no answer waits the whole transaction
    /// timeout, so the CLI uses a shorter schedule than RFC 8489's default.</summary>
    public StunClientOptions Client { get; init; } = new();

    public bool TestHairpinning { get; init; } = true;

    /// <summary>How long to wait for our own hairpinned request.</summary>
    public TimeSpan HairpinTimeout { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Measure the idle binding lifetime (needs RESPONSE-PORT on the server; takes up to the sum of the
    /// waits of a binary search, so off by default).</summary>
    public bool MeasureBindingLifetime { get; init; }

    /// <summary>The longest idle time tried.</summary>
    public TimeSpan BindingLifetimeMax { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>The binary search stops when the bracket is this narrow.</summary>
    public TimeSpan BindingLifetimeResolution { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>How long to wait for the redirected response when probing a binding.</summary>
    public TimeSpan BindingProbeTimeout { get; init; } = TimeSpan.FromSeconds(2);
}
