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

public sealed partial class TurnServer
{
    private static readonly StunPasswordAlgorithm[] Algorithms = [StunPasswordAlgorithm.Sha256, StunPasswordAlgorithm.Md5];

    /// <summary>A STUN message from a client: requests are answered, Send indications relayed, the rest ignored.</summary>
    private async ValueTask HandleStunAsync(ReadOnlyMemory<byte> data, ClientLink link, Allocation? allocation,
        int udpIndex)
    {
        var request = Inspect(data.Span, link, allocation, out var send);
        if (send.Relay is not null)
        {
            await SendToPeerAsync(send.Relay, data.Slice(send.Offset, send.Length), send.Peer!);
            return;
        }

        if (request is null)
        {
            return;
        }

        if (request.Error == 0 && request.Method == TurnMethods.Allocate && allocation is null)
        {
            await AllocateAsync(request, link, udpIndex);
        }

        if (request.Response is not null)
        {
            await link.SendAsync(request.Response);
        }

        if (request.Method == TurnMethods.Refresh && request.Error == 0 && request.Lifetime == TimeSpan.Zero)
        {
            SignalDrainedIfEmpty(); // the client heard its allocation is deleted: a drain may end now
        }
    }

    /// <summary>Everything that needs no await: parse, authenticate, and answer every request except a new
    /// Allocate (which binds sockets).</summary>
    private Request? Inspect(ReadOnlySpan<byte> data, ClientLink link, Allocation? allocation, out SendPlan send)
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

        var request = new Request(r.Method, r.TransactionId, r.HasFingerprint, link.Remote.Address);

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
            request.Response = Respond(request, null, (ref StunMessageWriter w, Request q) =>
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
    private int Authenticate(StunMessageReader r, IPEndPoint client, Request request)
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
        if (Volatile.Read(ref _users).TryGetValue(username, out var password))
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

    private Request ParseAllocate(StunMessageReader r, Request request)
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
            (request.Family == StunAddress.FamilyIPv6 && _portsV6 is null))
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

    private async ValueTask AllocateAsync(Request request, ClientLink link, int udpIndex)
    {
        // Quotas first (RFC 8656 section 7.2): per user 486, whole server 508. A reservation (EVEN-PORT with the R
        // bit) holds a slot as an allocation does, so such a request needs two; claiming a reservation's token
        // turns its slot into the new allocation's.
        var user = request.Username!;
        var need = request.ReservePair ? 2 : 1;
        Reservation? claimed = null;
        lock (_gate)
        {
            if (request.Token is { } token)
            {
                _reservations.TryGetValue(token, out claimed);
            }

            var freed = claimed is null ? 0 : 1;
            var mine = _perUser.GetValueOrDefault(user) - (claimed is not null && claimed.Username == user ? 1 : 0);
            if (mine + need > _options.MaxAllocationsPerUser)
            {
                Fail(request, StunErrorCode.AllocationQuotaReached, request.Key);
                return;
            }

            if (_draining || _held - freed + need > _options.MaxAllocations)
            {
                Fail(request, StunErrorCode.InsufficientCapacity, request.Key);
                return;
            }

            if (request.Token is not null && claimed is null)
            {
                Fail(request, StunErrorCode.InsufficientCapacity, request.Key); // unknown, used or expired token
                return;
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
            if (request.ReservePair)
            {
                TakeSlotLocked(user); // held for the reservation until it is made (or the allocation fails)
            }
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

        var registered = false;
        try
        {
            ulong? newToken = null;
            var v6Failed = false;
            if (claimed is { } reservation)
            {
                var socket = await BindReservedAsync(reservation);
                if (socket is null)
                {
                    Fail(request, StunErrorCode.InsufficientCapacity, request.Key);
                    return;
                }

                Attach(allocation, socket, reservation.Family);
            }
            else
            {
                var (socket, pairPort) = await BindRelayAsync(request.Family, request.EvenPort, request.ReservePair);
                if (socket is null)
                {
                    Fail(request, StunErrorCode.InsufficientCapacity, request.Key);
                    return;
                }

                Attach(allocation, socket, request.Family);
                if (pairPort != 0)
                {
                    newToken = BinaryPrimitives.ReadUInt64BigEndian(RandomNumberGenerator.GetBytes(8));
                    var made = new Reservation(newToken.Value, request.Family, pairPort, user, allocation);
                    lock (_gate)
                    {
                        _reservations[newToken.Value] = made;
                        _reservationExpiry.Add(made, now + Ticks(TurnLimits.ReservationLifetime));
                        allocation.Reservation = made;
                        allocation.ReservationSlotPending = false; // the reservation holds that slot now
                    }
                }

                if (request.Additional)
                {
                    var (v6, _) = _portsV6 is null ? (null, 0) : await BindRelayAsync(StunAddress.FamilyIPv6, false, false);
                    if (v6 is null)
                    {
                        v6Failed = true;
                    }
                    else
                    {
                        Attach(allocation, v6, StunAddress.FamilyIPv6);
                    }
                }
            }

            request.Response = Respond(request, request.Key, (ref StunMessageWriter w, Request q) =>
            {
                if (allocation.RelayV4 is not null)
                {
                    w.AddXorAddress(TurnAttributeType.XorRelayedAddress, allocation.RelayedV4);
                }

                if (allocation.RelayV6 is not null)
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

            lock (_gate)
            {
                _expiry.Add(allocation, allocation.Expires);
            }

            if (link is StreamClientLink s)
            {
                s.Watchdog.BeginLiveState();
                _streamAllocations[s] = allocation;
            }
            else
            {
                _udpAllocations[udpIndex][link.Remote] = allocation;
            }

            registered = true;
            allocation.CreatedAt = _time.GetTimestamp();
            Metrics.AllocationCreated();
            TurnLog.AllocationCreated(_logger, user, link.Remote, link.IsStream ? "tcp/tls" : "udp",
                allocation.RelayV4 is null ? "-" : allocation.RelayedV4.ToString(),
                allocation.RelayV6 is null ? "-" : allocation.RelayedV6.ToString(), request.Lifetime.TotalSeconds);
            if (allocation.RelayV4 is not null)
            {
                ServeRelay(allocation, allocation.RelayV4, v6: false);
            }

            if (allocation.RelayV6 is not null)
            {
                ServeRelay(allocation, allocation.RelayV6, v6: true);
            }
        }
        finally
        {
            if (!registered)
            {
                Delete(allocation);
            }
        }
    }

    private void Attach(Allocation allocation, IDatagramSocket socket, byte family)
    {
        if (family == StunAddress.FamilyIPv6)
        {
            allocation.RelayV6 = socket;
            allocation.RelayedV6 = StunAddress.FromEndPoint(socket.LocalEndPoint);
        }
        else
        {
            allocation.RelayV4 = socket;
            allocation.RelayedV4 = _externalV4.WithPort((ushort)socket.LocalEndPoint.Port);
        }
    }

    /// <summary>Binds a relay socket on a random free port of the range (an even one for EVEN-PORT, with the next
    /// kept back when <paramref name="reservePair"/>). Returns the socket and the kept-back port (or 0).</summary>
    private async ValueTask<(IDatagramSocket? Socket, int PairPort)> BindRelayAsync(byte family, bool even,
        bool reservePair)
    {
        var ports = family == StunAddress.FamilyIPv6 ? _portsV6! : _portsV4;
        var address = family == StunAddress.FamilyIPv6 ? _options.RelayAddressV6! : _options.RelayAddress;
        for (var attempt = 0; attempt < 64; attempt++)
        {
            int port;
            lock (_gate)
            {
                if (!ports.TryTake(even, reservePair, out port))
                {
                    return (null, 0);
                }
            }

            try
            {
                var socket = await _network.BindUdpAsync(new IPEndPoint(address, port));
                return (socket, reservePair ? port + 1 : 0);
            }
            catch (NetworkException)
            {
                // Another program holds it: leave it marked (it stays unavailable) and try another.
                if (reservePair)
                {
                    lock (_gate)
                    {
                        ports.Release(port + 1);
                    }
                }
            }
        }

        return (null, 0);
    }

    private async ValueTask<IDatagramSocket?> BindReservedAsync(Reservation reservation)
    {
        var address = reservation.Family == StunAddress.FamilyIPv6 ? _options.RelayAddressV6! : _options.RelayAddress;
        try
        {
            return await _network.BindUdpAsync(new IPEndPoint(address, reservation.Port));
        }
        catch (NetworkException)
        {
            lock (_gate)
            {
                (reservation.Family == StunAddress.FamilyIPv6 ? _portsV6 : _portsV4)?.Release(reservation.Port);
            }

            return null;
        }
    }

    // ---------------------------------------------------------------- Refresh, CreatePermission, ChannelBind

    private Request Refresh(StunMessageReader r, Request request, Allocation allocation)
    {
        var now = _time.GetTimestamp();
        var delete = r.TryGetUInt32(TurnAttributeType.Lifetime, out var seconds) && seconds == 0;
        var lifetime = delete ? TimeSpan.Zero : LifetimeFor(r);
        if (delete)
        {
            RemoveFromTables(allocation);
            Delete(allocation, "client asked, Refresh lifetime 0", answerPending: true);
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
        request.Response = Respond(request, request.Key, (ref StunMessageWriter w, Request q) =>
            w.AddUInt32(TurnAttributeType.Lifetime, (uint)q.Lifetime.TotalSeconds));
        return request;
    }

    private Request CreatePermission(StunMessageReader r, Request request, Allocation allocation)
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

    private Request ChannelBind(StunMessageReader r, Request request, Allocation allocation)
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
        if (allocation.RelayFor(peer.Address) is null)
        {
            return TurnErrorCode.PeerAddressFamilyMismatch;
        }

        var decision = _policy.Check(peer);
        if (decision.Allowed && permissionOnly)
        {
            decision = _policy.CheckAddress(peer.Address);
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
            if (!_policy.Check(peer).Allowed)
            {
                Metrics.Dropped(DropReason.Policy);
                return default;
            }

            if (!allocation.Bucket.TryTake(length, now))
            {
                Metrics.Dropped(DropReason.Bandwidth);
                return default;
            }

            var relay = allocation.RelayFor(peer.Address);
            return relay is null ? default : new SendPlan(relay, peer, offset, length);
        }
    }

    // ---------------------------------------------------------------- responses

    private delegate void AttributeWriter(ref StunMessageWriter writer, Request request);

    private Request Fail(Request request, int code, byte[]? key)
    {
        request.Error = code;
        Metrics.Refused(code);
        request.Response = Respond(request, key, (ref StunMessageWriter w, Request q) =>
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

    private byte[] Respond(Request request, byte[]? key, AttributeWriter? attributes, bool sign = true,
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

    private sealed class Request(ushort method, StunTransactionId transactionId, bool fingerprint, IPAddress client)
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

    private readonly record struct SendPlan(IDatagramSocket? Relay, IPEndPoint? Peer, int Offset, int Length);
}
