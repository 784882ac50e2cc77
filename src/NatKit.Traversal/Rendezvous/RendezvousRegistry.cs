using System.Net;
using NatKit.Stun;
using NatKit.Traversal.Identity;

namespace NatKit.Traversal.Rendezvous;

/// <summary>One node's registration at this instance (whose NAT mapping this instance holds).</summary>
internal sealed class RegistryEntry
{
    public RegistryEntry(NodeId id)
    {
        Id = id;
    }

    public NodeId Id { get; }

    /// <summary>The signed attributes as a Lookup response carries them (as <see cref="RendezvousRecord"/> keeps them).</summary>
    public byte[] Attributes { get; set; } = [];

    /// <summary>Where PUBLIC-KEY's value sits in <see cref="Attributes"/>.</summary>
    public int PublicKeyOffset { get; set; }

    public ReadOnlySpan<byte> PublicKey => Attributes.AsSpan(PublicKeyOffset, NodePublicKey.EncodedLength);

    /// <summary>The last Register TIMESTAMP accepted (replays carry one no newer).</summary>
    public long Timestamp { get; set; }

    /// <summary>The last Connect TIMESTAMP accepted.</summary>
    public long ConnectTimestamp { get; set; }

    /// <summary>The transaction of the last Register accepted and what it granted: a retransmission of it (its
    /// response was lost) gets the same answer instead of a replay error.</summary>
    public StunTransactionId RegisterTransaction { get; set; }

    public TimeSpan Granted { get; set; }

    /// <summary>The transaction of the last Connect accepted and the connection it made.</summary>
    public StunTransactionId ConnectTransaction { get; set; }

    /// <summary>The transaction and connection of this node's last accepted Answer, so that a retransmission of it
    /// (its response lost) is answered the same even after the connection's state is gone.</summary>
    public StunTransactionId AnswerTransaction { get; set; }

    public ulong AnsweredConnection { get; set; }

    public ulong ConnectionId { get; set; }

    /// <summary>Where the registration came from: the node's server-reflexive address, whose NAT mapping its
    /// refreshes keep open.</summary>
    public StunAddress Source { get; set; }

    public IPEndPoint SourceEndPoint { get; set; } = null!;

    /// <summary>When the entry goes (monotonic).</summary>
    public TimeSpan Expires { get; set; }

    /// <summary>Deregistered: kept until <see cref="Expires"/> only to refuse replays of older registrations.</summary>
    public bool Removed { get; set; }

    /// <summary>Connection attempts this node has started that are still in progress.</summary>
    public int PendingConnections { get; set; }

    public bool IsLive(TimeSpan now) => !Removed && now < Expires;
}

/// <summary>
/// The in-memory table of registrations an instance holds, with the limits that keep a flood from exhausting it: a
/// total cap and a cap per source IP address. Expired entries go in <see cref="Sweep"/>, and any lookup treats them
/// as gone before that. Not thread-safe: the handler that owns it serializes.
/// </summary>
internal sealed class RendezvousRegistry
{
    private readonly Dictionary<NodeId, RegistryEntry> _entries = [];
    private readonly Dictionary<AddressKey, int> _perAddress = [];
    private readonly List<NodeId> _expired = [];
    private readonly int _max;
    private readonly int _maxPerAddress;

    public RendezvousRegistry(int maxEntries, int maxPerAddress)
    {
        _max = maxEntries;
        _maxPerAddress = maxPerAddress;
    }

    /// <summary>Entries held (live and removed-but-remembered).</summary>
    public int Count => _entries.Count;

    /// <summary>Distinct source addresses with entries.</summary>
    public int Addresses => _perAddress.Count;

    /// <summary>The entry for <paramref name="id"/>, live or not (replay checks need the removed ones too).</summary>
    public RegistryEntry? Find(NodeId id) => _entries.GetValueOrDefault(id);

    /// <summary>The live entry for <paramref name="id"/>.</summary>
    public bool TryGetLive(NodeId id, TimeSpan now, out RegistryEntry entry)
    {
        if (_entries.TryGetValue(id, out entry!) && entry.IsLive(now))
        {
            return true;
        }

        entry = null!;
        return false;
    }

    /// <summary>0 when a registration for <paramref name="id"/> from <paramref name="source"/> fits the limits, else
    /// the error code that refuses it.</summary>
    public int CheckRoom(NodeId id, StunAddress source)
    {
        var existing = Find(id);
        if (existing is not null && existing.Source.SameAddress(source))
        {
            return 0;
        }

        if (_perAddress.GetValueOrDefault(AddressKey.Of(source)) >= _maxPerAddress)
        {
            return RendezvousErrors.QuotaReached;
        }

        return existing is null && _entries.Count >= _max ? RendezvousErrors.InsufficientCapacity : 0;
    }

    /// <summary>The entry for <paramref name="id"/>, made if missing, now counted against
    /// <paramref name="source"/>'s address (call <see cref="CheckRoom"/> first).</summary>
    public RegistryEntry Upsert(NodeId id, StunAddress source, IPEndPoint sourceEndPoint)
    {
        if (_entries.TryGetValue(id, out var entry))
        {
            if (!entry.Source.SameAddress(source))
            {
                Release(entry.Source);
                CountAddress(source);
            }
        }
        else
        {
            entry = new RegistryEntry(id);
            _entries.Add(id, entry);
            CountAddress(source);
        }

        entry.Source = source;
        entry.SourceEndPoint = sourceEndPoint;
        return entry;
    }

    /// <summary>Drops entries whose time is up; returns how many went.</summary>
    public int Sweep(TimeSpan now)
    {
        _expired.Clear();
        foreach (var (id, entry) in _entries)
        {
            // A live entry with attempts in progress stays until they end (they hold a count on it).
            if (now >= entry.Expires && entry.PendingConnections == 0)
            {
                _expired.Add(id);
            }
        }

        foreach (var id in _expired)
        {
            if (_entries.Remove(id, out var entry))
            {
                Release(entry.Source);
            }
        }

        return _expired.Count;
    }

    private void CountAddress(StunAddress source)
    {
        var key = AddressKey.Of(source);
        _perAddress[key] = _perAddress.GetValueOrDefault(key) + 1;
    }

    private void Release(StunAddress source)
    {
        var key = AddressKey.Of(source);
        var n = _perAddress.GetValueOrDefault(key) - 1;
        if (n <= 0)
        {
            _perAddress.Remove(key);
        }
        else
        {
            _perAddress[key] = n;
        }
    }

    /// <summary>An IP address without its port.</summary>
    private readonly record struct AddressKey(byte Family, ulong High, ulong Low)
    {
        public static AddressKey Of(StunAddress a) => new(a.Family, a.High, a.Low);

        // Seeded per process (HashCode), so chosen addresses cannot pile into one bucket.
        public override int GetHashCode() => HashCode.Combine(Family, High, Low);
    }
}
