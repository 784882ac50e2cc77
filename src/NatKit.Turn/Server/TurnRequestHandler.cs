using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging;
using NatKit.Net;
using NatKit.Stun;
using NatKit.Stun.Server;
using NatKit.Turn.Auth;
using NatKit.Turn.Policy;
using NatKit.Turn.Protocol;

namespace NatKit.Turn.Server;

/// <summary>What the server's edge must do with a handled message.</summary>
internal enum TurnAction
{
    /// <summary>Send <see cref="TurnAnswer.Response"/> to the client, if there is one (none: dropped).</summary>
    Answer,

    /// <summary>A Send indication that passed every check: send its DATA (<see cref="TurnAnswer.Offset"/>,
    /// <see cref="TurnAnswer.Length"/> of the message) from the allocation's relay to <see cref="TurnAnswer.Peer"/>.</summary>
    SendToPeer,

    /// <summary>An admitted Allocate: bind the relay ports <see cref="TurnAnswer.Pending"/> asks for, then call
    /// <see cref="TurnRequestHandler.CompleteAllocate"/> (or <see cref="TurnRequestHandler.AbandonAllocate"/>) for
    /// the answer.</summary>
    OpenRelay,

    /// <summary>The allocation is deleted (Refresh with lifetime 0): take it out of the 5-tuple table and close its
    /// relays, send the answer, then call <see cref="TurnRequestHandler.AnswerSent"/>.</summary>
    CloseRelay,
}

/// <summary>The handler's answer to one message from a client: the bytes to send back (if any) and what the edge
/// must do.</summary>
internal readonly record struct TurnAnswer(TurnAction Action, byte[]? Response, Allocation? Allocation = null,
    PendingAllocation? Pending = null, IPEndPoint? Peer = null, int Offset = 0, int Length = 0)
{
    public static TurnAnswer Drop => default;
}

/// <summary>An Allocate admitted by the quotas whose relay sockets the edge is binding: the ports to take (a
/// reservation's, or fresh ones of <see cref="Family"/>), and the allocation that will own them.</summary>
internal sealed class PendingAllocation(TurnRequest request, Allocation allocation, Reservation? claimed)
{
    internal TurnRequest Request { get; } = request;

    public Allocation Allocation { get; } = allocation;

    /// <summary>The reservation whose port this allocation binds (its RESERVATION-TOKEN), or null.</summary>
    public Reservation? Claimed { get; } = claimed;

    public byte Family => Request.Family;

    public bool EvenPort => Request.EvenPort;

    /// <summary>EVEN-PORT's R bit: keep the next port back for a later allocation.</summary>
    public bool ReservePair => Request.ReservePair;

    /// <summary>ADDITIONAL-ADDRESS-FAMILY: an IPv6 relay too, if one can be had.</summary>
    public bool Additional => Request.Additional;
}

/// <summary>
/// The TURN server's protocol core (RFC 8656), shaped like <see cref="StunRequestHandler"/>: a message from a
/// client (with its side of the 5-tuple and its allocation, if it has one) in; an answer and an action out. It
/// authenticates (long-term credentials or REST secret, stateless expiring nonces, the unauthenticated rate),
/// validates, applies the quotas (<see cref="AllocationLedger"/>), the peer policy, permissions and channels
/// (<see cref="PeerBindings"/>), and plans Send indications. It never touches a socket: binding relays, sending
/// and the 5-tuple table are the edge's (<see cref="TurnServer"/>). Time comes from the injected clock.
/// </summary>
internal sealed class TurnRequestHandler
{
    private static readonly StunPasswordAlgorithm[] Algorithms = [StunPasswordAlgorithm.Sha256, StunPasswordAlgorithm.Md5];

    private readonly TurnServerOptions _options;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly NonceIssuer _nonces;
    private readonly SourceRateLimiter? _unauthenticated;
    private readonly byte[]? _secret;
    private readonly StunAttributeRegistry _registry;
    private readonly StunAddress _externalV4;
    private PeerPolicy _policy;
    private IReadOnlyDictionary<string, string> _users;

    public TurnRequestHandler(TurnServerOptions options, TimeProvider time, TurnMetrics metrics, ILogger logger)
    {
        _options = options;
        _time = time;
        Metrics = metrics;
        _logger = logger;
        _nonces = new NonceIssuer(options.NonceLifetime);
        _unauthenticated = options.UnauthenticatedRequestsPerSecond > 0
            ? new SourceRateLimiter(options.UnauthenticatedRequestsPerSecond, 65536, time)
            : null;
        _secret = options.SharedSecret is null ? null : Encoding.UTF8.GetBytes(options.SharedSecret);
        _registry = TurnRegistry.Attributes;
        _externalV4 = StunAddress.FromAddress(options.ExternalAddress ?? options.RelayAddress, 0);
        _policy = options.Policy;
        _users = options.Users;
        Ledger = new AllocationLedger(options);
    }

    public TurnMetrics Metrics { get; }

    /// <summary>Quotas, ports, reservations, deadlines and the drain.</summary>
    public AllocationLedger Ledger { get; }

    /// <summary>The peer policy in force (the edge adds the server's own endpoints once it has bound them).</summary>
    public PeerPolicy Policy
    {
        get => Volatile.Read(ref _policy);
        set => Volatile.Write(ref _policy, value);
    }

    public IReadOnlyDictionary<string, string> Users
    {
        get => Volatile.Read(ref _users);
        set => Volatile.Write(ref _users, value);
    }

    /// <summary>One STUN message from a client (ChannelData is the edge's data path). <paramref name="allocation"/>
    /// is the allocation of the client's 5-tuple, if it has one.</summary>
    public TurnAnswer Handle(ReadOnlySpan<byte> data, ClientLink link, Allocation? allocation)
    {
        var request = Inspect(data, link, allocation, out var send);
        if (send.Peer is not null)
        {
            return new TurnAnswer(TurnAction.SendToPeer, null, allocation, Peer: send.Peer, Offset: send.Offset,
                Length: send.Length);
        }

        if (request is null)
        {
            return TurnAnswer.Drop;
        }

        if (request.Error == 0 && request.Method == TurnMethods.Allocate && allocation is null)
        {
            return Admit(request, link);
        }

        if (request.Method == TurnMethods.Refresh && request.Error == 0 && request.Lifetime == TimeSpan.Zero)
        {
            return new TurnAnswer(TurnAction.CloseRelay, request.Response, allocation);
        }

        return new TurnAnswer(TurnAction.Answer, request.Response, allocation);
    }

    /// <summary>After the answer of a <see cref="TurnAction.CloseRelay"/> is sent: a drain may end now (the
    /// client has heard its allocation is deleted).</summary>
    public void AnswerSent() => Ledger.SignalDrainedIfEmpty();

    /// <summary>Everything that needs no await: parse, authenticate, and answer every request except a new
    /// Allocate (which binds sockets).</summary>
    private TurnRequest? Inspect(ReadOnlySpan<byte> data, ClientLink link, Allocation? allocation, out SendPlan send)
    {
        send = default;
        // The STUN server's validation, step by step: screen (parse, FINGERPRINT), credentials, then 420.
        switch (StunRequestValidation.Screen(data, out var r))
        {
            case StunScreen.Malformed:
                Metrics.Dropped(DropReason.Malformed);
                return null;
            case StunScreen.BadFingerprint:
                Metrics.Dropped(DropReason.Fingerprint); // RFC 8489 section 7.3: discard, whatever it is
                return null;
        }

        link.MessageReceived(); // only whole, valid messages keep a stream connection alive

        if (r.Class == StunClass.Indication)
        {
            if (r.Method == TurnMethods.Send && allocation is not null)
            {
                send = PlanSend(r, allocation);
            }

            return null;
        }

        if (r.Class != StunClass.Request)
        {
            return null;
        }

        var request = new TurnRequest(r.Method, r.TransactionId, r.HasFingerprint, link.Remote.Address);

        // A TURN server is also a STUN server (RFC 8656 section 2.5): Binding needs no credentials.
        var binding = r.Method == StunMethods.Binding;
        if (!binding)
        {
            if (r.Method is not (TurnMethods.Allocate or TurnMethods.Refresh or TurnMethods.CreatePermission
                or TurnMethods.ChannelBind))
            {
                return Fail(request, StunErrorCode.BadRequest, null);
            }

            var auth = Authenticate(r, link.Remote, request);
            if (auth != 0)
            {
                if (auth < 0)
                {
                    Metrics.Dropped(DropReason.RateLimited);
                    return null; // over the unauthenticated rate: no answer at all
                }

                return Fail(request, auth, null);
            }
        }

        Span<ushort> unknown = stackalloc ushort[8];
        var unknownCount = StunRequestValidation.FindUnknown(r, _registry, unknown);
        if (unknownCount > 0)
        {
            request.Unknown = unknown[..unknownCount].ToArray();
            return Fail(request, StunErrorCode.UnknownAttribute, request.Key);
        }

        if (binding)
        {
            request.Response = Respond(request, null, (ref StunMessageWriter w, TurnRequest q) =>
                w.AddXorAddress(StunAttributeType.XorMappedAddress, StunAddress.FromEndPoint(link.Remote)),
                sign: false);
            return request;
        }

        if (r.Method == TurnMethods.Allocate)
        {
            if (allocation is not null)
            {
                if (allocation.AllocateTransaction == request.TransactionId && allocation.AllocateResponse is not null)
                {
                    request.Response = allocation.AllocateResponse; // a retransmission: the same answer
                    return request;
                }

                return Fail(request, StunErrorCode.AllocationMismatch, request.Key);
            }

            return ParseAllocate(r, request);
        }

        if (allocation is null)
        {
            return Fail(request, StunErrorCode.AllocationMismatch, request.Key);
        }

        if (!string.Equals(allocation.Username, request.Username, StringComparison.Ordinal))
        {
            return Fail(request, StunErrorCode.WrongCredentials, request.Key);
        }

        return r.Method switch
        {
            TurnMethods.Refresh => Refresh(r, request, allocation),
            TurnMethods.CreatePermission => CreatePermission(r, request, allocation),
            _ => ChannelBind(r, request, allocation),
        };
    }

    // ---------------------------------------------------------------- authentication

    /// <summary>Long-term credentials (RFC 8489 section 9.2.4) with our stateless nonces. Returns 0 when the
    /// request is authenticated (and fills the request's user and key), an error code to answer with, or -1 to
    /// drop the request (over the unauthenticated rate limit).</summary>
    private int Authenticate(StunMessageReader r, IPEndPoint client, TurnRequest request)
    {
        if (!r.HasMessageIntegrity && !r.HasMessageIntegritySha256)
        {
            TurnLog.Challenged(_logger, client, "no credentials yet");
            return Admit(client) ? StunErrorCode.Unauthenticated : -1;
        }

        if (!r.TryGet(StunAttributeType.Username, out var username) || !r.TryGet(StunAttributeType.Realm, out _) ||
            !r.TryGet(StunAttributeType.Nonce, out var nonce))
        {
            return Admit(client) ? StunErrorCode.BadRequest : -1;
        }

        var now = _time.GetUtcNow();
        if (_nonces.Check(nonce, client.Address, now) != NonceStatus.Valid)
        {
            TurnLog.Challenged(_logger, client, "stale or foreign nonce");
            return Admit(client) ? StunErrorCode.StaleNonce : -1;
        }

        // RFC 8489 section 9.2.4: PASSWORD-ALGORITHM and PASSWORD-ALGORITHMS come together or not at all, the
        // list must be the one we sent, and the choice one of its entries.
        var algorithm = StunPasswordAlgorithm.Md5;
        var hasAlgorithm = r.TryGetPasswordAlgorithm(out var chosen);
        var hasList = r.TryGet(StunAttributeType.PasswordAlgorithms, out var list);
        if (hasAlgorithm != hasList)
        {
            return StunErrorCode.BadRequest;
        }

        if (hasAlgorithm)
        {
            if (!list.SequenceEqual(AlgorithmsValue) || chosen is not (StunPasswordAlgorithm.Md5 or StunPasswordAlgorithm.Sha256))
            {
                return StunErrorCode.BadRequest;
            }

            algorithm = chosen;
        }

        var name = Encoding.UTF8.GetString(username);
        var password = PasswordFor(name, now);
        if (password is null)
        {
            TurnLog.AuthenticationFailed(_logger, client, "unknown or expired user", name);
            return Admit(client) ? StunErrorCode.Unauthenticated : -1;
        }

        var key = StunCredentials.LongTermKey(name, _options.Realm, password, algorithm);
        var ok = r.HasMessageIntegritySha256 ? r.VerifyMessageIntegritySha256(key) : r.VerifyMessageIntegrity(key);
        if (!ok)
        {
            TurnLog.AuthenticationFailed(_logger, client, "wrong password (MESSAGE-INTEGRITY does not match)", name);
            return Admit(client) ? StunErrorCode.Unauthenticated : -1;
        }

        request.Username = name;
        request.Key = key;
        request.Sha256 = r.HasMessageIntegritySha256;
        request.Algorithm = algorithm;
        return 0;
    }

    /// <summary>Counts a request that carried no valid credentials against its source's rate.</summary>
    private bool Admit(IPEndPoint client) => _unauthenticated?.TryAcquire(client) ?? true;

    private static readonly byte[] AlgorithmsValue = BuildAlgorithmsValue();

    private static byte[] BuildAlgorithmsValue()
    {
        var v = new byte[Algorithms.Length * 4];
        for (var i = 0; i < Algorithms.Length; i++)
        {
            BinaryPrimitives.WriteUInt16BigEndian(v.AsSpan(i * 4), (ushort)Algorithms[i]);
        }

        return v;
    }

    private string? PasswordFor(string username, DateTimeOffset now)
    {
        if (Users.TryGetValue(username, out var password))
        {
            return password;
        }

        if (_secret is not null && RestCredentials.IsCurrent(username, now))
        {
            return RestCredentials.Password(_secret, username);
        }

        return null;
    }

    // ---------------------------------------------------------------- Allocate

    private TurnRequest ParseAllocate(StunMessageReader r, TurnRequest request)
    {
        if (!r.TryGet(TurnAttributeType.RequestedTransport, out var transport) || transport.Length != 4)
        {
            return Fail(request, StunErrorCode.BadRequest, request.Key);
        }

        if (transport[0] != TurnLimits.TransportUdp)
        {
            return Fail(request, StunErrorCode.UnsupportedTransportProtocol, request.Key);
        }

        var hasToken = r.TryGet(TurnAttributeType.ReservationToken, out var token);
        var hasEven = r.TryGet(TurnAttributeType.EvenPort, out var even);
        var hasFamily = r.TryGet(TurnAttributeType.RequestedAddressFamily, out var family);
        var hasAdditional = r.TryGet(TurnAttributeType.AdditionalAddressFamily, out var additional);
        if ((hasToken && (hasEven || hasFamily || hasAdditional)) || (hasFamily && hasAdditional) ||
            (hasToken && token.Length != 8) || (hasEven && even.Length < 1) ||
            (hasFamily && family.Length != 4) || (hasAdditional && (additional.Length != 4 ||
                                                                   additional[0] != StunAddress.FamilyIPv6)))
        {
            return Fail(request, StunErrorCode.BadRequest, request.Key);
        }

        request.Family = hasFamily ? family[0] : StunAddress.FamilyIPv4;
        if (request.Family is not (StunAddress.FamilyIPv4 or StunAddress.FamilyIPv6) ||
            (request.Family == StunAddress.FamilyIPv6 && !Ledger.HasV6))
        {
            return Fail(request, StunErrorCode.AddressFamilyNotSupported, request.Key);
        }

        request.Additional = hasAdditional;
        request.EvenPort = hasEven;
        request.ReservePair = hasEven && (even[0] & 0x80) != 0;
        request.Token = hasToken ? BinaryPrimitives.ReadUInt64BigEndian(token) : null;
        request.Lifetime = LifetimeFor(r);
        request.DontFragment = r.Contains(TurnAttributeType.DontFragment);
        return request;
    }

    /// <summary>RFC 8656 section 7.2: the requested lifetime, at least the default and at most the cap.</summary>
    private TimeSpan LifetimeFor(StunMessageReader r)
    {
        if (!r.TryGetUInt32(TurnAttributeType.Lifetime, out var seconds))
        {
            return _options.DefaultLifetime;
        }

        var requested = TimeSpan.FromSeconds(seconds);
        if (requested < _options.DefaultLifetime)
        {
            return _options.DefaultLifetime;
        }

        return requested > _options.MaxLifetime ? _options.MaxLifetime : requested;
    }

    // ---------------------------------------------------------------- Allocate: admit, then complete

    /// <summary>Quotas (486 per user, 508 in all or while draining, 508 for an unknown token); when admitted, the
    /// allocation to be, for the edge to bind its relays.</summary>
    private TurnAnswer Admit(TurnRequest request, ClientLink link)
    {
        var code = Ledger.TryAdmit(request.Username!, request.ReservePair, request.Token, out var claimed);
        if (code != 0)
        {
            Fail(request, code, request.Key);
            return new TurnAnswer(TurnAction.Answer, request.Response);
        }

        var now = _time.GetTimestamp();
        var allocation = new Allocation(link, request.Username!, request.Key!, request.Algorithm,
            new PeerBindings(_options.MaxPermissionsPerAllocation, _options.MaxChannelsPerAllocation),
            new TokenBucket(_options.BandwidthBytesPerSecond, _options.BandwidthBytesPerSecond,
                _time.TimestampFrequency, now))
        {
            AllocateTransaction = request.TransactionId,
            Expires = now + Ticks(request.Lifetime),
            ReservationSlotPending = request.ReservePair,
        };

        if (claimed is not null)
        {
            // The claimed port is this allocation's from now: released with it if anything fails.
            if (claimed.Family == StunAddress.FamilyIPv6)
            {
                allocation.RelayPortV6 = claimed.Port;
            }
            else
            {
                allocation.RelayPortV4 = claimed.Port;
            }
        }

        return new TurnAnswer(TurnAction.OpenRelay, null, allocation, new PendingAllocation(request, allocation, claimed));
    }

    /// <summary>The edge has bound the relays (the ports are on the allocation, <paramref name="pairPort"/> kept
    /// back for EVEN-PORT's R bit or 0, held by <paramref name="pairHold"/> until claimed; <paramref name="v6Failed"/>:
    /// the additional IPv6 relay could not be had): the allocation is live from now, and this is the success
    /// response to send.</summary>
    public byte[] CompleteAllocate(PendingAllocation pending, int pairPort, bool v6Failed, IDatagramSocket? pairHold = null)
    {
        var request = pending.Request;
        var allocation = pending.Allocation;
        var link = allocation.Client;
        if (allocation.RelayPortV4 != 0)
        {
            allocation.RelayedV4 = _externalV4.WithPort((ushort)allocation.RelayPortV4);
        }

        if (allocation.RelayPortV6 != 0)
        {
            allocation.RelayedV6 = StunAddress.FromAddress(_options.RelayAddressV6!, (ushort)allocation.RelayPortV6);
        }

        ulong? newToken = null;
        if (pairPort != 0)
        {
            newToken = BinaryPrimitives.ReadUInt64BigEndian(RandomNumberGenerator.GetBytes(8));
            Ledger.Reserve(new Reservation(newToken.Value, request.Family, pairPort, allocation.Username, allocation)
            {
                Hold = pairHold,
            }, _time.GetTimestamp() + Ticks(TurnLimits.ReservationLifetime));
        }

        request.Response = Respond(request, request.Key, (ref StunMessageWriter w, TurnRequest q) =>
        {
            if (allocation.RelayPortV4 != 0)
            {
                w.AddXorAddress(TurnAttributeType.XorRelayedAddress, allocation.RelayedV4);
            }

            if (allocation.RelayPortV6 != 0)
            {
                w.AddXorAddress(TurnAttributeType.XorRelayedAddress, allocation.RelayedV6);
            }

            if (v6Failed)
            {
                // RFC 8656 section 18.13: ADDRESS-ERROR-CODE for the family that could not be relayed.
                var reason = "Insufficient Capacity"u8;
                var v = w.Reserve(TurnAttributeType.AddressErrorCode, 4 + reason.Length);
                v[0] = StunAddress.FamilyIPv6;
                v[1] = 0;
                v[2] = 5;
                v[3] = 8;
                reason.CopyTo(v[4..]);
            }

            w.AddUInt32(TurnAttributeType.Lifetime, (uint)q.Lifetime.TotalSeconds);
            if (newToken is { } t)
            {
                BinaryPrimitives.WriteUInt64BigEndian(w.Reserve(TurnAttributeType.ReservationToken, 8), t);
            }

            w.AddXorAddress(StunAttributeType.XorMappedAddress, StunAddress.FromEndPoint(link.Remote));
        });
        allocation.AllocateResponse = request.Response;
        Ledger.Track(allocation);
        allocation.CreatedAt = _time.GetTimestamp();
        Metrics.AllocationCreated();
        TurnLog.AllocationCreated(_logger, allocation.Username, link.Remote, link.IsStream ? "tcp/tls" : "udp",
            allocation.RelayPortV4 == 0 ? "-" : allocation.RelayedV4.ToString(),
            allocation.RelayPortV6 == 0 ? "-" : allocation.RelayedV6.ToString(), request.Lifetime.TotalSeconds);
        return request.Response;
    }

    /// <summary>The edge could not bind a relay: the allocation's holdings go back, and this is the 508 to send.</summary>
    public byte[] AbandonAllocate(PendingAllocation pending)
    {
        Release(pending.Allocation);
        Fail(pending.Request, StunErrorCode.InsufficientCapacity, pending.Request.Key);
        return pending.Request.Response!;
    }

    /// <summary>Ends an allocation's holdings (ports, quota, reservation), logged with <paramref name="reason"/> if
    /// it was served. False when it had ended already. The edge closes its relays.</summary>
    public bool Release(Allocation a, string? reason = null, bool answerPending = false)
    {
        if (!Ledger.Release(a, answerPending))
        {
            return false;
        }

        if (a.CreatedAt is { } created)
        {
            TurnLog.AllocationDeleted(_logger, a.Username, a.Client.Remote, reason ?? "released",
                Math.Round(_time.GetElapsedTime(created).TotalSeconds, 1));
        }

        Metrics.AllocationDeleted();
        return true;
    }

    /// <summary>Allocations whose lifetime has passed, released; the edge removes them and closes their relays.</summary>
    public List<Allocation>? Expire()
    {
        var due = Ledger.TakeExpired(_time.GetTimestamp());
        if (due is not null)
        {
            for (var i = due.Count - 1; i >= 0; i--)
            {
                if (!Release(due[i], "expired"))
                {
                    due.RemoveAt(i);
                }
            }
        }

        return due;
    }

    // ---------------------------------------------------------------- Refresh, CreatePermission, ChannelBind

    private TurnRequest Refresh(StunMessageReader r, TurnRequest request, Allocation allocation)
    {
        var now = _time.GetTimestamp();
        var delete = r.TryGetUInt32(TurnAttributeType.Lifetime, out var seconds) && seconds == 0;
        var lifetime = delete ? TimeSpan.Zero : LifetimeFor(r);
        if (delete)
        {
            Release(allocation, "client asked, Refresh lifetime 0", answerPending: true);
        }
        else
        {
            lock (allocation.Gate)
            {
                allocation.Expires = now + Ticks(lifetime);
            }

            TurnLog.AllocationRefreshed(_logger, allocation.Username, allocation.Client.Remote, lifetime.TotalSeconds);
        }

        request.Lifetime = lifetime;
        request.Response = Respond(request, request.Key, (ref StunMessageWriter w, TurnRequest q) =>
            w.AddUInt32(TurnAttributeType.Lifetime, (uint)q.Lifetime.TotalSeconds));
        return request;
    }

    private TurnRequest CreatePermission(StunMessageReader r, TurnRequest request, Allocation allocation)
    {
        var peers = new List<IPEndPoint>(2);
        foreach (var a in r.Attributes)
        {
            if (a.Type != TurnAttributeType.XorPeerAddress)
            {
                continue;
            }

            if (!StunAddress.TryDecodeXor(a.Value, r.TransactionId, out var address))
            {
                return Fail(request, StunErrorCode.BadRequest, request.Key);
            }

            peers.Add(ToPeer(address));
        }

        if (peers.Count == 0)
        {
            return Fail(request, StunErrorCode.BadRequest, request.Key);
        }

        foreach (var peer in peers)
        {
            var code = CheckPeer(allocation, peer, permissionOnly: true);
            if (code != 0)
            {
                return Fail(request, code, request.Key);
            }
        }

        var now = _time.GetTimestamp();
        var expires = now + Ticks(TurnLimits.PermissionLifetime);
        lock (allocation.Gate)
        {
            foreach (var peer in peers)
            {
                if (!allocation.Bindings.TryAddPermission(peer.Address, expires, now))
                {
                    return Fail(request, StunErrorCode.InsufficientCapacity, request.Key);
                }
            }
        }

        request.Response = Respond(request, request.Key, null);
        return request;
    }

    private TurnRequest ChannelBind(StunMessageReader r, TurnRequest request, Allocation allocation)
    {
        if (!r.TryGet(TurnAttributeType.ChannelNumber, out var number) || number.Length != 4 ||
            !r.TryGetXorAddress(TurnAttributeType.XorPeerAddress, out var address))
        {
            return Fail(request, StunErrorCode.BadRequest, request.Key);
        }

        var channel = BinaryPrimitives.ReadUInt16BigEndian(number);
        if (channel is < TurnLimits.FirstChannel or > TurnLimits.LastAcceptedChannel)
        {
            return Fail(request, StunErrorCode.BadRequest, request.Key);
        }

        var peer = ToPeer(address);
        var code = CheckPeer(allocation, peer, permissionOnly: false);
        if (code != 0)
        {
            return Fail(request, code, request.Key);
        }

        var now = _time.GetTimestamp();
        lock (allocation.Gate)
        {
            var result = allocation.Bindings.TryBindChannel(channel, peer, now + Ticks(TurnLimits.ChannelLifetime), now);
            if (result != ChannelBindResult.Ok)
            {
                return Fail(request,
                    result == ChannelBindResult.Full ? StunErrorCode.InsufficientCapacity : StunErrorCode.BadRequest,
                    request.Key);
            }

            if (!allocation.Bindings.TryAddPermission(peer.Address, now + Ticks(TurnLimits.PermissionLifetime), now))
            {
                return Fail(request, StunErrorCode.InsufficientCapacity, request.Key);
            }
        }

        request.Response = Respond(request, request.Key, null);
        return request;
    }

    /// <summary>0 when <paramref name="peer"/> may be relayed to from this allocation; else 443 (no relay of its
    /// family) or 403 (the peer policy refuses it).</summary>
    private int CheckPeer(Allocation allocation, IPEndPoint peer, bool permissionOnly)
    {
        if (!allocation.RelaysFamilyOf(peer.Address))
        {
            return TurnErrorCode.PeerAddressFamilyMismatch;
        }

        var policy = Policy;
        var decision = policy.Check(peer);
        if (decision.Allowed && permissionOnly)
        {
            decision = policy.CheckAddress(peer.Address);
        }

        if (!decision.Allowed)
        {
            TurnLog.PeerRefused(_logger, peer, allocation.Username, allocation.Client.Remote, decision.Reason);
            return StunErrorCode.Forbidden;
        }

        return 0;
    }

    /// <summary><see cref="ToPeer"/> as a cached delegate, for <see cref="Allocation.PeerEndPoint"/> (no delegate per
    /// Send indication).</summary>
    private static readonly Func<StunAddress, IPEndPoint> ToPeerFromAddress = ToPeer;

    /// <summary>A peer address as the relay will use it: IPv4-mapped and -compatible forms become IPv4.</summary>
    private static IPEndPoint ToPeer(StunAddress address)
    {
        var ip = address.ToIPAddress();
        var key = IpKey.Normalized(ip);
        if (key.IsV4 && ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6)
        {
            ip = key.ToIPAddress();
        }

        return new IPEndPoint(ip, address.Port);
    }

    // ---------------------------------------------------------------- Send indication

    private SendPlan PlanSend(StunMessageReader r, Allocation allocation)
    {
        if (!r.TryGetXorAddress(TurnAttributeType.XorPeerAddress, out var address))
        {
            Metrics.Dropped(DropReason.Malformed);
            return default;
        }

        var offset = -1;
        var length = 0;
        foreach (var a in r.Attributes)
        {
            if (a.Type == TurnAttributeType.Data)
            {
                offset = a.Offset + StunMessageReader.AttributeHeaderLength;
                length = a.Value.Length;
                break;
            }
        }

        if (offset < 0)
        {
            Metrics.Dropped(DropReason.Malformed);
            return default;
        }

        if (length > _options.MaxRelayPayload)
        {
            Metrics.Dropped(DropReason.TooLarge); // the limit holds both ways
            return default;
        }

        var now = _time.GetTimestamp();
        lock (allocation.Gate)
        {
            var peer = allocation.PeerEndPoint(address, ToPeerFromAddress);
            if (allocation.Closed || !allocation.Bindings.HasPermission(peer.Address, now))
            {
                Metrics.Dropped(DropReason.NoPermission);
                return default;
            }

            // Permissions are per address; a deny rule with a port still holds per packet.
            if (!Policy.Check(peer).Allowed)
            {
                Metrics.Dropped(DropReason.Policy);
                return default;
            }

            if (!allocation.Bucket.TryTake(length, now))
            {
                Metrics.Dropped(DropReason.Bandwidth);
                return default;
            }

            return allocation.RelaysFamilyOf(peer.Address) ? new SendPlan(peer, offset, length) : default;
        }
    }

    // ---------------------------------------------------------------- responses

    private delegate void AttributeWriter(ref StunMessageWriter writer, TurnRequest request);

    private TurnRequest Fail(TurnRequest request, int code, byte[]? key)
    {
        request.Error = code;
        Metrics.Refused(code);
        request.Response = Respond(request, key, (ref StunMessageWriter w, TurnRequest q) =>
        {
            w.AddErrorCode(q.Error);
            if (q.Error is StunErrorCode.Unauthenticated or StunErrorCode.StaleNonce)
            {
                w.AddString(StunAttributeType.Realm, _options.Realm);
                w.AddString(StunAttributeType.Nonce, q.Nonce!);
                w.AddPasswordAlgorithms(Algorithms);
            }

            if (q.Unknown is not null)
            {
                w.AddUnknownAttributes(q.Unknown);
            }
        }, sign: key is not null, error: true);
        return request;
    }

    private byte[] Respond(TurnRequest request, byte[]? key, AttributeWriter? attributes, bool sign = true,
        bool error = false)
    {
        if (request.Error is StunErrorCode.Unauthenticated or StunErrorCode.StaleNonce)
        {
            request.Nonce = _nonces.Issue(request.Client, _time.GetUtcNow());
        }

        var buffer = ArrayPool<byte>.Shared.Rent(1024);
        try
        {
            var w = new StunMessageWriter(buffer, request.Method,
                error ? StunClass.ErrorResponse : StunClass.SuccessResponse, request.TransactionId);
            attributes?.Invoke(ref w, request);
            w.AddString(StunAttributeType.Software, _options.Software);
            if (sign && key is not null)
            {
                if (request.Sha256)
                {
                    w.AddMessageIntegritySha256(key);
                }
                else
                {
                    w.AddMessageIntegrity(key);
                }
            }

            if (request.Fingerprint)
            {
                w.AddFingerprint();
            }

            return w.Written.ToArray();
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private long Ticks(TimeSpan span) => (long)(span.TotalSeconds * _time.TimestampFrequency);

    private readonly record struct SendPlan(IPEndPoint? Peer, int Offset, int Length);
}

/// <summary>One request as the handler reads it: who, what, with which credentials, and its answer.</summary>
internal sealed class TurnRequest(ushort method, StunTransactionId transactionId, bool fingerprint, IPAddress client)
{
    public IPAddress Client { get; } = client;

    public ushort Method { get; } = method;

    public StunTransactionId TransactionId { get; } = transactionId;

    public bool Fingerprint { get; } = fingerprint;

    public string? Username { get; set; }

    public byte[]? Key { get; set; }

    public bool Sha256 { get; set; }

    public StunPasswordAlgorithm Algorithm { get; set; } = StunPasswordAlgorithm.Md5;

    public int Error { get; set; }

    public string? Nonce { get; set; }

    public ushort[]? Unknown { get; set; }

    public byte Family { get; set; }

    public bool Additional { get; set; }

    public bool EvenPort { get; set; }

    public bool ReservePair { get; set; }

    public ulong? Token { get; set; }

    public TimeSpan Lifetime { get; set; }

    public bool DontFragment { get; set; }

    public byte[]? Response { get; set; }
}
