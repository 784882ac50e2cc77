using System.Net;
using NatKit.Traversal.HardNat;
using NatKit.Traversal.Ice;
using NatKit.Traversal.Rendezvous;

namespace NatKit.Traversal;

/// <summary>How a connection's datagrams travel.</summary>
public enum PathKind
{
    /// <summary>Straight between the peers' addresses (host or NAT mappings).</summary>
    Direct,

    /// <summary>Between two peers behind one NAT through its public address (the NAT hairpins).</summary>
    Hairpin,

    /// <summary>Through a TURN server's relayed address.</summary>
    Relay,
}

/// <summary>What found a connection's path.</summary>
public enum TraversalMethod
{
    /// <summary>Host candidates: the peers reach each other's local addresses (one LAN, or no NAT).</summary>
    Host,

    /// <summary>Server-reflexive candidates: a NAT mapping STUN saw, used as it is.</summary>
    Reflexive,

    /// <summary>A mapping first seen in a check (one side's NAT let the other's check in).</summary>
    PeerReflexive,

    /// <summary>A mapping a port-mapping protocol (NAT-PMP, PCP, UPnP) made.</summary>
    PortMapped,

    /// <summary>The port a sequential NAT gives its next mapping, predicted from two STUN servers.</summary>
    Prediction,

    /// <summary>Birthday-paradox probing: the hard side's many sockets against the easy side's random ports.</summary>
    Birthday,

    /// <summary>A TURN relay.</summary>
    Relay,
}

/// <summary>An explicit mapping of the node's socket port that a port mapping protocol got from the NAT: the external
/// endpoint anyone may reach, and what deletes it (the node disposes it when it stops).</summary>
public sealed record PortMappedEndPoint(IPEndPoint External, IAsyncDisposable Lease);

/// <summary>Asks the NAT in front of the node for a UDP mapping of <paramref name="localPort"/> (NAT-PMP, PCP, UPnP:
/// NatKit.PortMapping's PortMapper, wired by the caller so that the traversal does not depend on it); null when the
/// NAT offers none.</summary>
public delegate Task<PortMappedEndPoint?> PortMapRequest(int localPort, CancellationToken cancellationToken);

/// <summary>A TURN server and its long-term credentials.</summary>
public sealed record TurnServerCredentials(IPEndPoint Server, string Username, string Password);

/// <summary>What a <see cref="TraversalNode"/> needs: where the rendezvous is, which STUN servers profile the NAT,
/// an optional TURN relay, and the hard-NAT probe budget. <see cref="Validate"/> names the first bad field.</summary>
public sealed record TraversalOptions
{
    /// <summary>The rendezvous service (it answers STUN Binding too).</summary>
    public required IPEndPoint Rendezvous { get; init; }

    /// <summary>STUN servers on different addresses that profile the NAT (two or more tell a sequential allocator
    /// from a random one); the rendezvous alone when empty.</summary>
    public IReadOnlyList<IPEndPoint> StunServers { get; init; } = [];

    /// <summary>The relay for when nothing direct works; null: no relay.</summary>
    public TurnServerCredentials? Turn { get; init; }

    /// <summary>Offer only the relayed candidate (WebRTC's <c>iceTransportPolicy: "relay"</c>): every datagram to the peer
    /// goes through the TURN server, so the peer never learns this node's addresses, and no hard-NAT method runs.
    /// Needs <see cref="Turn"/>. Also how the peer benchmark measures the relay path on loopback.</summary>
    public bool RelayOnly { get; init; }

    /// <summary>How to ask the NAT for a mapping of the node's port; the result is gathered as a port-mapped candidate
    /// (<see cref="TraversalMethod.PortMapped"/>). Null: none is asked for.</summary>
    public PortMapRequest? PortMap { get; init; }

    /// <summary>Probes per second and in total for birthday probing, the hard side's sockets, predicted ports.</summary>
    public ProbeBudget Budget { get; init; } = new();

    /// <summary>
    /// The hop limit of the datagrams that open this node's own NAT toward the peer before any check can reach the
    /// peer's NAT (2: the node's NAT forwards them, the first router beyond it drops them; 3 behind two NATs); 0
    /// sends none. Linux conntrack NATs (nftables masquerade) need them: a datagram from the peer that arrives
    /// before this node's first datagram to the peer leaves an entry that makes the node's NAT map the node's own
    /// first datagram to another port, which the peer's NAT then filters. Sent only behind a NAT, from sockets that
    /// can limit hops (<see cref="NatKit.Net.IHopLimitDatagramSocket"/>).
    /// </summary>
    public byte PrimeHopLimit { get; init; } = 2;

    /// <summary>How long after the synchronised start the checks wait once this node sent its priming datagrams:
    /// more than the start's error between the two sides, so both NATs are primed before either side's checks
    /// reach them.</summary>
    public TimeSpan PrimeLead { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <summary>How long a connect or an accept may take before it fails.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The ICE agent's knobs (the hard-NAT methods lower Ta and raise the pair limit on top of them).</summary>
    public IceAgentOptions Ice { get; init; } = IceAgentOptions.Default;

    /// <summary>The rendezvous client's knobs.</summary>
    public RendezvousClientOptions RendezvousClient { get; init; } = new();

    /// <summary>Randomness for credentials, transaction ids and probe ports; a lab passes its own so a run repeats.
    /// Null: a cryptographic source (ports from <see cref="Random.Shared"/>).</summary>
    public Random? Random { get; init; }

    public TraversalOptions Validate()
    {
        ArgumentNullException.ThrowIfNull(Rendezvous, nameof(Rendezvous));
        ArgumentNullException.ThrowIfNull(StunServers, nameof(StunServers));
        ArgumentNullException.ThrowIfNull(Budget, nameof(Budget));
        Budget.Validated();
        Ice.Validate();
        RendezvousClient.Validate();
        if (RelayOnly && Turn is null)
        {
            throw new ArgumentException($"{nameof(RelayOnly)}: needs a TURN server ({nameof(Turn)})", nameof(RelayOnly));
        }

        if (PrimeLead < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(PrimeLead), PrimeLead, $"{nameof(PrimeLead)}: 0 or more");
        }

        if (ConnectTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(ConnectTimeout), ConnectTimeout,
                $"{nameof(ConnectTimeout)}: more than 0");
        }

        return this;
    }
}

/// <summary>A connect or accept that did not end in a path (timeout, the peer refused, every pair failed).</summary>
public sealed class TraversalException : Exception
{
    public TraversalException()
    {
    }

    public TraversalException(string message) : base(message)
    {
    }

    public TraversalException(string message, Exception inner) : base(message, inner)
    {
    }
}
