using System.Buffers.Binary;
using System.Net;
using NatKit.Stun;
using NatKit.Stun.Transactions;

namespace NatKit.Traversal.Ice;

public sealed partial class IceAgent
{
    private const int MaxUnknownReported = 8;

    /// <summary>Unauthenticated error answers (400, 401) a second at most: a flood of forged requests must not make
    /// the agent a reflector, nor fill the shared socket's send path while its data waits.</summary>
    private const int UnauthenticatedErrorsPerSecond = 100;

    private NatKit.Net.TokenBucket _unauthenticatedErrors = new(UnauthenticatedErrorsPerSecond,
        UnauthenticatedErrorsPerSecond, TimeSpan.TicksPerSecond, 0);

    // ---------------------------------------------------------------- checks from the peer (RFC 8445 section 7.3)

    private IceInputResult HandleRequest(StunMessageReader msg, IPEndPoint source, int socket, TimeSpan now)
    {
        var id = msg.TransactionId;

        // Short-term credentials (RFC 8489 section 9.1.3): both attributes or 400; our ufrag first, and integrity
        // with our password, or 401. Neither error is authenticated.
        if (!msg.TryGet(StunAttributeType.Username, out var username) || !msg.HasMessageIntegrity)
        {
            return SendError(id, StunErrorCode.BadRequest, authenticated: false, source, socket, now);
        }

        if (!IceMessages.SplitUsername(username, out var ours, out _) ||
            !IceMessages.Equal(ours, LocalCredentials.Ufrag) || !msg.VerifyMessageIntegrity(_localKey))
        {
            return SendError(id, StunErrorCode.Unauthenticated, authenticated: false, source, socket, now);
        }

        Stats.RequestsReceived++;
        Span<ushort> unknown = stackalloc ushort[MaxUnknownReported];
        var unknownCount = msg.FindUnknownComprehensionRequired(StunAttributeRegistry.Stun, unknown);
        if (unknownCount > 0)
        {
            Stats.ErrorsSent++;
            Emit(socket, source, IceMessages.Error(id, StunErrorCode.UnknownAttribute, _localKey, unknown[..unknownCount]),
                now, request: false);
            return IceInputResult.Handled;
        }

        if (!msg.TryGetUInt32(StunAttributeType.Priority, out var priority) ||
            !TryGetTieBreaker(msg, StunAttributeType.IceControlling, out var controlling, out var hasControlling) ||
            !TryGetTieBreaker(msg, StunAttributeType.IceControlled, out var controlled, out var hasControlled))
        {
            return SendError(id, StunErrorCode.BadRequest, authenticated: true, source, socket, now);
        }

        // Role conflict (section 7.3.1.1): the larger tie-breaker keeps (or takes) the controlling role.
        if (hasControlling && Role == IceRole.Controlling)
        {
            Stats.RoleConflicts++;
            if (TieBreaker >= controlling)
            {
                return SendError(id, StunErrorCode.RoleConflict, authenticated: true, source, socket, now);
            }

            SwitchRole(IceRole.Controlled);
        }
        else if (hasControlled && Role == IceRole.Controlled)
        {
            Stats.RoleConflicts++;
            if (TieBreaker >= controlled)
            {
                SwitchRole(IceRole.Controlling);
            }
            else
            {
                return SendError(id, StunErrorCode.RoleConflict, authenticated: true, source, socket, now);
            }
        }

        Emit(socket, source, IceMessages.Success(id, source, _localKey), now, request: false);
        LearnFromRequest(source, socket, priority, msg.Contains(StunAttributeType.UseCandidate), now);
        return IceInputResult.Handled;
    }

    /// <summary>Sections 7.3.1.3-7.3.1.5: a peer-reflexive remote candidate for an unknown source, the pair, its
    /// triggered check, and USE-CANDIDATE.</summary>
    private void LearnFromRequest(IPEndPoint source, int socket, uint priority, bool useCandidate, TimeSpan now)
    {
        if (!_bases.TryGetValue((socket, source.AddressFamily), out var local))
        {
            return;
        }

        if (!_remoteByEndPoint.TryGetValue(source, out var remote))
        {
            if (_remoteCandidates.Count >= _options.MaxRemoteCandidates)
            {
                return;
            }

            remote = new IceCandidate(
                IceFoundation.Compute(IceCandidateType.PeerReflexive, source.Address, null, IceProtocol.Udp,
                    IceCandidateOrigin.PeerReflexive), Component, IceProtocol.Udp, priority, source,
                IceCandidateType.PeerReflexive);
            AddRemote(remote);
            _events.Enqueue(new IceCandidateDiscovered(remote, IsLocal: false));
        }

        if (!TryAddPair(local, remote, out var pair))
        {
            return;
        }

        if (pair.State != IceCandidatePairState.Succeeded)
        {
            // Frozen, Waiting, Failed: Waiting and queued. In-Progress: a new check goes out now rather than after
            // the running one's next backoff; the running one is left to finish (its answer still counts).
            if (pair.State != IceCandidatePairState.InProgress)
            {
                SetPairState(pair, IceCandidatePairState.Waiting);
            }

            EnqueueTriggered(pair, front: false);
        }

        if (useCandidate && Role == IceRole.Controlled)
        {
            if (pair.State == IceCandidatePairState.Succeeded && pair.ValidPair is { IsValid: true } valid)
            {
                valid.Nominated = true;
                UpdateSelected(now, IceSelectionReason.Nominated);
            }
            else
            {
                pair.NominateOnSuccess = true;
            }
        }
    }

    private static bool TryGetTieBreaker(StunMessageReader msg, ushort type, out ulong value, out bool present)
    {
        value = 0;
        present = msg.TryGet(type, out var v);
        if (!present)
        {
            return true;
        }

        if (v.Length != 8)
        {
            return false;
        }

        value = BinaryPrimitives.ReadUInt64BigEndian(v);
        return true;
    }

    private IceInputResult SendError(StunTransactionId id, int code, bool authenticated, IPEndPoint source, int socket,
        TimeSpan now)
    {
        if (!authenticated && !_unauthenticatedErrors.TryTake(1, now.Ticks))
        {
            Stats.Dropped++;
            return IceInputResult.Handled;
        }

        Stats.ErrorsSent++;
        Emit(socket, source, IceMessages.Error(id, code, authenticated ? _localKey : null), now, request: false);
        return IceInputResult.Handled;
    }

    // ---------------------------------------------------------------- answers to our checks (section 7.2.5)

    private IceInputResult HandleResponse(StunMessageReader msg, ReadOnlySpan<byte> datagram, IPEndPoint source,
        int socket, TimeSpan now)
    {
        if (!_pending.Contains(msg.TransactionId) || !_table.Contains(msg.TransactionId))
        {
            return IceInputResult.NotMine;
        }

        // Ours by id: accept it only when the peer's password signed it and it says what it must, so that a forged
        // or garbled answer leaves the check running.
        var success = msg.Class == StunClass.SuccessResponse;
        var code = 0;
        StunAddress mapped = default;
        if (!msg.VerifyMessageIntegrity(_remoteKey!) ||
            (success && !msg.TryGetXorAddress(StunAttributeType.XorMappedAddress, out mapped)) ||
            (!success && !msg.TryGetErrorCode(out code, out _)))
        {
            Stats.Dropped++;
            return IceInputResult.Dropped;
        }

        if (!_table.TryMatch(datagram, now, out var match) || match.Owner is not CheckTransaction check)
        {
            return IceInputResult.NotMine;
        }

        _pending.Remove(check.Id);
        Stats.ResponsesReceived++;
        var pair = check.Pair;

        // Section 7.2.5.2.1: the response must come from where the request went, to the socket it left from.
        var symmetric = pair.Socket == socket && source.Equals(match.Destination);
        if (check.Kind == CheckKind.Consent)
        {
            if (success && symmetric)
            {
                pair.LastResponseAt = now;
                pair.ResponsesReceived++;
            }

            return IceInputResult.Handled;
        }

        if (!success)
        {
            OnErrorResponse(check, code);
            return IceInputResult.Handled;
        }

        if (!symmetric)
        {
            if (pair.CurrentCheck == check.Id && pair.State == IceCandidatePairState.InProgress)
            {
                SetPairState(pair, IceCandidatePairState.Failed);
            }

            return IceInputResult.Handled;
        }

        OnSuccess(check, mapped.ToEndPoint(), match, now);
        return IceInputResult.Handled;
    }

    private void OnErrorResponse(CheckTransaction check, int code)
    {
        var pair = check.Pair;
        if (code == StunErrorCode.RoleConflict)
        {
            // Section 7.2.5.1: take the role opposite to the one the request claimed, then check the pair again.
            SwitchRole(check.Role == IceRole.Controlling ? IceRole.Controlled : IceRole.Controlling);
            if (pair.State != IceCandidatePairState.Succeeded)
            {
                SetPairState(pair, IceCandidatePairState.Waiting);
            }

            EnqueueTriggered(pair, front: false);
            return;
        }

        if (ReferenceEquals(_nominating, pair) && check.UseCandidate)
        {
            _nominating = null;
        }

        if (pair.CurrentCheck == check.Id && pair.State == IceCandidatePairState.InProgress)
        {
            SetPairState(pair, IceCandidatePairState.Failed);
        }
    }

    private void OnSuccess(CheckTransaction check, IPEndPoint mapped, StunTransactionMatch match, TimeSpan now)
    {
        var pair = check.Pair;

        // Section 7.2.5.3.1: a mapped address we do not know is a peer-reflexive candidate of the pair's base.
        IceCandidate local;
        if (_localByEndPoint.TryGetValue(mapped, out var known) && known.Socket == pair.Socket)
        {
            local = known.Candidate;
        }
        else if (known is null && _localCandidates.Count < _options.MaxLocalCandidates)
        {
            local = new IceCandidate(
                IceFoundation.Compute(IceCandidateType.PeerReflexive, pair.Local.EndPoint.Address, null,
                    IceProtocol.Udp, IceCandidateOrigin.PeerReflexive), Component, IceProtocol.Udp, check.Priority,
                mapped, IceCandidateType.PeerReflexive, pair.Local.EndPoint);
            _localCandidates.Add(local);
            _localByEndPoint.Add(mapped, new LocalEntry(local, pair.Socket, pair.Local));
            _events.Enqueue(new IceCandidateDiscovered(local, IsLocal: true));
        }
        else
        {
            local = pair.Local;
        }

        // Section 7.2.5.3.2: the valid pair is (the candidate the peer saw, the remote candidate).
        IceCandidatePair valid;
        if (ReferenceEquals(local, pair.Local))
        {
            valid = pair;
        }
        else if (!_validIndex.TryGetValue((local, pair.Remote), out valid!))
        {
            valid = new IceCandidatePair(local, pair.Remote, pair.Socket, inCheckList: false)
            {
                Priority = PairPriority(local, pair.Remote),
                Generator = pair,
            };
        }

        if (!valid.IsValid)
        {
            valid.IsValid = true;
            valid.Generator = pair;
            _valid.Add(valid);
            if (!ReferenceEquals(valid, pair))
            {
                _validIndex[(valid.Local, valid.Remote)] = valid;
            }
        }

        pair.ValidPair = valid;
        if (pair.CurrentCheck == check.Id)
        {
            pair.CurrentCheck = default;
        }

        SetPairState(pair, IceCandidatePairState.Succeeded);
        SetPairState(valid, IceCandidatePairState.Succeeded);
        pair.ResponsesReceived++;
        pair.LastResponseAt = now;
        valid.LastResponseAt = now;
        if (match.Transmissions == 1)
        {
            pair.Rtt = match.Elapsed;
            valid.Rtt = match.Elapsed;
        }

        // Section 7.2.5.3.3: the pair's foundation thaws everywhere.
        foreach (var other in _checkList)
        {
            if (other.State == IceCandidatePairState.Frozen && other.Foundation == pair.Foundation)
            {
                SetPairState(other, IceCandidatePairState.Waiting);
            }
        }

        // Section 7.2.5.3.4 (and 7.3.1.5 for the controlled agent).
        if (check.UseCandidate && check.Role == IceRole.Controlling && Role == IceRole.Controlling)
        {
            valid.Nominated = true;
            if (ReferenceEquals(_nominating, pair))
            {
                _nominating = null;
            }
        }
        else if (Role == IceRole.Controlled && pair.NominateOnSuccess)
        {
            valid.Nominated = true;
        }

        pair.NominateOnSuccess = false;
        _nominateAt = now;
        if (valid.Nominated)
        {
            UpdateSelected(now, IceSelectionReason.Nominated);
        }
    }

    // ---------------------------------------------------------------- consent, keepalives, upgrade

    private void Freshness(TimeSpan now)
    {
        if (SelectedPair is not { } selected)
        {
            return;
        }

        // RFC 7675 section 5.1: consent lasts ConsentTimeout past the last authenticated response.
        if (_options.ConsentInterval > TimeSpan.Zero && now >= ConsentExpiry(selected))
        {
            selected.ConsentLost = true;
            _events.Enqueue(new IceConsentLost(selected));
            UpdateSelected(now, IceSelectionReason.ConsentLost);
            if (SelectedPair is null)
            {
                SetAgentState(IceAgentState.Failed);
                return;
            }

            selected = SelectedPair;
        }

        if (now >= _nextConsentAt)
        {
            SendConsentCheck(selected, now);
            _nextConsentAt = now + ConsentJitter();
        }

        // RFC 8445 section 11: hold the mappings when nothing else went out for Tr.
        if (now >= _selectedLastSent + _options.KeepaliveInterval)
        {
            Stats.KeepalivesSent++;
            Emit(selected.Socket, selected.Remote.EndPoint, IceMessages.Indication(NewTransactionId()), now,
                request: false);
        }

        if (selected.IsRelayed && now >= _nextUpgradeAt)
        {
            _nextUpgradeAt = now + _options.UpgradeInterval;
            IceCandidatePair? stalest = null;
            foreach (var pair in _checkList)
            {
                // A pair still In-Progress from the first round is likely in its long last wait: check it anew.
                if (pair.IsRelayed || pair.Triggered || pair.State == IceCandidatePairState.Succeeded ||
                    pair.LastCheckAt > now - _options.UpgradeInterval)
                {
                    continue;
                }

                if (stalest is null || pair.LastCheckAt < stalest.LastCheckAt)
                {
                    stalest = pair;
                }
            }

            if (stalest is not null)
            {
                if (stalest.State != IceCandidatePairState.InProgress)
                {
                    SetPairState(stalest, IceCandidatePairState.Waiting);
                }

                stalest.UpgradeProbe = true;
                EnqueueTriggered(stalest, front: false);
            }
        }
    }

    private TimeSpan ConsentExpiry(IceCandidatePair selected) =>
        (selected.LastResponseAt ?? _selectedLastSent) + _options.ConsentTimeout;

    /// <summary>Section 5.1: each consent request is sent once (a new transaction each time), and its answer counts
    /// while consent lasts.</summary>
    private void SendConsentCheck(IceCandidatePair pair, TimeSpan now)
    {
        var id = NewTransactionId();
        var priority = IcePriority.PeerReflexiveFor(pair.Generator?.Local.Priority ?? pair.Local.Priority, Component);
        var request = IceMessages.Request(id, RemoteCredentials!.Ufrag, LocalCredentials.Ufrag, _remoteKey!, priority,
            Role, TieBreaker, useCandidate: false);
        var check = new CheckTransaction(id, pair, CheckKind.Consent, false, Role, priority);
        if (!_table.TryAdd(id, request, pair.Remote.EndPoint, now, StunRetransmitPolicy.Reliable(_options.ConsentTimeout),
                check))
        {
            return;
        }

        _pending.Add(id);
        Stats.ConsentChecksSent++;
        pair.RequestsSent++;
        Emit(pair.Socket, pair.Remote.EndPoint, request, now, request: true);
    }

    /// <summary>The consent interval randomized to 0.8-1.2 times (RFC 7675 section 5.1).</summary>
    private TimeSpan ConsentJitter()
    {
        Span<byte> b = stackalloc byte[2];
        Fill(b);
        var factor = 0.8 + (0.4 * BinaryPrimitives.ReadUInt16LittleEndian(b) / ushort.MaxValue);
        return _options.ConsentInterval * factor;
    }
}
