using System.Buffers.Binary;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using NatKit.Net;
using NatKit.Stun;
using NatKit.Stun.Transactions;
using NatKit.Stun.Server;
using NatKit.Traversal.Identity;

namespace NatKit.Traversal.Rendezvous;

/// <summary>
/// The rendezvous service's pure core (the <see cref="StunRequestHandler"/> model): a datagram, its source and the
/// clock in; the reply and the actions (sends to other nodes, shared-registry writes, messages to other instances)
/// out. No socket, no thread, no exception for any input. Not thread-safe: the edge serializes calls.
/// <para>
/// Order of checks on a request, cheapest first, so a flood costs little: the per-address rate limit; the STUN
/// framing; the NONCE (an HMAC: proves the source receives what is sent to it, so the limits per address bind); the
/// attributes and their sizes; the key's hash against NODE-ID; the TIMESTAMP window and the replay check; the room
/// left (per address, in total); and only then the signature.
/// </para>
/// </summary>
public sealed class RendezvousHandler
{
    /// <summary>Largest reply the handler writes.</summary>
    public const int MaxReplyLength = 1280;

    private const int RoomForRequest = RendezvousLimits.MaxMessageLength + 160;

    private static readonly TimeSpan SweepInterval = TimeSpan.FromSeconds(1);

    private readonly RendezvousServerOptions _options;
    private readonly TimeProvider _time;
    private readonly long _origin;
    private readonly RendezvousRegistry _registry;
    private readonly SourceRateLimiter _limiter;
    private readonly StunNonces _nonces;
    private readonly StunRequestHandler _stun;
    private readonly Dictionary<ulong, InitiatorSide> _initiators = [];
    private readonly Dictionary<ulong, TargetSide> _targets = [];
    private readonly StunTransactionTable _transactions;
    private readonly StunRetransmitPolicy _policy;
    private readonly List<StunTransactionDue> _due = [];
    private readonly PriorityQueue<Side, TimeSpan> _wakeups = new();
    private readonly byte[] _instanceBytes;
    private TimeSpan _nextSweep;

    /// <param name="options">Validated options.</param>
    /// <param name="localEndPoint">The service's socket address (what Binding responses would advertise).</param>
    /// <param name="time">The clock: wall time for TIMESTAMPs and nonces, monotonic time for lifetimes and RTTs.</param>
    /// <param name="instance">This instance's id on the shared registry's bus.</param>
    public RendezvousHandler(RendezvousServerOptions options, IPEndPoint localEndPoint, TimeProvider time,
        string? instance = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(localEndPoint);
        options.Validate();
        _options = options;
        _time = time ?? throw new ArgumentNullException(nameof(time));
        _origin = time.GetTimestamp();
        Instance = instance ?? Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
        _instanceBytes = Encoding.UTF8.GetBytes(Instance);
        if (_instanceBytes.Length is 0 or > 128)
        {
            throw new ArgumentException("instance: 1 to 128 bytes of UTF-8", nameof(instance));
        }
        _registry = new RendezvousRegistry(options.MaxRegistrations, options.MaxRegistrationsPerAddress);
        _limiter = new SourceRateLimiter(options.RequestsPerSecondPerAddress, options.RateLimitTableSize, time);
        _nonces = new StunNonces(time, options.NonceLifetime);
        // Binding goes to STUN's own handler; this handler has rate-limited already.
        _stun = new StunRequestHandler(
            new StunServerOptions { Primary = localEndPoint, RateLimitPerSecond = 0, Software = options.Software },
            [localEndPoint], time, Metrics.Stun);
        _transactions = new StunTransactionTable(Math.Min(options.MaxPendingConnections + 16, 1 << 20));
        _policy = StunRetransmitPolicy.Udp(options.InitialRto, options.RequestCount, lastWaitMultiplier: 4);
        _nextSweep = SweepInterval;
    }

    /// <summary>This instance's id on the shared registry's bus.</summary>
    public string Instance { get; }

    public RendezvousMetrics Metrics { get; } = new();

    /// <summary>Registrations held (live, and removed ones remembered against replays).</summary>
    public int Registrations => _registry.Count;

    /// <summary>Source addresses that hold registrations.</summary>
    public int RegisteredAddresses => _registry.Addresses;

    /// <summary>Connection attempts in progress (each side counted where it is held).</summary>
    public int PendingConnections => _initiators.Count + _targets.Count;

    /// <summary>Connection attempts in progress, each counted once (on one instance an attempt is both an initiator
    /// side and a target side of <see cref="PendingConnections"/>).</summary>
    public int ConnectionAttempts
    {
        get
        {
            var n = _initiators.Count;
            foreach (var cid in _targets.Keys)
            {
                n += _initiators.ContainsKey(cid) ? 0 : 1;
            }

            return n;
        }
    }

    /// <summary>While draining, a new connection attempt (a Connect here, or one relayed from another instance) is
    /// refused with 508 Insufficient Capacity, so the node tries another service; attempts in progress, registrations
    /// and lookups go on as before.</summary>
    public bool Draining { get; set; }

    /// <summary>The service's own requests waiting for an answer.</summary>
    public int OutstandingRequests => _transactions.Count;

    private TimeSpan Now => _time.GetElapsedTime(_origin);

    private long UnixMs => _time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>When <see cref="Poll"/> next has work (monotonic, the handler's own origin): retransmissions,
    /// timeouts, expiry.</summary>
    public TimeSpan NextDeadline
    {
        get
        {
            var next = _transactions.NextDeadline < _nextSweep ? _transactions.NextDeadline : _nextSweep;
            while (_wakeups.TryPeek(out var side, out var at))
            {
                if (side.Done || at != side.WakeAt)
                {
                    _wakeups.Dequeue();
                    continue;
                }

                return at < next ? at : next;
            }

            return next;
        }
    }

    /// <summary>The time from now until <see cref="NextDeadline"/>.</summary>
    public TimeSpan DueIn
    {
        get
        {
            var d = NextDeadline - Now;
            return d < TimeSpan.Zero ? TimeSpan.Zero : d;
        }
    }

    /// <summary>
    /// Handles one datagram from <paramref name="source"/>. Writes any reply to <paramref name="reply"/> (at least
    /// <see cref="MaxReplyLength"/> bytes) and appends other actions to <paramref name="outputs"/>.
    /// </summary>
    /// <param name="datagram">The datagram as received.</param>
    /// <param name="source">Where it came from.</param>
    /// <param name="reply">Room for the reply.</param>
    /// <param name="outputs">Actions other than the reply.</param>
    /// <param name="remote">The shared registry's answer, when this is the second call for a datagram whose first
    /// call asked for a lookup (the rate limit is not charged twice).</param>
    public RendezvousVerdict Handle(ReadOnlySpan<byte> datagram, IPEndPoint source, Span<byte> reply,
        ICollection<RendezvousOutput> outputs, RemoteLookup remote = default)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(outputs);
        if (reply.Length < MaxReplyLength)
        {
            throw new ArgumentException($"the reply buffer needs {MaxReplyLength} bytes", nameof(reply));
        }

        Metrics.Datagrams++;
        if (!remote.Done && !_limiter.TryAcquire(source))
        {
            Metrics.RateLimited++;
            return default;
        }

        if (!StunMessageReader.TryParse(datagram, out var msg))
        {
            Metrics.Malformed++;
            return default;
        }

        if (msg.Method == StunMethods.Binding)
        {
            return new RendezvousVerdict(_stun.Handle(datagram, source, 0, StunTransport.Udp, reply).Length);
        }

        if (msg.HasFingerprint && !msg.IsFingerprintValid())
        {
            Metrics.Malformed++;
            return default;
        }

        switch (msg.Class)
        {
            case StunClass.SuccessResponse:
            case StunClass.ErrorResponse:
                OnResponse(datagram, msg, source, outputs);
                return default;
            case StunClass.Indication:
                Metrics.Malformed++;
                return default;
        }

        if (datagram.Length > RendezvousLimits.MaxMessageLength || !RendezvousMethods.IsNodeRequest(msg.Method))
        {
            return Error(msg, RendezvousErrors.BadRequest, reply);
        }

        Span<ushort> unknown = stackalloc ushort[StunRequestHandler.MaxUnknownReported];
        var unknownCount = msg.FindUnknownComprehensionRequired(RendezvousAttributes.Registry, unknown);
        if (unknownCount > 0)
        {
            var w = ErrorWriter(msg, StunErrorCode.UnknownAttribute, reply);
            w.AddUnknownAttributes(unknown[..unknownCount]);
            return Finish(msg, ref w, StunErrorCode.UnknownAttribute);
        }

        // Return routability before anything costs more than an HMAC.
        if (!msg.TryGet(StunAttributeType.Nonce, out var nonce))
        {
            return NonceError(msg, RendezvousErrors.Unauthenticated, source, reply);
        }

        if (!_nonces.IsValid(nonce, source))
        {
            return NonceError(msg, RendezvousErrors.StaleNonce, source, reply);
        }

        return msg.Method switch
        {
            RendezvousMethods.Register => Register(msg, source, reply, outputs),
            RendezvousMethods.Lookup => Lookup(msg, reply, remote),
            RendezvousMethods.Connect => Connect(msg, source, reply, outputs, remote),
            _ => Answer(msg, source, reply, outputs),
        };
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Register

    private RendezvousVerdict Register(StunMessageReader msg, IPEndPoint source, Span<byte> reply,
        ICollection<RendezvousOutput> outputs)
    {
        if (SignedRegistration.Read(msg, out var reg) != 0)
        {
            return Refuse(msg, RendezvousErrors.BadRequest, reply);
        }

        if (!IsFresh(reg.Timestamp))
        {
            return Refuse(msg, RendezvousErrors.StaleTimestamp, reply);
        }

        var existing = _registry.Find(reg.Id);
        if (existing is not null && reg.Timestamp <= existing.Timestamp)
        {
            // The same request again from the same place: its response was lost.
            return existing.RegisterTransaction == msg.TransactionId && reg.Timestamp == existing.Timestamp &&
                   existing.Source.Equals(StunAddress.FromEndPoint(source))
                ? Registered(msg, existing.Source, existing.Granted, reply)
                : Refuse(msg, RendezvousErrors.Replayed, reply);
        }

        var from = StunAddress.FromEndPoint(source);
        var deregister = reg.Lifetime == 0;
        if (!deregister)
        {
            var room = _registry.CheckRoom(reg.Id, from);
            if (room != 0)
            {
                return Refuse(msg, room, reply);
            }
        }
        else if (existing is null)
        {
            // Nothing to remove: answer as if removed, hold nothing.
            return Registered(msg, from, TimeSpan.Zero, reply);
        }

        Metrics.SignatureChecks++;
        if (!reg.Verify(msg))
        {
            return Refuse(msg, RendezvousErrors.Forbidden, reply);
        }

        var now = Now;
        var entry = _registry.Upsert(reg.Id, from, source);
        entry.Timestamp = reg.Timestamp;
        entry.RegisterTransaction = msg.TransactionId;
        TimeSpan granted;
        if (deregister)
        {
            // Remembered (not live) until no replay of the last registration can be fresh any more.
            entry.Removed = true;
            entry.Expires = now + _options.TimestampWindow;
            granted = TimeSpan.Zero;
            Metrics.Deregistrations++;
        }
        else
        {
            granted = TimeSpan.FromSeconds(Math.Clamp(reg.Lifetime, _options.MinLifetime.TotalSeconds,
                _options.MaxLifetime.TotalSeconds));
            entry.Removed = false;
            entry.Expires = now + granted;
            entry.Attributes = RendezvousRecord.Encode(msg, from, null);
            entry.PublicKeyOffset = FindValue(entry.Attributes, RendezvousAttributes.PublicKey);
            Metrics.Registrations++;
        }

        if (_options.SharedRegistry)
        {
            outputs.Add(new RendezvousOutput(RendezvousOutputKind.Store,
                deregister ? ReadOnlyMemory<byte>.Empty : RendezvousRecord.WithInstance(entry.Attributes, Instance),
                Node: reg.Id, Lifetime: granted));
        }

        entry.Granted = granted;
        return Registered(msg, from, granted, reply);
    }

    private RendezvousVerdict Registered(StunMessageReader msg, StunAddress from, TimeSpan granted, Span<byte> reply)
    {
        var w = new StunMessageWriter(reply, msg.Method, StunClass.SuccessResponse, msg.TransactionId);
        w.AddXorAddress(StunAttributeType.XorMappedAddress, from);
        w.AddUInt32(RendezvousAttributes.Lifetime, (uint)granted.TotalSeconds);
        return Finish(msg, ref w, 0);
    }

    private static int FindValue(byte[] message, ushort type)
    {
        StunMessageReader.TryParse(message, out var r);
        foreach (var a in r.Attributes)
        {
            if (a.Type == type)
            {
                return a.Offset + StunMessageReader.AttributeHeaderLength;
            }
        }

        return 0;
    }

    private bool IsFresh(long timestamp)
    {
        // Comparisons, not a difference: a hostile timestamp near long.MinValue must not overflow.
        var now = UnixMs;
        var window = (long)_options.TimestampWindow.TotalMilliseconds;
        return timestamp >= now - window && timestamp <= now + window;
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Lookup

    private RendezvousVerdict Lookup(StunMessageReader msg, Span<byte> reply, RemoteLookup remote)
    {
        if (!msg.TryGet(RendezvousAttributes.Target, out var t) || !NodeId.TryRead(t, out var target))
        {
            return Refuse(msg, RendezvousErrors.BadRequest, reply);
        }

        Metrics.Lookups++;
        ReadOnlySpan<byte> record;
        StunAddress reflexive;
        if (_registry.TryGetLive(target, Now, out var entry))
        {
            record = entry.Attributes;
            reflexive = entry.Source;
        }
        else if (remote.Record is { } r && r.Id == target)
        {
            record = r.Message;
            reflexive = r.Reflexive;
        }
        else if (_options.SharedRegistry && !remote.Done)
        {
            return new RendezvousVerdict(0, target);
        }
        else
        {
            return Refuse(msg, RendezvousErrors.UnknownNode, reply);
        }

        StunMessageReader.TryParse(record, out var stored);
        var w = new StunMessageWriter(reply, msg.Method, StunClass.SuccessResponse, msg.TransactionId);
        RendezvousRecord.CopySigned(stored, ref w);
        w.AddXorAddress(RendezvousAttributes.PeerAddress, reflexive);
        return Finish(msg, ref w, 0);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Connect: the initiator's side

    private RendezvousVerdict Connect(StunMessageReader msg, IPEndPoint source, Span<byte> reply,
        ICollection<RendezvousOutput> outputs, RemoteLookup remote)
    {
        if (!msg.TryGetNodeId(RendezvousAttributes.NodeId, out var initiator) ||
            !msg.TryGetNodeId(RendezvousAttributes.Target, out var target) ||
            !TryReadTimestamp(msg, out var timestamp, out var timestampBytes) ||
            !msg.TryGet(RendezvousAttributes.Session, out var session) ||
            session.Length > RendezvousLimits.MaxSessionLength ||
            !msg.TryGet(RendezvousAttributes.Signature, out var signature) ||
            signature.Length != NodePublicKey.SignatureLength || initiator == target)
        {
            return Refuse(msg, RendezvousErrors.BadRequest, reply);
        }

        // The initiator must be registered here, from this very address: the answer goes back through that mapping.
        var now = Now;
        if (!_registry.TryGetLive(initiator, now, out var a) || !a.Source.Equals(StunAddress.FromEndPoint(source)))
        {
            return Refuse(msg, RendezvousErrors.Forbidden, reply);
        }

        if (!IsFresh(timestamp))
        {
            return Refuse(msg, RendezvousErrors.StaleTimestamp, reply);
        }

        if (timestamp <= a.ConnectTimestamp)
        {
            if (timestamp == a.ConnectTimestamp && msg.TransactionId == a.ConnectTransaction)
            {
                // A retransmission (the response was lost): the same connection id again.
                var again = new StunMessageWriter(reply, msg.Method, StunClass.SuccessResponse, msg.TransactionId);
                again.AddUInt64(RendezvousAttributes.ConnectionId, a.ConnectionId);
                return Finish(msg, ref again, 0);
            }

            return Refuse(msg, RendezvousErrors.Replayed, reply);
        }

        string? targetInstance;
        if (_registry.TryGetLive(target, now, out _))
        {
            targetInstance = null;
        }
        else if (remote.Record is { } r && r.Id == target)
        {
            targetInstance = r.Instance == Instance ? null : r.Instance;
        }
        else if (_options.SharedRegistry && !remote.Done)
        {
            return new RendezvousVerdict(0, target);
        }
        else
        {
            return Refuse(msg, RendezvousErrors.UnknownNode, reply);
        }

        if (a.PendingConnections >= _options.MaxPendingConnectionsPerNode)
        {
            return Refuse(msg, RendezvousErrors.QuotaReached, reply);
        }

        if (Draining || PendingConnections >= _options.MaxPendingConnections)
        {
            return Refuse(msg, RendezvousErrors.InsufficientCapacity, reply);
        }

        Span<byte> payload = stackalloc byte[RendezvousSigning.MaxPayload];
        var n = RendezvousSigning.Offer(payload, target, timestamp, session);
        Metrics.SignatureChecks++;
        if (!NodePublicKey.Verify(a.PublicKey, payload[..n], signature))
        {
            return Refuse(msg, RendezvousErrors.Forbidden, reply);
        }

        a.ConnectTimestamp = timestamp;
        a.ConnectTransaction = msg.TransactionId;
        var cid = NewConnectionId();
        a.ConnectionId = cid;
        var side = new InitiatorSide(cid, a, target, targetInstance) { Deadline = now + _options.ConnectTimeout };
        _initiators.Add(cid, side);
        a.PendingConnections++;
        Schedule(side);
        Metrics.Connects++;

        // Relay the offer to the target's instance (this one, or another through the shared registry's bus).
        Span<byte> buffer = stackalloc byte[RoomForRequest];
        var relay = RelayWriter(buffer, RelayKind.Offer, cid);
        relay.AddNodeId(RendezvousAttributes.NodeId, initiator);
        relay.Add(RendezvousAttributes.PublicKey, a.PublicKey);
        relay.AddXorAddress(RendezvousAttributes.PeerAddress, a.Source);
        relay.AddNodeId(RendezvousAttributes.Target, target);
        relay.Add(RendezvousAttributes.Timestamp, timestampBytes);
        relay.Add(RendezvousAttributes.Session, session);
        relay.Add(RendezvousAttributes.Signature, signature);
        SendRelay(targetInstance, relay.Written, outputs);

        var w = new StunMessageWriter(reply, msg.Method, StunClass.SuccessResponse, msg.TransactionId);
        w.AddUInt64(RendezvousAttributes.ConnectionId, cid);
        return Finish(msg, ref w, 0);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Answer: the target's side

    private RendezvousVerdict Answer(StunMessageReader msg, IPEndPoint source, Span<byte> reply,
        ICollection<RendezvousOutput> outputs)
    {
        if (!msg.TryGetNodeId(RendezvousAttributes.NodeId, out var answerer) ||
            !msg.TryGetUInt64(RendezvousAttributes.ConnectionId, out var cid) ||
            !TryReadTimestamp(msg, out var timestamp, out var timestampBytes) ||
            !msg.TryGet(RendezvousAttributes.Session, out var session) ||
            session.Length > RendezvousLimits.MaxSessionLength ||
            !msg.TryGet(RendezvousAttributes.Signature, out var signature) ||
            signature.Length != NodePublicKey.SignatureLength)
        {
            return Refuse(msg, RendezvousErrors.BadRequest, reply);
        }

        if (!_targets.TryGetValue(cid, out var side) || side.B.Id != answerer)
        {
            // A retransmission of an Answer whose response was lost while the Start got through (the connection's
            // state is gone by then): the same success, not 404, or the target gives up on a started connection.
            return _registry.Find(answerer) is { } known && known.AnsweredConnection == cid &&
                   known.AnswerTransaction == msg.TransactionId && known.Source.Equals(StunAddress.FromEndPoint(source))
                ? Accepted(msg, reply)
                : Refuse(msg, RendezvousErrors.UnknownNode, reply);
        }

        var b = side.B;
        if (!b.Source.Equals(StunAddress.FromEndPoint(source)))
        {
            return Refuse(msg, RendezvousErrors.Forbidden, reply);
        }

        if (side.Answered)
        {
            // The node did not get our response and asked again: same answer, nothing relayed twice.
            return Accepted(msg, reply);
        }

        if (!IsFresh(timestamp))
        {
            return Refuse(msg, RendezvousErrors.StaleTimestamp, reply);
        }

        Span<byte> payload = stackalloc byte[RendezvousSigning.MaxPayload];
        var n = RendezvousSigning.Answer(payload, side.A, cid, timestamp, session);
        Metrics.SignatureChecks++;
        if (!NodePublicKey.Verify(b.PublicKey, payload[..n], signature))
        {
            return Refuse(msg, RendezvousErrors.Forbidden, reply);
        }

        side.Answered = true;
        b.AnswerTransaction = msg.TransactionId;
        b.AnsweredConnection = cid;
        var now = Now;
        if (side.Request is not null)
        {
            // The Offer's response was lost but the answer shows it arrived: its round trip is at most this long.
            side.RoundTrip = now - side.LastSent;
            EndRequest(side);
        }

        Span<byte> buffer = stackalloc byte[RoomForRequest];
        var relay = RelayWriter(buffer, RelayKind.Answer, cid);
        relay.AddNodeId(RendezvousAttributes.NodeId, b.Id);
        relay.Add(RendezvousAttributes.PublicKey, b.PublicKey);
        relay.AddXorAddress(RendezvousAttributes.PeerAddress, b.Source);
        relay.Add(RendezvousAttributes.Timestamp, timestampBytes);
        relay.Add(RendezvousAttributes.Session, session);
        relay.Add(RendezvousAttributes.Signature, signature);
        relay.AddUInt32(RendezvousAttributes.RoundTrip, Micros(side.RoundTrip));
        SendRelay(side.Origin, relay.Written, outputs);
        return Accepted(msg, reply);
    }

    private RendezvousVerdict Accepted(StunMessageReader msg, Span<byte> reply)
    {
        var w = new StunMessageWriter(reply, msg.Method, StunClass.SuccessResponse, msg.TransactionId);
        return Finish(msg, ref w, 0);
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Messages between instances

    /// <summary>
    /// Handles a Relay message from another instance (or from this one: a connection between two nodes registered
    /// here takes the same path). Malformed or unexpected messages are dropped.
    /// </summary>
    public void HandleRelay(ReadOnlySpan<byte> message, ICollection<RendezvousOutput> outputs)
    {
        ArgumentNullException.ThrowIfNull(outputs);
        if (!StunMessageReader.TryParse(message, out var msg) || msg.Method != RendezvousMethods.Relay ||
            msg.Class != StunClass.Indication || !msg.TryGetUInt32(RendezvousAttributes.RelayKind, out var kind) ||
            !msg.TryGetUInt64(RendezvousAttributes.ConnectionId, out var cid) ||
            !msg.TryGet(RendezvousAttributes.Instance, out var from) || from.Length is 0 or > 128)
        {
            Metrics.Malformed++;
            return;
        }

        switch ((RelayKind)kind)
        {
            case RelayKind.Offer:
                RelayedOffer(msg, cid, from, outputs);
                break;
            case RelayKind.Answer:
                RelayedAnswer(msg, cid, outputs);
                break;
            case RelayKind.Start:
                RelayedStart(msg, cid, outputs);
                break;
            case RelayKind.Fail:
                RelayedFail(msg, cid, outputs);
                break;
            default:
                Metrics.Malformed++;
                break;
        }
    }

    private void RelayedOffer(StunMessageReader msg, ulong cid, ReadOnlySpan<byte> from,
        ICollection<RendezvousOutput> outputs)
    {
        var origin = from.SequenceEqual(_instanceBytes) ? null : Encoding.UTF8.GetString(from);
        if (!msg.TryGetNodeId(RendezvousAttributes.NodeId, out var initiator) ||
            !msg.TryGetNodeId(RendezvousAttributes.Target, out var target) || _targets.ContainsKey(cid))
        {
            Metrics.Malformed++;
            return;
        }

        var now = Now;
        if (!_registry.TryGetLive(target, now, out var b))
        {
            Fail(origin, cid, RendezvousErrors.UnknownNode, outputs);
            return;
        }

        if (Draining || PendingConnections >= _options.MaxPendingConnections)
        {
            Fail(origin, cid, RendezvousErrors.InsufficientCapacity, outputs);
            return;
        }

        var side = new TargetSide(cid, b, initiator, origin) { Deadline = now + _options.ConnectTimeout };
        _targets.Add(cid, side);
        b.PendingConnections++;
        Schedule(side);

        // The offer as the target sees it: who, from where, what, signed by whom.
        var (request, txid) = Forward(msg, RendezvousMethods.Offer, cid);
        StartRequest(side, request, txid, b.SourceEndPoint, RequestKind.Offer, outputs);
    }

    private void RelayedAnswer(StunMessageReader msg, ulong cid, ICollection<RendezvousOutput> outputs)
    {
        if (!_initiators.TryGetValue(cid, out var side) || side.Stage != InitiatorStage.AwaitingAnswer ||
            !msg.TryGetNodeId(RendezvousAttributes.NodeId, out var answerer) || answerer != side.Target)
        {
            return;
        }

        msg.TryGetUInt32(RendezvousAttributes.RoundTrip, out var rtt);
        side.TargetRoundTrip = TimeSpan.FromMicroseconds(rtt);
        side.Stage = InitiatorStage.AnswerSent;
        var (request, txid) = Forward(msg, RendezvousMethods.Answer, cid);
        StartRequest(side, request, txid, side.A.SourceEndPoint, RequestKind.Answer, outputs);
    }

    /// <summary>A signed session (an offer or an answer) as the other side gets it: the connection id, the sender's
    /// node id, key, timestamp, session and signature as it sent them, and the address the service saw it at.</summary>
    private static (ReadOnlyMemory<byte> Request, StunTransactionId TransactionId) Forward(StunMessageReader msg,
        ushort method, ulong cid)
    {
        var txid = StunTransactionId.NewRandom();
        var request = new byte[RoomForRequest];
        var w = new StunMessageWriter(request, method, StunClass.Request, txid);
        w.AddUInt64(RendezvousAttributes.ConnectionId, cid);
        foreach (var a in msg.Attributes)
        {
            switch (a.Type)
            {
                case RendezvousAttributes.NodeId:
                case RendezvousAttributes.PublicKey:
                case RendezvousAttributes.Timestamp:
                case RendezvousAttributes.Session:
                case RendezvousAttributes.Signature:
                    w.Add(a.Type, a.Value);
                    break;
            }
        }

        if (msg.TryGetXorAddress(RendezvousAttributes.PeerAddress, out var peer))
        {
            w.AddXorAddress(RendezvousAttributes.PeerAddress, peer);
        }

        return (request.AsMemory(0, w.Length), txid);
    }

    private void RelayedStart(StunMessageReader msg, ulong cid, ICollection<RendezvousOutput> outputs)
    {
        if (!_targets.TryGetValue(cid, out var side) || !side.Answered || side.Started ||
            !msg.TryGetUInt64(RendezvousAttributes.StartAt, out var startAt))
        {
            return;
        }

        side.Started = true;
        var delay = TimeSpan.FromMicroseconds((long)startAt - (_time.GetUtcNow().ToUnixTimeMilliseconds() * 1000)) -
                    (side.RoundTrip / 2);
        SendStart(side, side.B.SourceEndPoint, delay, side.RoundTrip, outputs);
    }

    private void RelayedFail(StunMessageReader msg, ulong cid, ICollection<RendezvousOutput> outputs)
    {
        msg.TryGetErrorCode(out var code, out _);
        if (_initiators.TryGetValue(cid, out var initiator) && initiator.Stage == InitiatorStage.AwaitingAnswer)
        {
            TellInitiatorFailed(initiator, code == 0 ? RendezvousErrors.NoAnswer : code, outputs);
        }
        else if (_targets.TryGetValue(cid, out var target))
        {
            Remove(target);
        }
    }

    private void TellInitiatorFailed(InitiatorSide side, int code, ICollection<RendezvousOutput> outputs)
    {
        side.Stage = InitiatorStage.Failed;
        Metrics.Failed++;
        var txid = StunTransactionId.NewRandom();
        var request = new byte[128];
        var w = new StunMessageWriter(request, RendezvousMethods.Answer, StunClass.Request, txid);
        w.AddUInt64(RendezvousAttributes.ConnectionId, side.Id);
        w.AddErrorCode(code, RendezvousErrors.Reason(code));
        StartRequest(side, request.AsMemory(0, w.Length), txid, side.A.SourceEndPoint, RequestKind.Failure, outputs);
    }

    private void Fail(string? instance, ulong cid, int code, ICollection<RendezvousOutput> outputs)
    {
        Span<byte> buffer = stackalloc byte[256];
        var relay = RelayWriter(buffer, RelayKind.Fail, cid);
        relay.AddErrorCode(code, RendezvousErrors.Reason(code));
        SendRelay(instance, relay.Written, outputs);
    }

    private StunMessageWriter RelayWriter(Span<byte> buffer, RelayKind kind, ulong cid)
    {
        var w = new StunMessageWriter(buffer, RendezvousMethods.Relay, StunClass.Indication, default);
        w.AddUInt32(RendezvousAttributes.RelayKind, (uint)kind);
        w.AddUInt64(RendezvousAttributes.ConnectionId, cid);
        w.AddString(RendezvousAttributes.Instance, Instance);
        return w;
    }

    private void SendRelay(string? instance, ReadOnlySpan<byte> message, ICollection<RendezvousOutput> outputs)
    {
        if (instance is null || instance == Instance)
        {
            HandleRelay(message, outputs);
        }
        else
        {
            outputs.Add(new RendezvousOutput(RendezvousOutputKind.Relay, message.ToArray(), Instance: instance));
        }
    }

    // ---------------------------------------------------------------------------------------------------------------
    // The service's own requests: Offer, Answer, Start

    private void StartRequest(Side side, ReadOnlyMemory<byte> request, StunTransactionId txid, IPEndPoint destination,
        RequestKind kind, ICollection<RendezvousOutput> outputs)
    {
        EndRequest(side);
        var now = Now;
        if (!_transactions.TryAdd(txid, request, destination, now, _policy, side))
        {
            // The table holds one request per attempt in progress and is sized for all of them.
            Remove(side);
            return;
        }

        side.Request = txid;
        side.RequestKind = kind;
        side.LastSent = now;
        outputs.Add(new RendezvousOutput(RendezvousOutputKind.Send, request, destination));
    }

    private void EndRequest(Side side)
    {
        if (side.Request is { } id)
        {
            _transactions.TryRemove(id, out _);
            side.Request = null;
        }
    }

    private void OnResponse(ReadOnlySpan<byte> datagram, StunMessageReader msg, IPEndPoint source,
        ICollection<RendezvousOutput> outputs)
    {
        // Only the node the request went to may answer it: a response from elsewhere is ignored, and the
        // transaction waits on.
        var now = Now;
        if (!_transactions.TryPeek(datagram, now, out var match) || !match.Destination.Equals(source) ||
            match.Owner is not Side side)
        {
            Metrics.UnmatchedResponses++;
            return;
        }

        var rtt = now - side.LastSent;
        EndRequest(side);
        var ok = msg.Class == StunClass.SuccessResponse;
        switch (side.RequestKind)
        {
            case RequestKind.Offer when side is TargetSide target:
                if (ok)
                {
                    target.RoundTrip = rtt;
                }
                else if (!target.Answered)
                {
                    msg.TryGetErrorCode(out var code, out _);
                    Fail(target.Origin, target.Id, code is >= 400 and < 700 ? code : RendezvousErrors.NoAnswer,
                        outputs);
                    Remove(target);
                }

                break;
            case RequestKind.Answer when side is InitiatorSide initiator:
                if (!ok)
                {
                    Remove(initiator);
                    break;
                }

                // Both round trips known: both sides start when the later one's Start lands, plus a margin.
                initiator.RoundTrip = rtt;
                var half = TimeSpan.FromTicks(Math.Max(rtt.Ticks, initiator.TargetRoundTrip.Ticks) / 2);
                var lead = half + _options.StartMargin;
                var startAt = (_time.GetUtcNow().ToUnixTimeMilliseconds() * 1000) + (long)lead.TotalMicroseconds;
                initiator.Stage = InitiatorStage.Started;
                SendStart(initiator, initiator.A.SourceEndPoint, lead - (rtt / 2), rtt, outputs);
                Span<byte> buffer = stackalloc byte[256];
                var relay = RelayWriter(buffer, RelayKind.Start, initiator.Id);
                relay.AddUInt64(RendezvousAttributes.StartAt, (ulong)startAt);
                SendRelay(initiator.TargetInstance, relay.Written, outputs);
                Metrics.Started++;
                break;
            case RequestKind.Start:
            case RequestKind.Failure:
                Remove(side);
                break;
        }
    }

    private void SendStart(Side side, IPEndPoint destination, TimeSpan delay, TimeSpan rtt,
        ICollection<RendezvousOutput> outputs)
    {
        var txid = StunTransactionId.NewRandom();
        var request = new byte[64];
        var w = new StunMessageWriter(request, RendezvousMethods.Start, StunClass.Request, txid);
        w.AddUInt64(RendezvousAttributes.ConnectionId, side.Id);
        w.AddUInt32(RendezvousAttributes.StartDelay, Micros(delay));
        w.AddUInt32(RendezvousAttributes.RoundTrip, Micros(rtt));
        StartRequest(side, request.AsMemory(0, w.Length), txid, destination, RequestKind.Start, outputs);
    }

    /// <summary>Retransmits the service's requests that are due, ends attempts that ran out of time, and drops
    /// expired registrations.</summary>
    public void Poll(ICollection<RendezvousOutput> outputs)
    {
        ArgumentNullException.ThrowIfNull(outputs);
        var now = Now;
        _due.Clear();
        _transactions.Poll(now, _due);
        foreach (var due in _due)
        {
            if (due.Owner is not Side side || side.Done)
            {
                continue;
            }

            if (due.Kind == StunTransactionDueKind.Retransmit)
            {
                side.LastSent = now;
                Metrics.Retransmissions++;
                outputs.Add(new RendezvousOutput(RendezvousOutputKind.Send, due.Request, due.Destination));
            }
            else
            {
                side.Request = null;
                RequestTimedOut(side, outputs);
            }
        }

        while (_wakeups.TryPeek(out var next, out var at) && at <= now)
        {
            _wakeups.Dequeue();
            if (next.Done || at != next.WakeAt)
            {
                continue;
            }

            next.WakeAt = TimeSpan.MaxValue;
            DeadlinePassed(next, outputs);
        }

        if (now >= _nextSweep)
        {
            Metrics.Expired += _registry.Sweep(now);
            _nextSweep = now + SweepInterval;
        }
    }

    /// <summary>The attempt took longer than <see cref="RendezvousServerOptions.ConnectTimeout"/>.</summary>
    private void DeadlinePassed(Side side, ICollection<RendezvousOutput> outputs)
    {
        switch (side)
        {
            case InitiatorSide { Stage: InitiatorStage.AwaitingAnswer } initiator:
                // Tell the initiator, with one request's time to do so.
                TellInitiatorFailed(initiator, RendezvousErrors.NoAnswer, outputs);
                initiator.Deadline = Now + _policy.Total;
                Schedule(initiator);
                return;
            case TargetSide { Answered: false } target:
                Fail(target.Origin, target.Id, RendezvousErrors.NoAnswer, outputs);
                break;
        }

        Remove(side);
    }

    /// <summary>The node did not answer the service's request.</summary>
    private void RequestTimedOut(Side side, ICollection<RendezvousOutput> outputs)
    {
        if (side is TargetSide { Answered: false } target)
        {
            Fail(target.Origin, target.Id, RendezvousErrors.NoAnswer, outputs);
        }

        Remove(side);
    }

    private void Schedule(Side side)
    {
        side.WakeAt = side.Deadline;
        _wakeups.Enqueue(side, side.Deadline);
    }

    private void Remove(Side side)
    {
        if (side.Done)
        {
            return;
        }

        side.Done = true;
        EndRequest(side);
        switch (side)
        {
            case InitiatorSide i:
                _initiators.Remove(i.Id);
                i.A.PendingConnections--;
                break;
            case TargetSide t:
                _targets.Remove(t.Id);
                t.B.PendingConnections--;
                break;
        }
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Helpers

    private static ulong NewConnectionId()
    {
        Span<byte> b = stackalloc byte[8];
        RandomNumberGenerator.Fill(b);
        return BinaryPrimitives.ReadUInt64BigEndian(b);
    }

    private static uint Micros(TimeSpan t) =>
        t <= TimeSpan.Zero ? 0 : (uint)Math.Min(uint.MaxValue, (long)t.TotalMicroseconds);

    private static bool TryReadTimestamp(StunMessageReader msg, out long timestamp, out ReadOnlySpan<byte> bytes)
    {
        timestamp = 0;
        if (!msg.TryGet(RendezvousAttributes.Timestamp, out bytes) || bytes.Length != 8)
        {
            return false;
        }

        timestamp = BinaryPrimitives.ReadInt64BigEndian(bytes);
        return true;
    }

    private RendezvousVerdict NonceError(StunMessageReader msg, int code, IPEndPoint source, Span<byte> reply)
    {
        Metrics.NonceChallenges++;
        var w = ErrorWriter(msg, code, reply);
        Span<char> nonce = stackalloc char[StunNonces.Length];
        _nonces.Make(source, nonce);
        w.AddString(StunAttributeType.Nonce, nonce);
        return Finish(msg, ref w, code);
    }

    private RendezvousVerdict Refuse(StunMessageReader msg, int code, Span<byte> reply)
    {
        Metrics.Refused(code);
        return Error(msg, code, reply);
    }

    private static RendezvousVerdict Error(StunMessageReader msg, int code, Span<byte> reply)
    {
        var w = ErrorWriter(msg, code, reply);
        return Finish(msg, ref w, code);
    }

    private static StunMessageWriter ErrorWriter(StunMessageReader msg, int code, Span<byte> reply)
    {
        var w = new StunMessageWriter(reply, msg.Method, StunClass.ErrorResponse, msg.TransactionId);
        w.AddErrorCode(code, RendezvousErrors.Reason(code));
        return w;
    }

    private static RendezvousVerdict Finish(StunMessageReader msg, ref StunMessageWriter w, int code)
    {
        _ = code;
        if (msg.HasFingerprint)
        {
            w.AddFingerprint();
        }

        return new RendezvousVerdict(w.Length);
    }

    private enum RequestKind
    {
        Offer,
        Answer,
        Failure,
        Start,
    }

    private enum InitiatorStage
    {
        AwaitingAnswer,
        AnswerSent,
        Started,
        Failed,
    }

    /// <summary>One end of a connection attempt as this instance holds it.</summary>
    private abstract class Side(ulong id)
    {
        public ulong Id { get; } = id;

        public TimeSpan Deadline { get; set; }

        public TimeSpan WakeAt { get; set; } = TimeSpan.MaxValue;

        /// <summary>The service's request to this side's node waiting for an answer.</summary>
        public StunTransactionId? Request { get; set; }

        public RequestKind RequestKind { get; set; }

        /// <summary>When the request was last sent (for the round trip of the send that was answered).</summary>
        public TimeSpan LastSent { get; set; }

        public bool Done { get; set; }

        /// <summary>This instance's measured round trip to its node.</summary>
        public TimeSpan RoundTrip { get; set; }
    }

    /// <summary>The initiator's end: held where the initiator is registered.</summary>
    private sealed class InitiatorSide(ulong id, RegistryEntry a, NodeId target, string? targetInstance) : Side(id)
    {
        public RegistryEntry A { get; } = a;

        public NodeId Target { get; } = target;

        public string? TargetInstance { get; } = targetInstance;

        public InitiatorStage Stage { get; set; }

        public TimeSpan TargetRoundTrip { get; set; }
    }

    /// <summary>The target's end: held where the target is registered.</summary>
    private sealed class TargetSide(ulong id, RegistryEntry b, NodeId a, string? origin) : Side(id)
    {
        public RegistryEntry B { get; } = b;

        public NodeId A { get; } = a;

        public string? Origin { get; } = origin;

        public bool Answered { get; set; }

        public bool Started { get; set; }
    }
}
