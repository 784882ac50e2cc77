using NatKit.Nat;
using NatKit.Packets;

namespace NatKit.Tunnel.Server;

/// <summary>A tunnel server's configuration. <see cref="Validate"/> names the first bad field in one sentence.</summary>
public sealed record TunnelServerOptions
{
    /// <summary>Tokens a client may present (compared in constant time). At least one.</summary>
    public IReadOnlyList<string> Tokens { get; init; } = [];

    /// <summary>The inner addresses: the first host address is the server's, the others go to clients.</summary>
    public Ipv4Prefix Pool { get; init; } = Ipv4Prefix.Parse("10.99.0.0/16");

    /// <summary>The NAT's external (public) addresses: what the world sees the clients as.</summary>
    public IReadOnlyList<Ipv4Address> ExternalAddresses { get; init; } = [];

    /// <summary>The NAT's behaviour: any preset or knob set.</summary>
    public NatPolicy Policy { get; init; } = NatPresets.RfcRecommended;

    /// <summary>Most flows (NAT mappings) one session may hold, RFC 6888 REQ-4's per-subscriber limit; 0 = none.</summary>
    public int MaxFlowsPerSession { get; init; } = 4096;

    /// <summary>Most packets per second one session may send (a token bucket with a one-second burst); 0 = none.</summary>
    public int MaxPacketsPerSecond { get; init; }

    /// <summary>Most sessions at once (connected or held for a reconnect).</summary>
    public int MaxSessions { get; init; } = 10_000;

    /// <summary>Most flows in the whole NAT table (bounds its memory).</summary>
    public int MaxFlows { get; init; } = 1 << 20;

    /// <summary>The MTU clients are told to set on their TUN devices.</summary>
    public int Mtu { get; init; } = 1400;

    /// <summary>How often clients send a keepalive; a session silent for three of these is ended.</summary>
    public TimeSpan Keepalive { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How long a disconnected session keeps its address and flows for a reconnect.</summary>
    public TimeSpan ResumeGrace { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>How long a new connection has to send its hello.</summary>
    public TimeSpan HelloTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>The routes offered to clients (they choose which to install).</summary>
    public IReadOnlyList<Ipv4Prefix> Routes { get; init; } = [Ipv4Prefix.Parse("0.0.0.0/0")];

    /// <summary>Take offload messages (GSO super-packets) from clients that offer them.</summary>
    public bool Offloads { get; init; } = true;

    /// <summary>
    /// Let a client keep the inner address it asks for (the reference's clients that all call themselves 10.1.1.2):
    /// each session then gets a pool address of its own inside the server, and packets are moved between the two at
    /// the session's edge, so clients with the same address and ports are still kept apart.
    /// </summary>
    public bool AllowClientAddresses { get; init; }

    /// <summary>Packets (and bytes) each session may have queued in each direction.</summary>
    public int QueuePackets { get; init; } = 1024;

    /// <inheritdoc cref="QueuePackets"/>
    public long QueueBytes { get; init; } = 4 << 20;

    /// <summary>The first problem with these options, or null.</summary>
    public string? Validate()
    {
        if (Tokens.Count == 0 || Tokens.Any(string.IsNullOrEmpty))
        {
            return "Tokens: at least one non-empty token is needed (a tunnel server never runs open)";
        }

        if (Tokens.Any(t => System.Text.Encoding.UTF8.GetByteCount(t) > Framing.TunnelHello.MaxTokenBytes))
        {
            return $"Tokens: a token is longer than {Framing.TunnelHello.MaxTokenBytes} bytes";
        }

        if (Pool.Length > 30 || Pool.Length < 8)
        {
            return $"Pool: {Pool.Network}/{Pool.Length} must be between a /8 and a /30";
        }

        if (ExternalAddresses.Count == 0)
        {
            return "ExternalAddresses: at least one external address is needed";
        }

        if (ExternalAddresses.Any(Pool.Contains))
        {
            return $"ExternalAddresses: an external address is inside the pool {Pool.Network}/{Pool.Length}";
        }

        if (Mtu is < 576 or > 65535)
        {
            return $"Mtu: {Mtu} must be 576-65535";
        }

        if (Keepalive < TimeSpan.FromSeconds(1) || Keepalive > TimeSpan.FromHours(1))
        {
            return "Keepalive: must be between 1 s and 1 h";
        }

        if (ResumeGrace < TimeSpan.Zero || HelloTimeout <= TimeSpan.Zero)
        {
            return "ResumeGrace and HelloTimeout: must not be negative (and the hello timeout above zero)";
        }

        if (MaxFlowsPerSession < 0 || MaxPacketsPerSecond < 0 || MaxSessions < 1 || QueuePackets < 4 || QueueBytes < 65536)
        {
            return "limits: MaxFlowsPerSession and MaxPacketsPerSecond must be >= 0, MaxSessions >= 1, QueuePackets >= 4, QueueBytes >= 65536";
        }

        if (Routes.Count > Framing.TunnelWelcome.MaxRoutes)
        {
            return $"Routes: at most {Framing.TunnelWelcome.MaxRoutes}";
        }

        var policyErrors = Policy.Validate();
        return policyErrors.Count > 0 ? policyErrors[0] : null;
    }

    /// <summary>The NAT engine's configuration for these options.</summary>
    public NatConfig NatConfig(Ipv4Address gateway) => new()
    {
        Policy = Policy with { MaxMappingsPerHost = MaxFlowsPerSession },
        InsidePrefixes = [Pool],
        ExternalAddresses = ExternalAddresses,
        InsideAddress = gateway,
        MaxFlows = MaxFlows,
        OutsideMtu = 65535,
        InsideMtu = 65535,
    };
}
