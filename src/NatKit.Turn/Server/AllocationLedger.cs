using NatKit.Stun;

namespace NatKit.Turn.Server;

/// <summary>
/// What the relay holds for strangers, as numbers: the quota slots each user and the whole server hold
/// (allocations and the reservations they made), the relay ports taken in each family, the reservations waiting
/// for their token, the deadlines of allocations and reservations, and the drain. Pure bookkeeping under one lock:
/// no socket, no clock of its own (callers pass timestamps). <see cref="TurnRequestHandler"/> decides with it;
/// the server's edge binds the sockets the ports name.
/// </summary>
internal sealed class AllocationLedger
{
    private readonly Lock _gate = new();
    private readonly TurnServerOptions _options;
    private readonly RelayPortAllocator _portsV4;
    private readonly RelayPortAllocator? _portsV6;
    private readonly Dictionary<string, int> _perUser = new(StringComparer.Ordinal);
    private readonly ExpiryQueue<Allocation> _expiry = new();
    private readonly Dictionary<ulong, Reservation> _reservations = [];
    private readonly ExpiryQueue<Reservation> _reservationExpiry = new();
    private readonly TaskCompletionSource _noAllocations = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _count;

    /// <summary>Quota slots held: allocations and the reservations they made (508 past MaxAllocations).</summary>
    private int _held;

    private bool _draining; // new allocations refused with 508

    public AllocationLedger(TurnServerOptions options)
    {
        _options = options;
        _portsV4 = new RelayPortAllocator(options.MinPort, options.MaxPort);
        _portsV6 = options.RelayAddressV6 is null ? null : new RelayPortAllocator(options.MinPort, options.MaxPort);
    }

    public int Count => Volatile.Read(ref _count);

    public bool HasV6 => _portsV6 is not null;

    public int ReservationCount
    {
        get
        {
            lock (_gate)
            {
                return _reservations.Count;
            }
        }
    }

    /// <summary>Completes when a drain has begun and no allocation is left.</summary>
    public Task Drained => _noAllocations.Task;

    /// <summary>Quotas first (RFC 8656 section 7.2): per user 486, whole server 508. A reservation (EVEN-PORT with
    /// the R bit) holds a slot as an allocation does, so such a request needs two; claiming a reservation's token
    /// turns its slot into the new allocation's. 0 when admitted: the slots are taken and <paramref name="claimed"/>
    /// is the reservation claimed (its port now the allocation's to bind).</summary>
    public int TryAdmit(string user, bool reservePair, ulong? token, out Reservation? claimed)
    {
        var need = reservePair ? 2 : 1;
        claimed = null;
        lock (_gate)
        {
            if (token is { } t)
            {
                _reservations.TryGetValue(t, out claimed);
            }

            var freed = claimed is null ? 0 : 1;
            var mine = _perUser.GetValueOrDefault(user) - (claimed is not null && claimed.Username == user ? 1 : 0);
            if (mine + need > _options.MaxAllocationsPerUser)
            {
                claimed = null;
                return StunErrorCode.AllocationQuotaReached;
            }

            if (_draining || _held - freed + need > _options.MaxAllocations)
            {
                claimed = null;
                return StunErrorCode.InsufficientCapacity;
            }

            if (token is not null && claimed is null)
            {
                return StunErrorCode.InsufficientCapacity; // unknown, used or expired token
            }

            if (claimed is not null)
            {
                _reservations.Remove(claimed.Token); // its port stays marked: the new allocation binds it
                ReleaseSlotLocked(claimed.Username);
                if (ReferenceEquals(claimed.Owner.Reservation, claimed))
                {
                    claimed.Owner.Reservation = null;
                }
            }

            TakeSlotLocked(user);
            _count++;
            if (reservePair)
            {
                TakeSlotLocked(user); // held for the reservation until it is made (or the allocation fails)
            }
        }

        return 0;
    }

    /// <summary>A random free relay port of <paramref name="family"/> (an even one for EVEN-PORT, with the next kept
    /// back when <paramref name="andNext"/>).</summary>
    public bool TryTakePort(byte family, bool even, bool andNext, out int port)
    {
        var ports = family == StunAddress.FamilyIPv6 ? _portsV6 : _portsV4;
        lock (_gate)
        {
            port = 0;
            return ports is not null && ports.TryTake(even, andNext, out port);
        }
    }

    public void ReleasePort(byte family, int port)
    {
        lock (_gate)
        {
            (family == StunAddress.FamilyIPv6 ? _portsV6 : _portsV4)?.Release(port);
        }
    }

    /// <summary>Records the port an allocation keeps back for a later one (RFC 8656 section 14.6); the slot taken
    /// for it at admission is the reservation's from now.</summary>
    public void Reserve(Reservation made, long expires)
    {
        lock (_gate)
        {
            _reservations[made.Token] = made;
            _reservationExpiry.Add(made, expires);
            made.Owner.Reservation = made;
            made.Owner.ReservationSlotPending = false;
        }
    }

    /// <summary>Puts a registered allocation on the expiry heap.</summary>
    public void Track(Allocation allocation)
    {
        lock (_gate)
        {
            _expiry.Add(allocation, allocation.Expires);
        }
    }

    /// <summary>Ends an allocation's holdings: its ports, its quota slots, a reservation it made. Idempotent;
    /// false when it was already closed. A drain waiting for the last allocation is told unless
    /// <paramref name="answerPending"/> (the caller then calls <see cref="SignalDrainedIfEmpty"/> once its answer
    /// is sent).</summary>
    public bool Release(Allocation a, bool answerPending = false)
    {
        lock (a.Gate)
        {
            if (a.Closed)
            {
                return false;
            }

            a.Closed = true;
        }

        lock (_gate)
        {
            if (a.RelayPortV4 != 0)
            {
                _portsV4.Release(a.RelayPortV4);
            }

            if (a.RelayPortV6 != 0)
            {
                _portsV6?.Release(a.RelayPortV6);
            }

            ReleaseSlotLocked(a.Username);
            _count--;
            if (_count == 0 && _draining && !answerPending)
            {
                _noAllocations.TrySetResult();
            }

            if (a.ReservationSlotPending)
            {
                a.ReservationSlotPending = false;
                ReleaseSlotLocked(a.Username);
            }

            if (a.Reservation is { } reservation)
            {
                DropReservationLocked(reservation); // a reservation ends with the allocation that made it
            }
        }

        return true;
    }

    /// <summary>The allocations whose lifetime has passed at <paramref name="now"/> (not yet released), and drops
    /// the reservations whose time is up. Never scans every allocation: a refreshed one is re-queued lazily.</summary>
    public List<Allocation>? TakeExpired(long now)
    {
        List<Allocation>? due = null;
        lock (_gate)
        {
            while (_expiry.TryPopDue(now, out var a))
            {
                if (a.Closed)
                {
                    continue;
                }

                long expires;
                lock (a.Gate)
                {
                    expires = a.Expires;
                }

                if (expires > now)
                {
                    _expiry.Add(a, expires); // refreshed since it was queued
                }
                else
                {
                    (due ??= []).Add(a);
                }
            }

            while (_reservationExpiry.TryPopDue(now, out var r))
            {
                DropReservationLocked(r);
            }
        }

        return due;
    }

    /// <summary>Refuses new allocations from now (508); returns how many are live.</summary>
    public int BeginDrain()
    {
        lock (_gate)
        {
            _draining = true;
            if (_count == 0)
            {
                _noAllocations.TrySetResult();
            }

            return _count;
        }
    }

    /// <summary>Completes a drain when no allocation is left (after the answer to a Refresh that deleted one).</summary>
    public void SignalDrainedIfEmpty()
    {
        lock (_gate)
        {
            if (_draining && _count == 0)
            {
                _noAllocations.TrySetResult();
            }
        }
    }

    private void TakeSlotLocked(string user)
    {
        _perUser[user] = _perUser.GetValueOrDefault(user) + 1;
        _held++;
    }

    private void ReleaseSlotLocked(string user)
    {
        if (_perUser.TryGetValue(user, out var n))
        {
            if (n <= 1)
            {
                _perUser.Remove(user);
            }
            else
            {
                _perUser[user] = n - 1;
            }
        }

        _held--;
    }

    /// <summary>Ends a reservation that is still held (expired, or its allocation deleted): its port goes back to
    /// the range and its slot to its user. A reservation already claimed or dropped is left alone.</summary>
    private void DropReservationLocked(Reservation r)
    {
        if (!_reservations.Remove(r.Token))
        {
            return;
        }

        r.Hold?.Dispose(); // the port is free for the range again only once nothing holds it
        (r.Family == StunAddress.FamilyIPv6 ? _portsV6 : _portsV4)?.Release(r.Port);
        ReleaseSlotLocked(r.Username);
        if (ReferenceEquals(r.Owner.Reservation, r))
        {
            r.Owner.Reservation = null;
        }
    }
}
