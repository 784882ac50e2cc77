using System.Buffers.Binary;
using System.Net;

namespace NatKit.Stun.Transactions;

/// <summary>
/// RFC 8489 section 6.2.1's parameters for one transaction: an initial RTO that doubles after each send, Rc sends
/// in all, and a last wait after the final send (Rm initial RTOs over UDP). Over TCP and TLS a request is sent once
/// and waits Ti (section 6.2.2): <see cref="Reliable"/>.
/// </summary>
public readonly record struct StunRetransmitPolicy(TimeSpan InitialRto, int RequestCount, TimeSpan LastWait)
{
    /// <summary>The RFC's defaults: RTO 500 ms, Rc = 7, Rm = 16 (39.5 s in all).</summary>
    public static StunRetransmitPolicy Default { get; } = Udp(TimeSpan.FromMilliseconds(500));

    /// <summary>Over UDP: <paramref name="requestCount"/> sends, waits doubling from <paramref name="initialRto"/>,
    /// then <paramref name="lastWaitMultiplier"/> initial RTOs after the last.</summary>
    public static StunRetransmitPolicy Udp(TimeSpan initialRto, int requestCount = 7, int lastWaitMultiplier = 16)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(lastWaitMultiplier, 1);
        return new StunRetransmitPolicy(initialRto, requestCount, initialRto * lastWaitMultiplier).Validated();
    }

    /// <summary>Over a reliable transport: one send, then <paramref name="timeout"/> (Ti, 39.5 s by default).</summary>
    public static StunRetransmitPolicy Reliable(TimeSpan timeout) =>
        new StunRetransmitPolicy(timeout, 1, timeout).Validated();

    /// <summary>How long to wait after send <paramref name="send"/> (0-based): the last wait after the final send,
    /// otherwise the initial RTO doubled once per earlier send.</summary>
    public TimeSpan WaitAfter(int send) =>
        send >= RequestCount - 1 ? LastWait : InitialRto * (1L << Math.Min(send, 30));

    /// <summary>The whole transaction: the sum of the waits.</summary>
    public TimeSpan Total
    {
        get
        {
            var total = TimeSpan.Zero;
            for (var i = 0; i < RequestCount; i++)
            {
                total += WaitAfter(i);
            }

            return total;
        }
    }

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the bad field; returns this policy.</summary>
    public StunRetransmitPolicy Validated()
    {
        if (InitialRto <= TimeSpan.Zero || InitialRto > TimeSpan.FromMinutes(10))
        {
            throw new ArgumentOutOfRangeException(nameof(InitialRto), InitialRto, "InitialRto: more than 0 and at most 10 minutes");
        }

        if (RequestCount is < 1 or > 30)
        {
            throw new ArgumentOutOfRangeException(nameof(RequestCount), RequestCount, "RequestCount: 1 to 30 sends");
        }

        if (LastWait <= TimeSpan.Zero || LastWait > TimeSpan.FromHours(1))
        {
            throw new ArgumentOutOfRangeException(nameof(LastWait), LastWait, "LastWait: more than 0 and at most 1 hour");
        }

        return this;
    }
}

/// <summary>What <see cref="StunTransactionTable.Poll"/> found due.</summary>
public enum StunTransactionDueKind
{
    /// <summary>Send the request again, now.</summary>
    Retransmit,

    /// <summary>The last wait passed with no response: the transaction is over (already removed).</summary>
    TimedOut,
}

/// <summary>Something due at poll time: send <see cref="Request"/> to <see cref="Destination"/> again, or the
/// transaction timed out.</summary>
public readonly record struct StunTransactionDue(StunTransactionDueKind Kind, StunTransactionId Id,
    ReadOnlyMemory<byte> Request, IPEndPoint Destination, object? Owner);

/// <summary>A response that matched a pending transaction: its request's destination, its owner, the time since
/// the first send and how many sends it took.</summary>
public readonly record struct StunTransactionMatch(StunTransactionId Id, IPEndPoint Destination, object? Owner,
    TimeSpan Elapsed, int Transmissions);

/// <summary>
/// The pending STUN transactions of one shared socket, sans I/O: requests are registered with the time they were
/// first sent, responses are matched to them by transaction id, and <see cref="Poll"/> says which requests to send
/// again and which transactions timed out, on RFC 8489 section 6.2.1's schedule. No clock, no socket, no lock:
/// the caller passes the time (any monotonic <see cref="TimeSpan"/> it keeps consistent for one table) and
/// serializes calls. The STUN client, the TURN client and the ICE checks share one table per socket, so a
/// response finds its transaction whoever started it. Steady state allocates nothing.
/// </summary>
public sealed class StunTransactionTable
{
    private readonly Dictionary<StunTransactionId, int> _index;
    private readonly Entry[] _entries;
    private readonly Stack<int> _free;
    private readonly PriorityQueue<(int Slot, int Generation), TimeSpan> _deadlines;
    private readonly List<((int Slot, int Generation) Item, TimeSpan At)> _compacting = [];

    /// <summary>A table for at most <paramref name="capacity"/> pending transactions.</summary>
    public StunTransactionTable(int capacity = 4096)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(capacity, 1 << 20);
        Capacity = capacity;
        _index = new Dictionary<StunTransactionId, int>(Math.Min(capacity, 1024));
        _entries = new Entry[capacity];
        _free = new Stack<int>(capacity);
        for (var i = capacity - 1; i >= 0; i--)
        {
            _free.Push(i);
        }

        _deadlines = new PriorityQueue<(int, int), TimeSpan>(Math.Min(capacity, 1024));
    }

    /// <summary>The most transactions pending at once.</summary>
    public int Capacity { get; }

    /// <summary>Transactions pending now.</summary>
    public int Count => _index.Count;

    /// <summary>The earliest time <see cref="Poll"/> has something to report; <see cref="TimeSpan.MaxValue"/> when
    /// nothing is pending.</summary>
    public TimeSpan NextDeadline
    {
        get
        {
            DropStale();
            return _deadlines.TryPeek(out _, out var at) ? at : TimeSpan.MaxValue;
        }
    }

    /// <summary>True while <paramref name="id"/> is pending.</summary>
    public bool Contains(StunTransactionId id) => _index.ContainsKey(id);

    /// <summary>
    /// Registers a transaction whose first request the caller sends at <paramref name="now"/>. The caller keeps
    /// <paramref name="request"/> alive and unchanged until the transaction ends (it is handed back by
    /// <see cref="Poll"/> for retransmissions). False when <paramref name="id"/> is already pending or the table
    /// is full.
    /// </summary>
    public bool TryAdd(StunTransactionId id, ReadOnlyMemory<byte> request, IPEndPoint destination, TimeSpan now,
        StunRetransmitPolicy policy, object? owner = null)
    {
        ArgumentNullException.ThrowIfNull(destination);
        if (policy.RequestCount < 1 || policy.InitialRto <= TimeSpan.Zero || policy.LastWait <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(policy), policy, "policy: use StunRetransmitPolicy.Udp, Reliable or Default");
        }

        if (_free.Count == 0 || _index.ContainsKey(id))
        {
            return false;
        }

        var slot = _free.Pop();
        ref var e = ref _entries[slot];
        e.Generation++;
        e.Id = id;
        e.Request = request;
        e.Destination = destination;
        e.Owner = owner;
        e.Policy = policy;
        e.Started = now;
        e.Sends = 1;
        e.InUse = true;
        _index.Add(id, slot);
        Schedule(slot, now + policy.WaitAfter(0));
        return true;
    }

    /// <summary>
    /// If <paramref name="datagram"/> is a STUN success or error response (the two top bits zero, the magic cookie,
    /// a length that accounts for the whole datagram) whose transaction id is pending, removes that transaction and
    /// returns it. Nothing else of the message is checked: integrity, FINGERPRINT and the source are the owner's
    /// to judge. Never throws on untrusted bytes.
    /// </summary>
    public bool TryMatch(ReadOnlySpan<byte> datagram, TimeSpan now, out StunTransactionMatch match)
    {
        if (!TryPeek(datagram, now, out match))
        {
            return false;
        }

        Release(_index[match.Id]);
        return true;
    }

    /// <summary>As <see cref="TryMatch"/> without removing the transaction: for an owner that checks the
    /// response (integrity, say) before it accepts it, and keeps waiting when it is a forgery. Remove it with
    /// <see cref="TryRemove"/> once accepted.</summary>
    public bool TryPeek(ReadOnlySpan<byte> datagram, TimeSpan now, out StunTransactionMatch match)
    {
        match = default;
        if (!IsResponse(datagram))
        {
            return false;
        }

        var id = StunTransactionId.Read(datagram.Slice(8, StunTransactionId.Size));
        if (!_index.TryGetValue(id, out var slot))
        {
            return false;
        }

        ref var e = ref _entries[slot];
        match = new StunTransactionMatch(id, e.Destination!, e.Owner, now - e.Started, e.Sends);
        return true;
    }

    /// <summary>Cancels a pending transaction; its owner is handed back. False when it is not pending.</summary>
    public bool TryRemove(StunTransactionId id, out object? owner)
    {
        if (!_index.TryGetValue(id, out var slot))
        {
            owner = null;
            return false;
        }

        owner = _entries[slot].Owner;
        Release(slot);
        return true;
    }

    /// <summary>
    /// Appends to <paramref name="due"/> every request to send again at <paramref name="now"/> and every transaction
    /// whose last wait has passed (removed from the table). A transaction polled late is resent once, not once per
    /// missed deadline, and its next wait counts from <paramref name="now"/>.
    /// </summary>
    public void Poll(TimeSpan now, ICollection<StunTransactionDue> due)
    {
        ArgumentNullException.ThrowIfNull(due);
        while (_deadlines.TryPeek(out var item, out var at) && at <= now)
        {
            _deadlines.Dequeue();
            ref var e = ref _entries[item.Slot];
            if (!e.InUse || e.Generation != item.Generation)
            {
                continue;
            }

            if (e.Sends >= e.Policy.RequestCount)
            {
                due.Add(new StunTransactionDue(StunTransactionDueKind.TimedOut, e.Id, e.Request, e.Destination!, e.Owner));
                Release(item.Slot);
                continue;
            }

            due.Add(new StunTransactionDue(StunTransactionDueKind.Retransmit, e.Id, e.Request, e.Destination!, e.Owner));
            e.Sends++;
            Schedule(item.Slot, now + e.Policy.WaitAfter(e.Sends - 1));
        }
    }

    /// <summary>Removes every pending transaction (the socket closed, say), appending each as timed out.</summary>
    public void Clear(ICollection<StunTransactionDue> removed)
    {
        ArgumentNullException.ThrowIfNull(removed);
        for (var slot = 0; slot < _entries.Length; slot++)
        {
            ref var e = ref _entries[slot];
            if (e.InUse)
            {
                removed.Add(new StunTransactionDue(StunTransactionDueKind.TimedOut, e.Id, e.Request, e.Destination!, e.Owner));
                Release(slot);
            }
        }

        _deadlines.Clear();
    }

    /// <summary>True when the bytes are a whole STUN success or error response (RFC 8489 section 5's header
    /// checks; no attribute is read).</summary>
    public static bool IsResponse(ReadOnlySpan<byte> datagram)
    {
        if (datagram.Length < StunMessageReader.HeaderLength || !StunMessageReader.LooksLikeStun(datagram))
        {
            return false;
        }

        var length = BinaryPrimitives.ReadUInt16BigEndian(datagram[2..]);
        if ((length & 3) != 0 || length + StunMessageReader.HeaderLength != datagram.Length)
        {
            return false;
        }

        var cls = StunMessageType.Class(BinaryPrimitives.ReadUInt16BigEndian(datagram));
        return cls is StunClass.SuccessResponse or StunClass.ErrorResponse;
    }

    private void Schedule(int slot, TimeSpan at)
    {
        // Removed transactions leave their deadline behind until it comes up; rebuild when those outnumber the
        // live ones, so a busy socket whose responses come quickly cannot grow the queue without bound.
        if (_deadlines.Count > (2 * _index.Count) + 64)
        {
            Compact();
        }

        _deadlines.Enqueue((slot, _entries[slot].Generation), at);
    }

    private void Compact()
    {
        _compacting.Clear();
        while (_deadlines.TryDequeue(out var item, out var at))
        {
            ref var e = ref _entries[item.Slot];
            if (e.InUse && e.Generation == item.Generation)
            {
                _compacting.Add((item, at));
            }
        }

        foreach (var (item, at) in _compacting)
        {
            _deadlines.Enqueue(item, at);
        }

        _compacting.Clear();
    }

    private void DropStale()
    {
        while (_deadlines.TryPeek(out var item, out _))
        {
            ref var e = ref _entries[item.Slot];
            if (e.InUse && e.Generation == item.Generation)
            {
                return;
            }

            _deadlines.Dequeue();
        }
    }

    private void Release(int slot)
    {
        ref var e = ref _entries[slot];
        _index.Remove(e.Id);
        e.InUse = false;
        e.Generation++;
        e.Request = default;
        e.Destination = null;
        e.Owner = null;
        _free.Push(slot);
    }

    private struct Entry
    {
        public StunTransactionId Id;
        public ReadOnlyMemory<byte> Request;
        public IPEndPoint? Destination;
        public object? Owner;
        public StunRetransmitPolicy Policy;
        public TimeSpan Started;
        public int Sends;
        public int Generation;
        public bool InUse;
    }
}
