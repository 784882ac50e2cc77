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

    /// <summary>A host over an in-memory list of known nodes (a <see cref="PeerTable"/>).</summary>
    public static PeerNetworkHost InMemory(NodeIdentity identity, IEnumerable<PeerInfo> known, string? name = null,
        ILogger? logger = null) => new PeerTable(known).CreateHost(identity, name, logger);
}

/// <summary>
/// The known nodes as an in-memory table, what `natkit peer run` keeps from its config: a host made by
/// <see cref="CreateHost"/> reads and updates it, and <see cref="Replace"/> puts a new list in while the node runs
/// (a reload), keeping what was learned of the nodes that stay.
/// </summary>
public sealed class PeerTable
{
    private readonly Lock _gate = new();
    private readonly Dictionary<NodeId, PeerInfo> _table = [];
    private readonly HashSet<NodeId> _listed = [];

    public PeerTable(IEnumerable<PeerInfo> known)
    {
        _ = Replace(known);
    }

    /// <summary>Every node in the table: the listed ones and those the module learned of (when it lets in nodes
    /// that are not listed).</summary>
    public IReadOnlyCollection<PeerInfo> Known
    {
        get
        {
            lock (_gate)
            {
                return [.. _table.Values];
            }
        }
    }

    public PeerInfo? Get(NodeId id)
    {
        lock (_gate)
        {
            return _table.GetValueOrDefault(id);
        }
    }

    public void Update(PeerInfo peer)
    {
        ArgumentNullException.ThrowIfNull(peer);
        lock (_gate)
        {
            _table[peer.Id] = peer;
        }
    }

    /// <summary>Lists <paramref name="known"/> instead of the nodes listed before: a node that stays keeps what was
    /// learned of it (endpoint, path, last seen) and takes its new name; a node listed before and not now leaves the
    /// table. Returns the nodes that left (a node whose key changed has a new id: its old id leaves).</summary>
    public IReadOnlyList<NodeId> Replace(IEnumerable<PeerInfo> known)
    {
        ArgumentNullException.ThrowIfNull(known);
        var now = new Dictionary<NodeId, PeerInfo>();
        foreach (var p in known)
        {
            now[p.Id] = p;
        }

        lock (_gate)
        {
            var removed = new List<NodeId>();
            foreach (var id in _listed)
            {
                if (!now.ContainsKey(id))
                {
                    removed.Add(id);
                    _table.Remove(id);
                }
            }

            foreach (var (id, p) in now)
            {
                _table[id] = _table.TryGetValue(id, out var seen) ? seen with { Name = p.Name } : p;
            }

            _listed.Clear();
            _listed.UnionWith(now.Keys);
            return removed;
        }
    }

    /// <summary>A host over this table.</summary>
    public PeerNetworkHost CreateHost(NodeIdentity identity, string? name = null, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(identity);
        return new PeerNetworkHost
        {
            GetKnownNodes = () => Known,
            GetPeer = Get,
            UpdatePeer = Update,
            GetSelf = () => new PeerInfo(identity.Id) { Name = name },
            GetPrivateKey = () => identity,
            Logger = logger ?? NullLogger.Instance,
        };
    }
}
