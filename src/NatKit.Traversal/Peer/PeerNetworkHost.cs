using System.Net;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using NatKit.Traversal.Identity;

namespace NatKit.Traversal.Peer;

/// <summary>What the caller knows about a node: its id, a name for people, and what the network module last saw of
/// it (its address, the path to it, when).</summary>
public sealed record PeerInfo(NodeId Id)
{
    /// <summary>A name for tables and logs; the id authenticates, never the name.</summary>
    public string? Name { get; init; }

    /// <summary>Where the node was last reached (the selected pair's remote candidate).</summary>
    public IPEndPoint? EndPoint { get; init; }

    /// <summary>How the last connection to the node went.</summary>
    public PathKind? Path { get; init; }

    /// <summary>When the module last connected to the node or heard from it.</summary>
    public DateTimeOffset? LastSeen { get; init; }

    public override string ToString() => Name is null ? Id.ToString() : $"{Name} ({Id.ToShortString()})";
}

/// <summary>The module's own way to reach a peer (the traversal service's connect: rendezvous, checks, relay).</summary>
public delegate Task<PeerConnection> PeerDialer(NodeId peer, CancellationToken cancellationToken);

/// <summary>
/// What the caller gives the peer network module (see docs/peer.md): the list of known nodes, one node's info and
/// a way to update it, how to connect to a node, this node's info, its private key, and a logger. The module keeps no
/// peer store of its own: it asks these whenever it needs to know, so the caller's store is the one truth.
/// </summary>
public sealed class PeerNetworkHost
{
    /// <summary>The nodes the caller knows (with <see cref="PeerNetworkOptions.KnownPeersOnly"/>, the only ones
    /// let in).</summary>
    public required Func<IReadOnlyCollection<PeerInfo>> GetKnownNodes { get; init; }

    /// <summary>One node's info, or null when the caller does not know it.</summary>
    public required Func<NodeId, PeerInfo?> GetPeer { get; init; }

    /// <summary>Called with what the module learned about a node (its endpoint, path, last seen).</summary>
    public required Action<PeerInfo> UpdatePeer { get; init; }

    /// <summary>Connects to a node: the caller's policy around the module's own dialer (retries, logging, a
    /// veto). By default it just dials.</summary>
    public Func<NodeId, PeerDialer, CancellationToken, Task<PeerConnection>> ConnectToPeer { get; init; } =
        static (peer, dial, ct) => dial(peer, ct);

    /// <summary>This node's info (its name for tables and logs).</summary>
    public required Func<PeerInfo> GetSelf { get; init; }

    /// <summary>This node's key pair: its node id, its TLS certificate, its rendezvous signatures.</summary>
    public required Func<NodeIdentity> GetPrivateKey { get; init; }

    public ILogger Logger { get; init; } = NullLogger.Instance;

    /// <summary>A host over an in-memory list of known nodes (what `natkit peer run` builds from its config).</summary>
    public static PeerNetworkHost InMemory(NodeIdentity identity, IEnumerable<PeerInfo> known, string? name = null,
        ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(identity);
        ArgumentNullException.ThrowIfNull(known);
        var table = new Dictionary<NodeId, PeerInfo>();
        foreach (var p in known)
        {
            table[p.Id] = p;
        }

        var gate = new Lock();
        return new PeerNetworkHost
        {
            GetKnownNodes = () =>
            {
                lock (gate)
                {
                    return [.. table.Values];
                }
            },
            GetPeer = id =>
            {
                lock (gate)
                {
                    return table.GetValueOrDefault(id);
                }
            },
            UpdatePeer = p =>
            {
                lock (gate)
                {
                    table[p.Id] = p;
                }
            },
            GetSelf = () => new PeerInfo(identity.Id) { Name = name },
            GetPrivateKey = () => identity,
            Logger = logger ?? NullLogger.Instance,
        };
    }
}
