using NatKit.Packets;

namespace NatKit.Tunnel.Server;

/// <summary>
/// The inner addresses a tunnel server hands out from its prefix: the first host address is the server's own (the
/// clients' next hop), the rest go to sessions. A session keeps its address while connected and for a grace period
/// after (so a client that reconnects, through the same relay or another, gets the same address and its flows back);
/// then the address is free again, handed out oldest-freed first. Thread-safe.
/// </summary>
internal sealed class AddressPool
{
    private readonly Lock _gate = new();
    private readonly Ipv4Prefix _prefix;
    private readonly Queue<Ipv4Address> _free = new();
    private readonly Dictionary<Guid, Lease> _bySession = [];
    private readonly Dictionary<uint, Guid> _byAddress = [];

    private sealed class Lease(Ipv4Address address)
    {
        public Ipv4Address Address { get; } = address;

        public bool Active { get; set; }

        /// <summary>When a held (disconnected) lease ends, as a TimeProvider timestamp.</summary>
        public long HeldUntil { get; set; }
    }

    public AddressPool(Ipv4Prefix prefix)
    {
        if (prefix.Length > 30)
        {
            throw new ArgumentException($"the address pool {prefix} is too small: a /30 or larger is needed");
        }

        _prefix = prefix;
        Gateway = prefix.At(1);
        var last = prefix.Size - 1; // the broadcast address stays out
        for (ulong i = 2; i < last && i < 1 << 20; i++)
        {
            _free.Enqueue(prefix.At((uint)i));
        }

        Capacity = _free.Count;
    }

    /// <summary>The server's own address in the prefix.</summary>
    public Ipv4Address Gateway { get; }

    public Ipv4Prefix Prefix => _prefix;

    /// <summary>Addresses sessions can have.</summary>
    public int Capacity { get; }

    /// <summary>Leases active or held.</summary>
    public int Leased
    {
        get
        {
            lock (_gate)
            {
                return _bySession.Count;
            }
        }
    }

    /// <summary>
    /// The address for <paramref name="session"/>: its own again if it still holds one (<paramref name="resumed"/>),
    /// else a free one. False when none is free. <paramref name="wasActive"/> says another connection of the same
    /// session still has it (the caller replaces that connection).
    /// </summary>
    public bool TryLease(Guid session, out Ipv4Address address, out bool resumed, out bool wasActive)
    {
        lock (_gate)
        {
            if (_bySession.TryGetValue(session, out var lease))
            {
                address = lease.Address;
                resumed = true;
                wasActive = lease.Active;
                lease.Active = true;
                return true;
            }

            resumed = wasActive = false;
            if (!_free.TryDequeue(out address))
            {
                return false;
            }

            _bySession[session] = new Lease(address) { Active = true };
            _byAddress[address.Value] = session;
            return true;
        }
    }

    /// <summary>The session's connection ended: its address stays its own until <paramref name="until"/>.</summary>
    public void Hold(Guid session, long until)
    {
        lock (_gate)
        {
            if (_bySession.TryGetValue(session, out var lease))
            {
                lease.Active = false;
                lease.HeldUntil = until;
            }
        }
    }

    /// <summary>Ends held leases whose time is up and returns their addresses; the caller forgets their flows and
    /// then <see cref="Release"/>s them.</summary>
    public List<Ipv4Address> TakeExpired(long now)
    {
        var expired = new List<Ipv4Address>();
        lock (_gate)
        {
            foreach (var (session, lease) in _bySession)
            {
                if (!lease.Active && lease.HeldUntil <= now)
                {
                    expired.Add(lease.Address);
                    _bySession.Remove(session);
                    _byAddress.Remove(lease.Address.Value);
                }
            }
        }

        return expired;
    }

    /// <summary>Puts an address taken by <see cref="TakeExpired"/> back at the end of the free list.</summary>
    public void Release(Ipv4Address address)
    {
        lock (_gate)
        {
            _free.Enqueue(address);
        }
    }
}
