using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using NatKit.Stun;
using NatKit.Stun.Transactions;

namespace NatKit.Traversal.Ice;

/// <summary>
/// An ICE agent (RFC 8445) for one data stream of one component, sans I/O: candidates, credentials, datagrams
/// (with the socket they came in on and their source) and the time go in; datagrams to send (<see cref="TryTakeTransmit"/>),
/// events (<see cref="TryTakeEvent"/>) and the next time to be polled (<see cref="NextDeadline"/>) come out. No
/// socket, no clock, no task, no lock: the caller serializes calls and passes a monotonic time it keeps consistent
/// (the driver uses its <see cref="TimeProvider"/>'s elapsed time; tests pass a fake).
/// </summary>
/// <remarks>
/// <para>Sockets are the driver's integers: each local base (a host candidate, a relayed candidate) lives on one,
/// reflexive candidates share their base's. The hard-NAT methods add what they need through the same calls: many
/// local bases (a birthday set's sockets, each a host candidate on its own socket), many remote ports for one
/// address (predicted or random ports as server-reflexive candidates with an <see cref="IceCandidateOrigin"/> of
/// their own and, to be checked side by side, distinct foundations), an <see cref="IIceCheckBudget"/> for the probe
/// rate, and a smaller <see cref="IceAgentOptions.CheckInterval"/>.</para>
/// <para>Every check is a transaction of a <see cref="StunTransactionTable"/> (the agent's own unless one is passed
/// in); responses are matched by id only after their MESSAGE-INTEGRITY verifies, so a forged or garbled answer
/// never ends a check.</para>
/// </remarks>
public sealed partial class IceAgent
{
    private const int Component = 1;

    private readonly IceAgentOptions _options;
    private readonly Random? _random;
    private readonly StunTransactionTable _table;
    private readonly List<StunTransactionDue> _due = [];
    private readonly Queue<IceTransmit> _transmits = new();
    private readonly Queue<IceEvent> _events = new();

    private readonly List<IceCandidate> _localCandidates = [];
    private readonly Dictionary<IPEndPoint, LocalEntry> _localByEndPoint = [];
    private readonly Dictionary<(int Socket, AddressFamily Family), LocalEntry> _bases = [];
    private readonly List<IceCandidate> _remoteCandidates = [];
    private readonly Dictionary<IPEndPoint, IceCandidate> _remoteByEndPoint = [];

    private readonly List<IceCandidatePair> _checkList = [];
    private readonly Dictionary<(int Socket, IPEndPoint Remote), IceCandidatePair> _pairIndex = [];
    private readonly List<IceCandidatePair> _valid = [];
    private readonly Dictionary<(IceCandidate Local, IceCandidate Remote), IceCandidatePair> _validIndex = [];
    private readonly Dictionary<string, FoundationCount> _foundations = new(StringComparer.Ordinal);
    private readonly LinkedList<IceCandidatePair> _triggered = new();

    /// <summary>Ids of this agent's transactions in the table (which may be shared), to cancel them on close.</summary>
    private readonly HashSet<StunTransactionId> _pending = [];

    private readonly byte[] _localKey;
    private byte[]? _remoteKey;
    private int _waiting;
    private int _inProgress;
    private int _frozen;
    private bool _ordinaryIdle;
    private bool _endOfCandidates;
    private TimeSpan _lastCheckAt = TimeSpan.MinValue;
    private TimeSpan _budgetBlockedUntil = TimeSpan.MinValue;
    private TimeSpan _checksStartedAt = TimeSpan.MinValue;
    private TimeSpan _nominateAt = TimeSpan.MaxValue;
    private IceCandidatePair? _nominating;
    private TimeSpan _nextConsentAt = TimeSpan.MaxValue;
    private TimeSpan _selectedLastSent;
    private TimeSpan _nextUpgradeAt = TimeSpan.MaxValue;
    private TimeSpan _connectedAt = TimeSpan.MinValue;
    private TimeSpan _selectedAt = TimeSpan.MinValue;

    /// <param name="role">The role this agent starts in (a role conflict may switch it: see <see cref="Role"/>).</param>
    /// <param name="options">Validated here; <see cref="IceAgentOptions.Default"/> when null.</param>
    /// <param name="localCredentials">This agent's ufrag and password; generated when null.</param>
    /// <param name="random">For tie-breaker, transaction ids, credentials and consent jitter, so that a lab run
    /// repeats; a cryptographic source when null.</param>
    /// <param name="transactions">The table checks run through; a new one of its own when null.</param>
    public IceAgent(IceRole role, IceAgentOptions? options = null, IceCredentials? localCredentials = null,
        Random? random = null, StunTransactionTable? transactions = null)
    {
        _options = (options ?? IceAgentOptions.Default).Validate();
        _random = random;
        Role = role;
        LocalCredentials = localCredentials ?? IceCredentials.Generate(random);
        _localKey = StunCredentials.ShortTermKey(LocalCredentials.Password);
        Span<byte> tie = stackalloc byte[8];
        Fill(tie);
        TieBreaker = BitConverter.ToUInt64(tie);
        _table = transactions ?? new StunTransactionTable(Math.Max(64, _options.MaxPairs * 2));
    }

    public IceAgentOptions Options => _options;

    public IceRole Role { get; private set; }

    /// <summary>The 64-bit tie-breaker of ICE-CONTROLLING/ICE-CONTROLLED (RFC 8445 section 7.1.3).</summary>
    public ulong TieBreaker { get; init; }

    public IceCredentials LocalCredentials { get; }

    public IceCredentials? RemoteCredentials { get; private set; }

    public IceAgentState State { get; private set; } = IceAgentState.New;

    /// <summary>The pair data goes on (the best nominated valid pair), or null.</summary>
    public IceCandidatePair? SelectedPair { get; private set; }

    /// <summary>Budget for ordinary checks (the hard-NAT methods' probe rate); null: only Ta paces them.</summary>
    public IIceCheckBudget? CheckBudget { get; set; }

    /// <summary>
    /// Which pairs of a local base (on its driver socket) and a remote candidate go into the check list when
    /// candidates are added; null pairs everything of one address family (RFC 8445 section 6.1.2.2). Pairs that a
    /// peer's check creates (triggered checks) are not filtered: they follow evidence. The hard-NAT methods use it
    /// to keep a socket whose next mapping was predicted, or one of a birthday set, from sending to anything but
    /// its one target: every other destination would take a port on an endpoint-dependent NAT.
    /// </summary>
    public Func<IceCandidate, int, IceCandidate, bool>? PairFilter { get; set; }

    public IceAgentStats Stats { get; } = new();

    public IReadOnlyList<IceCandidate> LocalCandidates => _localCandidates;

    public IReadOnlyList<IceCandidate> RemoteCandidates => _remoteCandidates;

    /// <summary>The check list, highest priority first.</summary>
    public IReadOnlyList<IceCandidatePair> CheckList => _checkList;

    /// <summary>The valid list (RFC 8445 section 7.2.5.3.2), in the order pairs became valid.</summary>
    public IReadOnlyList<IceCandidatePair> ValidPairs => _valid;

    /// <summary>When the first check went out (for "time to connect"); null before.</summary>
    public TimeSpan? ChecksStartedAt => _checksStartedAt == TimeSpan.MinValue ? null : _checksStartedAt;

    /// <summary>When the first pair was selected; null before.</summary>
    public TimeSpan? ConnectedAt => _connectedAt == TimeSpan.MinValue ? null : _connectedAt;

    /// <summary>
    /// The selected pair as a report (candidate types and origins on both sides, RTT, time to connect, checks
    /// spent); null while no pair is selected. Built on each call: read it when the selection changes, not per
    /// datagram.
    /// </summary>
    public IcePathReport? SelectedPath
    {
        get
        {
            if (SelectedPair is not { } p)
            {
                return null;
            }

            var started = _checksStartedAt == TimeSpan.MinValue ? _connectedAt : _checksStartedAt;
            return new IcePathReport(p.Local.Type, p.Local.Origin, p.Remote.Type, p.Remote.Origin,
                p.Local.EndPoint, p.Remote.EndPoint, p.IsRelayed, p.Rtt, _connectedAt - started,
                _selectedAt - started, Stats.ChecksStarted, Stats.RequestsSent);
        }
    }

    /// <summary>True when <paramref name="source"/> on <paramref name="socket"/> is a remote candidate of a pair
    /// (signaled or peer-reflexive): the peer's application data is accepted from any of them (RFC 8445
    /// section 12.1), not only from the selected pair.</summary>
    public bool IsPeer(int socket, IPEndPoint source)
    {
        ArgumentNullException.ThrowIfNull(source);
        return _pairIndex.ContainsKey((socket, IceCandidate.Normalize(source)));
    }

    /// <summary>
    /// Adds a local candidate on the driver's socket <paramref name="socket"/>. A host or relayed candidate is the
    /// base of that socket (one per address family); a reflexive candidate needs its base added first. False for a
    /// candidate the agent cannot use: not UDP, not component 1, a second base on a socket, no base, an address
    /// already known, or over <see cref="IceAgentOptions.MaxLocalCandidates"/>.
    /// </summary>
    public bool AddLocalCandidate(IceCandidate candidate, int socket)
    {
        ArgumentNullException.ThrowIfNull(candidate);
        if (State == IceAgentState.Closed || candidate.Protocol != IceProtocol.Udp || candidate.Component != Component ||
            _localCandidates.Count >= _options.MaxLocalCandidates || _localByEndPoint.ContainsKey(candidate.EndPoint))
        {
            return false;
        }

        var key = (socket, candidate.EndPoint.AddressFamily);
        LocalEntry entry;
        if (candidate.Type is IceCandidateType.Host or IceCandidateType.Relayed)
        {
            if (_bases.ContainsKey(key))
            {
                return false;
            }

            entry = new LocalEntry(candidate, socket, candidate);
            _bases.Add(key, entry);
        }
        else
        {
            if (!_bases.TryGetValue(key, out var b))
            {
                return false;
            }

            entry = new LocalEntry(candidate, socket, b.Candidate);
        }

        _localCandidates.Add(candidate);
        _localByEndPoint.Add(candidate.EndPoint, entry);
        if (ReferenceEquals(entry.Base, candidate))
        {
            foreach (var remote in _remoteCandidates)
            {
                if (remote.EndPoint.AddressFamily == candidate.EndPoint.AddressFamily)
                {
                    TryAddFilteredPair(entry, remote);
                }
            }
        }

        return true;
    }

    /// <summary>
    /// Adds a candidate the peer signaled. A candidate whose address the agent learned as peer-reflexive replaces
    /// that one in its pairs (RFC 8838 section 11.4). False when it is not UDP component 1, is already known, or
    /// the agent holds <see cref="IceAgentOptions.MaxRemoteCandidates"/>.
    /// </summary>
    public bool AddRemoteCandidate(IceCandidate candidate)
    {
        ArgumentNullException.ThrowIfNull(candidate);
        if (State == IceAgentState.Closed || candidate.Protocol != IceProtocol.Udp || candidate.Component != Component)
        {
            return false;
        }

        if (_remoteByEndPoint.TryGetValue(candidate.EndPoint, out var known))
        {
            if (known.Type != IceCandidateType.PeerReflexive || candidate.Type == IceCandidateType.PeerReflexive)
            {
                return false;
            }

            ReplaceRemote(known, candidate);
            return true;
        }

        if (_remoteCandidates.Count >= _options.MaxRemoteCandidates)
        {
            return false;
        }

        AddRemote(candidate);
        return true;
    }

    /// <summary>Sets the peer's ufrag and password; checks start with the next <see cref="Poll"/>.</summary>
    public void SetRemoteCredentials(IceCredentials remote)
    {
        ArgumentNullException.ThrowIfNull(remote);
        if (State == IceAgentState.Closed)
        {
            return;
        }

        RemoteCredentials = remote;
        _remoteKey = StunCredentials.ShortTermKey(remote.Password);
        if (State == IceAgentState.New)
        {
            SetAgentState(IceAgentState.Checking);
        }
    }

    /// <summary>
    /// Says that no more candidates will be added on either side (RFC 8838's end-of-candidates): from then on the
    /// agent fails when every pair has failed. Before it, a check list with only failed pairs waits for more.
    /// </summary>
    public void SetEndOfCandidates()
    {
        _endOfCandidates = true;
        CheckFailure();
    }

    /// <summary>The next time <see cref="Poll"/> has work; <see cref="TimeSpan.MaxValue"/> when none is scheduled.
    /// A value at or before now means "poll now" (after a call added work).</summary>
    public TimeSpan NextDeadline
    {
        get
        {
            if (State == IceAgentState.Closed)
            {
                return TimeSpan.MaxValue;
            }

            var next = _table.NextDeadline;
            next = Min(next, NextCheckTime());
            next = Min(next, _nominateAt);
            if (SelectedPair is { } selected)
            {
                next = Min(next, _nextConsentAt);
                if (_options.ConsentInterval > TimeSpan.Zero)
                {
                    next = Min(next, ConsentExpiry(selected));
                }

                next = Min(next, _selectedLastSent + _options.KeepaliveInterval);
                if (selected.IsRelayed)
                {
                    next = Min(next, _nextUpgradeAt);
                }
            }

            return next;
        }
    }

    /// <summary>Runs what is due at <paramref name="now"/>: retransmissions and timeouts, the next paced check,
    /// nomination, consent, keepalives and relay-to-direct upgrade checks.</summary>
    public void Poll(TimeSpan now)
    {
        if (State == IceAgentState.Closed)
        {
            return;
        }

        _due.Clear();
        _table.Poll(now, _due);
        foreach (var due in _due)
        {
            if (due.Owner is not CheckTransaction check)
            {
                continue;
            }

            if (due.Kind == StunTransactionDueKind.TimedOut)
            {
                _pending.Remove(check.Id);
            }

            if (due.Kind == StunTransactionDueKind.Retransmit)
            {
                Stats.Retransmissions++;
                Emit(check.Pair.Socket, due.Destination, due.Request, now, request: true);
                check.Pair.RequestsSent++;
            }
            else
            {
                OnTimedOut(check);
            }
        }

        if (NextCheckTime() <= now)
        {
            SendNextCheck(now);
        }

        EvaluateNomination(now);
        Freshness(now);
        CheckFailure();
    }

    /// <summary>
    /// Takes one datagram that came in on <paramref name="socket"/> from <paramref name="source"/>: checks from the
    /// peer are answered (and may trigger a check of our own), responses to our checks are matched. Never throws
    /// for any bytes.
    /// </summary>
    public IceInputResult Receive(ReadOnlySpan<byte> datagram, IPEndPoint source, int socket, TimeSpan now)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (!StunMessageReader.LooksLikeStun(datagram))
        {
            return IceInputResult.NotStun;
        }

        if (State == IceAgentState.Closed)
        {
            return IceInputResult.NotMine;
        }

        if (!StunMessageReader.TryParse(datagram, out var msg) || (msg.HasFingerprint && !msg.IsFingerprintValid()))
        {
            Stats.Dropped++;
            return IceInputResult.Dropped;
        }

        if (msg.Method != StunMethods.Binding)
        {
            return IceInputResult.NotMine;
        }

        source = IceCandidate.Normalize(source);
        var result = msg.Class switch
        {
            StunClass.Request => HandleRequest(msg, source, socket, now),
            StunClass.Indication => IceInputResult.Handled,
            _ => HandleResponse(msg, datagram, source, socket, now),
        };
        CheckFailure();
        return result;
    }

    /// <summary>The next datagram to send, if any.</summary>
    public bool TryTakeTransmit(out IceTransmit transmit) => _transmits.TryDequeue(out transmit);

    /// <summary>The next event, if any.</summary>
    public bool TryTakeEvent(out IceEvent @event) => _events.TryDequeue(out @event!);

    /// <summary>
    /// Queues one connectivity-check request from the driver's socket <paramref name="socket"/> to
    /// <paramref name="destination"/> outside any transaction: a hole-punching probe. It opens the local NAT's
    /// mapping and filter toward the destination, and when it reaches the peer's agent the peer answers with a
    /// triggered check of its own, which makes the pair valid here. Its response, if one comes, is not matched.
    /// False before the peer's credentials are known, after close, or for a socket with no base of the
    /// destination's family.
    /// </summary>
    public bool Probe(int socket, IPEndPoint destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        if (State is IceAgentState.Closed || RemoteCredentials is null ||
            !_bases.TryGetValue((socket, destination.AddressFamily), out var b))
        {
            return false;
        }

        var request = IceMessages.Request(NewTransactionId(), RemoteCredentials.Ufrag, LocalCredentials.Ufrag,
            _remoteKey!, IcePriority.PeerReflexiveFor(b.Candidate.Priority, Component), Role, TieBreaker,
            useCandidate: false);
        Stats.ProbesSent++;
        Emit(socket, destination, request, TimeSpan.MinValue, request: true);
        return true;
    }

    public void RecordDataSent(TimeSpan now) => _selectedLastSent = Max(_selectedLastSent, now);

    /// <summary>Stops everything: pending checks end, no more datagrams or timers.</summary>
    public void Close()
    {
        if (State == IceAgentState.Closed)
        {
            return;
        }

        foreach (var id in _pending)
        {
            _table.TryRemove(id, out _);
        }

        _pending.Clear();
        _triggered.Clear();
        _transmits.Clear();
        SetAgentState(IceAgentState.Closed);
    }

    // ---------------------------------------------------------------- candidates and pairs

    private void AddRemote(IceCandidate candidate)
    {
        _remoteCandidates.Add(candidate);
        _remoteByEndPoint.Add(candidate.EndPoint, candidate);
        foreach (var b in _bases.Values)
        {
            if (b.Candidate.EndPoint.AddressFamily == candidate.EndPoint.AddressFamily)
            {
                TryAddFilteredPair(b, candidate);
            }
        }
    }

    private void ReplaceRemote(IceCandidate old, IceCandidate signaled)
    {
        var i = _remoteCandidates.IndexOf(old);
        _remoteCandidates[i] = signaled;
        _remoteByEndPoint[signaled.EndPoint] = signaled;
        for (var p = 0; p < _checkList.Count; p++)
        {
            var pair = _checkList[p];
            if (!ReferenceEquals(pair.Remote, old))
            {
                continue;
            }

            CountFoundation(pair, -1);
            pair.ReplaceRemote(signaled);
            pair.Priority = PairPriority(pair.Local, pair.Remote);
            CountFoundation(pair, +1);
        }

        foreach (var pair in _valid)
        {
            if (ReferenceEquals(pair.Remote, old))
            {
                pair.ReplaceRemote(signaled);
                pair.Priority = PairPriority(pair.Local, pair.Remote);
            }
        }

        SortCheckList();
    }

    /// <summary>Forms the pair (base, remote) for the check list unless it exists; applies the size limit.</summary>
    private bool TryAddFilteredPair(LocalEntry local, IceCandidate remote)
    {
        if (PairFilter is { } filter && !filter(local.Candidate, local.Socket, remote))
        {
            return false;
        }

        return TryAddPair(local, remote, out _);
    }

    private bool TryAddPair(LocalEntry local, IceCandidate remote, out IceCandidatePair pair)
    {
        var key = (local.Socket, remote.EndPoint);
        if (_pairIndex.TryGetValue(key, out pair!))
        {
            return true;
        }

        var created = new IceCandidatePair(local.Candidate, remote, local.Socket, inCheckList: true);
        created.Priority = PairPriority(created.Local, created.Remote);
        if (_checkList.Count >= _options.MaxPairs && !MakeRoomFor(created))
        {
            pair = null!;
            return false;
        }

        // RFC 8445 section 6.1.2.6 for a list that grows while checks run (RFC 8838 section 10): Waiting when
        // nothing of its foundation is being checked or something of it already succeeded, else Frozen.
        var counts = _foundations.GetValueOrDefault(created.Foundation);
        created.State = counts.Waiting + counts.InProgress == 0 || counts.Succeeded > 0
            ? IceCandidatePairState.Waiting
            : IceCandidatePairState.Frozen;
        Count(created.State, +1);
        CountFoundation(created, +1);
        var at = FindInsertIndex(created.Priority);
        _checkList.Insert(at, created);
        _pairIndex.Add(key, created);
        _ordinaryIdle = false;
        pair = created;
        return true;
    }

    private bool MakeRoomFor(IceCandidatePair incoming)
    {
        for (var i = _checkList.Count - 1; i >= 0; i--)
        {
            var victim = _checkList[i];
            if (victim.Priority >= incoming.Priority)
            {
                return false;
            }

            if (victim.State is IceCandidatePairState.Frozen or IceCandidatePairState.Waiting && !victim.Triggered)
            {
                Count(victim.State, -1);
                CountFoundation(victim, -1);
                _checkList.RemoveAt(i);
                _pairIndex.Remove((victim.Socket, victim.Remote.EndPoint));
                return true;
            }
        }

        return false;
    }

    private int FindInsertIndex(ulong priority)
    {
        int lo = 0, hi = _checkList.Count;
        while (lo < hi)
        {
            var mid = (lo + hi) >>> 1;
            if (_checkList[mid].Priority >= priority)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }

        return lo;
    }

    private void SortCheckList() =>
        _checkList.Sort(static (a, b) => b.Priority.CompareTo(a.Priority));

    private ulong PairPriority(IceCandidate local, IceCandidate remote) =>
        Role == IceRole.Controlling
            ? IcePriority.Pair(local.Priority, remote.Priority)
            : IcePriority.Pair(remote.Priority, local.Priority);

    private void SetPairState(IceCandidatePair pair, IceCandidatePairState state)
    {
        if (pair.State == state)
        {
            return;
        }

        if (pair.InCheckList)
        {
            Count(pair.State, -1);
            CountFoundation(pair, -1);
            pair.State = state;
            Count(state, +1);
            CountFoundation(pair, +1);
            _ordinaryIdle = false;
        }
        else
        {
            pair.State = state;
        }
    }

    private void Count(IceCandidatePairState state, int delta)
    {
        switch (state)
        {
            case IceCandidatePairState.Waiting:
                _waiting += delta;
                break;
            case IceCandidatePairState.InProgress:
                _inProgress += delta;
                break;
            case IceCandidatePairState.Frozen:
                _frozen += delta;
                break;
        }
    }

    private void CountFoundation(IceCandidatePair pair, int delta)
    {
        ref var c = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(
            _foundations, pair.Foundation, out _);
        switch (pair.State)
        {
            case IceCandidatePairState.Waiting:
                c.Waiting += delta;
                break;
            case IceCandidatePairState.InProgress:
                c.InProgress += delta;
                break;
            case IceCandidatePairState.Succeeded:
                c.Succeeded += delta;
                break;
        }
    }

    private void SwitchRole(IceRole role)
    {
        if (Role == role)
        {
            return;
        }

        Role = role;
        foreach (var pair in _checkList)
        {
            pair.Priority = PairPriority(pair.Local, pair.Remote);
            pair.NominateOnSend = false;
        }

        foreach (var pair in _valid)
        {
            pair.Priority = PairPriority(pair.Local, pair.Remote);
        }

        SortCheckList();
        _nominating = null;
        _events.Enqueue(new IceRoleChanged(role));
    }

    private void SetAgentState(IceAgentState state)
    {
        if (State == state)
        {
            return;
        }

        State = state;
        _events.Enqueue(new IceStateChanged(state));
    }

    // ---------------------------------------------------------------- sending checks

    private TimeSpan NextCheckTime()
    {
        if (_remoteKey is null || State is IceAgentState.Closed or IceAgentState.Failed)
        {
            return TimeSpan.MaxValue;
        }

        var paced = _lastCheckAt == TimeSpan.MinValue ? TimeSpan.Zero : _lastCheckAt + _options.CheckInterval;
        if (_triggered.Count > 0)
        {
            return paced;
        }

        if (OrdinaryChecksAllowed && !_ordinaryIdle && _waiting + _frozen > 0)
        {
            return Max(paced, _budgetBlockedUntil);
        }

        return TimeSpan.MaxValue;
    }

    /// <summary>Ordinary checks run until a pair is selected (RFC 8445 section 8.1.2); afterwards only triggered
    /// checks (the peer's evidence, nominations, relay-to-direct upgrade checks) go out.</summary>
    private bool OrdinaryChecksAllowed => SelectedPair is null && State == IceAgentState.Checking;

    private void SendNextCheck(TimeSpan now)
    {
        while (_triggered.First is { } node)
        {
            _triggered.RemoveFirst();
            var pair = node.Value;
            if (!pair.Triggered)
            {
                continue;
            }

            pair.Triggered = false;
            Stats.TriggeredChecks++;
            StartCheck(pair, now);
            return;
        }

        if (!OrdinaryChecksAllowed)
        {
            return;
        }

        var next = NextOrdinaryPair();
        if (next is null)
        {
            _ordinaryIdle = true;
            return;
        }

        if (CheckBudget is { } budget && !budget.TryTake(now))
        {
            var at = budget.NextAvailable(now);
            _budgetBlockedUntil = at > now ? at : now + _options.CheckInterval;
            return;
        }

        Stats.OrdinaryChecks++;
        StartCheck(next, now);
    }

    /// <summary>RFC 8445 section 6.1.4.2: the highest-priority Waiting pair; with none, unfreeze the best Frozen pair
    /// of each foundation that has nothing Waiting or In-Progress, then take the best Waiting one.</summary>
    private IceCandidatePair? NextOrdinaryPair()
    {
        if (_waiting == 0 && _frozen > 0)
        {
            foreach (var pair in _checkList)
            {
                if (pair.State != IceCandidatePairState.Frozen)
                {
                    continue;
                }

                var c = _foundations.GetValueOrDefault(pair.Foundation);
                if (c.Waiting + c.InProgress == 0)
                {
                    SetPairState(pair, IceCandidatePairState.Waiting);
                }
            }
        }

        foreach (var pair in _checkList)
        {
            if (pair.State == IceCandidatePairState.Waiting && !pair.Triggered)
            {
                return pair;
            }
        }

        return null;
    }

    private void StartCheck(IceCandidatePair pair, TimeSpan now)
    {
        var useCandidate = Role == IceRole.Controlling &&
                           (_options.Nomination == IceNomination.Aggressive || pair.NominateOnSend);
        pair.NominateOnSend = false;
        var basePriority = pair.Local.Priority;
        var priority = IcePriority.PeerReflexiveFor(basePriority, Component);
        var id = NewTransactionId();
        var request = IceMessages.Request(id, RemoteCredentials!.Ufrag, LocalCredentials.Ufrag, _remoteKey!, priority,
            Role, TieBreaker, useCandidate);
        var rto = _options.CheckInterval * Math.Max(1, _waiting + _inProgress);
        if (rto < _options.CheckRto)
        {
            rto = _options.CheckRto;
        }

        if (rto > TimeSpan.FromMinutes(1))
        {
            rto = TimeSpan.FromMinutes(1);
        }

        // An upgrade probe is one of many over the connection's life: two sends and a short wait, so that probing
        // a dead direct path once per interval stays a trickle.
        var policy = pair.UpgradeProbe
            ? StunRetransmitPolicy.Udp(rto, 2, 2)
            : StunRetransmitPolicy.Udp(rto, _options.CheckRequestCount, _options.CheckLastWaitMultiplier);
        pair.UpgradeProbe = false;
        var check = new CheckTransaction(id, pair, CheckKind.Connectivity, useCandidate, Role, priority);
        if (!_table.TryAdd(id, request, pair.Remote.EndPoint, now, policy, check))
        {
            // The table is full: try again after Ta (the pair stays where it was).
            _lastCheckAt = now;
            EnqueueTriggered(pair, front: false);
            return;
        }

        if (_checksStartedAt == TimeSpan.MinValue)
        {
            _checksStartedAt = now;
        }

        _lastCheckAt = now;
        _budgetBlockedUntil = TimeSpan.MinValue;
        _pending.Add(id);
        pair.CurrentCheck = id;
        pair.LastCheckAt = now;
        pair.RequestsSent++;
        Stats.ChecksStarted++;
        if (pair.State != IceCandidatePairState.Succeeded)
        {
            SetPairState(pair, IceCandidatePairState.InProgress);
        }

        Emit(pair.Socket, pair.Remote.EndPoint, request, now, request: true);
    }

    private void EnqueueTriggered(IceCandidatePair pair, bool front)
    {
        if (pair.Triggered)
        {
            if (!front)
            {
                return;
            }

            // Move it to the front: find and drop the queued node.
            for (var n = _triggered.First; n is not null; n = n.Next)
            {
                if (ReferenceEquals(n.Value, pair))
                {
                    _triggered.Remove(n);
                    break;
                }
            }
        }

        pair.Triggered = true;
        if (front)
        {
            _triggered.AddFirst(pair);
        }
        else
        {
            _triggered.AddLast(pair);
        }
    }

    private void Emit(int socket, IPEndPoint destination, ReadOnlyMemory<byte> datagram, TimeSpan now, bool request)
    {
        if (request)
        {
            Stats.RequestsSent++;
        }

        if (SelectedPair is { } s && s.Socket == socket && s.Remote.EndPoint.Equals(destination))
        {
            _selectedLastSent = Max(_selectedLastSent, now);
        }

        _transmits.Enqueue(new IceTransmit(socket, destination, datagram));
    }

    private void OnTimedOut(CheckTransaction check)
    {
        Stats.TimedOut++;
        var pair = check.Pair;
        if (check.Kind != CheckKind.Connectivity)
        {
            return;
        }

        if (ReferenceEquals(_nominating, pair) && check.UseCandidate)
        {
            _nominating = null;
            if (pair.ValidPair is { } v && !v.Nominated)
            {
                Invalidate(v);
            }
        }

        if (pair.CurrentCheck == check.Id)
        {
            pair.CurrentCheck = default;
            if (pair.State == IceCandidatePairState.InProgress)
            {
                SetPairState(pair, IceCandidatePairState.Failed);
            }
        }
    }

    private void Invalidate(IceCandidatePair valid)
    {
        valid.IsValid = false;
        _valid.Remove(valid);
        _validIndex.Remove((valid.Local, valid.Remote));
        if (valid.Generator is { } g && g.State == IceCandidatePairState.Succeeded)
        {
            SetPairState(g, IceCandidatePairState.Failed);
            g.ValidPair = null;
        }
    }

    // ---------------------------------------------------------------- nomination and selection

    private void EvaluateNomination(TimeSpan now)
    {
        _nominateAt = TimeSpan.MaxValue;
        if (Role != IceRole.Controlling || _options.Nomination != IceNomination.Regular || _nominating is not null ||
            State is not (IceAgentState.Checking or IceAgentState.Connected) || _remoteKey is null)
        {
            return;
        }

        IceCandidatePair? best = null;
        foreach (var v in _valid)
        {
            if (v.IsValid && !v.Nominated && !v.ConsentLost && (best is null || v.Priority > best.Priority))
            {
                best = v;
            }
        }

        if (best is null || (SelectedPair is { } selected && best.Priority <= selected.Priority))
        {
            return;
        }

        if (SelectedPair is null)
        {
            var higherPending = false;
            foreach (var pair in _checkList)
            {
                if (pair.Priority <= best.Priority)
                {
                    break;
                }

                if (pair.State is IceCandidatePairState.Frozen or IceCandidatePairState.Waiting
                    or IceCandidatePairState.InProgress)
                {
                    higherPending = true;
                    break;
                }
            }

            var at = _checksStartedAt + NominationWait(best);
            if (higherPending && now < at)
            {
                _nominateAt = at;
                return;
            }
        }

        var generator = best.Generator ?? best;
        generator.NominateOnSend = true;
        _nominating = generator;
        EnqueueTriggered(generator, front: true);
    }

    private TimeSpan NominationWait(IceCandidatePair pair)
    {
        if (pair.IsRelayed)
        {
            return _options.NominateRelayedAfter;
        }

        return pair.Local.Type == IceCandidateType.Host && pair.Remote.Type == IceCandidateType.Host
            ? _options.NominateHostAfter
            : _options.NominateReflexiveAfter;
    }

    private void UpdateSelected(TimeSpan now, IceSelectionReason reason)
    {
        IceCandidatePair? best = null;
        foreach (var v in _valid)
        {
            if (v.IsValid && v.Nominated && !v.ConsentLost && (best is null || v.Priority > best.Priority))
            {
                best = v;
            }
        }

        if (ReferenceEquals(best, SelectedPair))
        {
            return;
        }

        var previous = SelectedPair;
        SelectedPair = best;
        if (best is not null)
        {
            _selectedAt = now;
            if (_connectedAt == TimeSpan.MinValue)
            {
                _connectedAt = now;
            }

            _selectedLastSent = now;
            _nextConsentAt = _options.ConsentInterval > TimeSpan.Zero ? now + ConsentJitter() : TimeSpan.MaxValue;
            _nextUpgradeAt = best.IsRelayed && _options.UpgradeInterval > TimeSpan.Zero
                ? now + _options.UpgradeInterval
                : TimeSpan.MaxValue;
            if (reason == IceSelectionReason.Nominated && previous is not null)
            {
                reason = IceSelectionReason.Upgraded;
            }
        }
        else
        {
            _nextConsentAt = TimeSpan.MaxValue;
            _nextUpgradeAt = TimeSpan.MaxValue;
        }

        _events.Enqueue(new IceSelectedPairChanged(best, previous, reason));
        if (best is not null)
        {
            SetAgentState(IceAgentState.Connected);
        }
    }

    private void CheckFailure()
    {
        if (State != IceAgentState.Checking || !_endOfCandidates || SelectedPair is not null || _triggered.Count > 0 ||
            _waiting + _frozen + _inProgress > 0)
        {
            return;
        }

        foreach (var v in _valid)
        {
            if (v.IsValid && !v.ConsentLost)
            {
                return;
            }
        }

        SetAgentState(IceAgentState.Failed);
    }

    // ---------------------------------------------------------------- helpers

    private StunTransactionId NewTransactionId()
    {
        Span<byte> b = stackalloc byte[StunTransactionId.Size];
        Fill(b);
        return StunTransactionId.Read(b);
    }

    private void Fill(Span<byte> bytes)
    {
        if (_random is null)
        {
            RandomNumberGenerator.Fill(bytes);
        }
        else
        {
            _random.NextBytes(bytes);
        }
    }

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    private sealed record LocalEntry(IceCandidate Candidate, int Socket, IceCandidate Base);

    private enum CheckKind
    {
        Connectivity,
        Consent,
    }

    private sealed record CheckTransaction(StunTransactionId Id, IceCandidatePair Pair, CheckKind Kind,
        bool UseCandidate, IceRole Role, uint Priority);

    private struct FoundationCount
    {
        public int Waiting;
        public int InProgress;
        public int Succeeded;
    }
}
