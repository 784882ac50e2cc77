using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using NatKit.Nat.Internal;
using NatKit.Packets;

namespace NatKit.Nat;

/// <summary>Sessions, mappings, port assignment and timers.</summary>
public sealed partial class NatEngine
{
    // ---- timers ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private long Timeout(ref Session s)
    {
        switch (s.Proto)
        {
            case (byte)IpProtocol.Udp:
                return (s.Flags & SessionFlags.Replied) != 0 ? _udpMs : _udpUnrepliedMs;
            case (byte)IpProtocol.Tcp:
                var f = s.Flags;
                if ((f & SessionFlags.Rst) != 0 || (f & (SessionFlags.FinIn | SessionFlags.FinOut)) == (SessionFlags.FinIn | SessionFlags.FinOut))
                {
                    return _tcpTransitoryMs; // RFC 5382 REQ-5, RFC 7857 section 2.2
                }

                return (f & (SessionFlags.SynIn | SessionFlags.SynOut)) == (SessionFlags.SynIn | SessionFlags.SynOut)
                    ? _tcpEstablishedMs
                    : _tcpTransitoryMs;
            default:
                return _icmpMs;
        }
    }

    private long Deadline(ref Session s) => s.LastRefresh + Timeout(ref s);

    private static NatTcpState TcpStateOf(in Session s)
    {
        if (s.Proto != (byte)IpProtocol.Tcp) return NatTcpState.None;
        var f = s.Flags;
        if ((f & SessionFlags.Rst) != 0 || (f & (SessionFlags.FinIn | SessionFlags.FinOut)) == (SessionFlags.FinIn | SessionFlags.FinOut)) return NatTcpState.Closing;
        if ((f & (SessionFlags.FinIn | SessionFlags.FinOut)) != 0) return NatTcpState.HalfClosed;
        return (f & (SessionFlags.SynIn | SessionFlags.SynOut)) == (SessionFlags.SynIn | SessionFlags.SynOut) ? NatTcpState.Established : NatTcpState.Opening;
    }

    /// <summary>RFC 5382/7857 TCP tracking: SYN, FIN each way, RST. A SYN after a close starts over.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TrackTcp(ref Session s, byte tcpFlags, bool outbound)
    {
        const byte fin = (byte)TcpFlags.Fin, syn = (byte)TcpFlags.Syn, rst = (byte)TcpFlags.Rst;
        if ((tcpFlags & (fin | syn | rst)) == 0) return;
        if ((tcpFlags & syn) != 0)
        {
            if ((s.Flags & (SessionFlags.Rst | SessionFlags.FinIn | SessionFlags.FinOut)) != 0)
            {
                s.Flags &= SessionFlags.Replied; // reopened: a new connection on the same tuple
            }

            s.Flags |= outbound ? SessionFlags.SynOut : SessionFlags.SynIn;
        }

        if ((tcpFlags & fin) != 0) s.Flags |= outbound ? SessionFlags.FinOut : SessionFlags.FinIn;
        if ((tcpFlags & rst) != 0) s.Flags |= SessionFlags.Rst;
    }

    /// <summary>Tracks TCP flags; when the connection starts closing its timer shrinks (established to
    /// transitory), so the session moves to an earlier wheel slot. Longer timers need no move: the wheel
    /// re-checks lazily.</summary>
    private void TrackTcpState(int index, byte tcpFlags, bool outbound)
    {
        ref var s = ref _table.Sessions[index];
        var wasClosing = TcpStateOf(s) == NatTcpState.Closing;
        TrackTcp(ref s, tcpFlags, outbound);
        if (!wasClosing && TcpStateOf(s) == NatTcpState.Closing)
        {
            _wheel.Unlink(_table.Sessions, index);
            _wheel.Schedule(_table.Sessions, index, Deadline(ref s));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Touch(ref Session s, bool outbound)
    {
        var refresh = _policy.Refresh;
        if ((refresh == RefreshDirection.Both || (refresh == RefreshDirection.Outbound) == outbound) && _now > s.LastRefresh)
        {
            s.LastRefresh = _now; // never earlier: a PCP PEER may hold the session into the future (MapPeer)
        }

        if (!outbound) s.Flags |= SessionFlags.Replied;
    }

    private void RunTimers()
    {
        var visitor = new ExpiryVisitor(this);
        _wheel.Advance(_table, _now, ref visitor);
        RunHeldSynTimers();
        RunFragmentTimers();
    }

    private readonly struct ExpiryVisitor(NatEngine engine) : IWheelVisitor
    {
        public long Deadline(int session) => engine.Deadline(ref engine._table.Sessions[session]);

        public void Expire(int session) => engine.ExpireSession(session);
    }

    /// <summary>Removes a session already taken off the wheel; frees its mapping when it was the last.</summary>
    private void ExpireSession(int index)
    {
        var mapping = _table.Sessions[index].Mapping;
        _sessionsExpired++;
        if (_table.RemoveSession(index) == 0 && _table.Mappings[mapping].Kind is MappingKind.Dynamic or MappingKind.Dmz)
        {
            FreeMapping(mapping);
        }
    }

    // ---- sessions ----

    private int NewSession(int mapping, uint remAddr, ushort remPort)
    {
        var s = _table.AddSession(mapping, remAddr, remPort, _now);
        _sessionsCreated++;
        _wheel.Schedule(_table.Sessions, s, _now + Timeout(ref _table.Sessions[s]));
        return s;
    }

    /// <summary>Finds or makes the mapping for an outbound packet with no session, then its session.
    /// Returns the session, or -1 with <paramref name="reason"/>.</summary>
    private int CreateOutbound(byte proto, uint src, ushort sport, uint dst, ushort dport, out NatDropReason reason)
    {
        reason = NatDropReason.None;
        if (_table.IsFull)
        {
            reason = NatDropReason.TableFull;
            return -1;
        }

        uint mdst = 0;
        ushort mport = 0;
        if (_policy.Mapping != MappingBehavior.EndpointIndependent) mdst = dst;
        if (_policy.Mapping == MappingBehavior.AddressAndPortDependent) mport = dport;
        var m = _table.FindMapping(proto, src, sport, mdst, mport);
        if (m < 0 && _hasEndpointMappings && _policy.Mapping != MappingBehavior.EndpointIndependent)
        {
            m = _table.FindMapping(proto, src, sport, 0, 0); // a static forward's or explicit mapping's endpoint keeps its port
        }

        if (m < 0)
        {
            m = NewMapping(proto, src, sport, mdst, mport, dst, dport, out reason);
            if (m < 0) return -1;
        }

        return NewSession(m, dst, dport);
    }

    private int NewMapping(byte proto, uint src, ushort sport, uint mdst, ushort mport, uint dst, ushort dport, out NatDropReason reason)
    {
        reason = NatDropReason.None;
        var limit = _policy.MaxMappingsPerHost;
        if (limit > 0 && _hosts.TryGetValue(src, out var count) && count >= limit)
        {
            reason = NatDropReason.HostLimit;
            return -1;
        }

        // Paired pooling without per-host state: an internal address always hashes to the same external one.
        var n = _ext.Length;
        int first;
        if (_policy.Pooling == AddressPooling.Arbitrary)
        {
            first = _roundRobin;
            _roundRobin = (_roundRobin + 1) % n;
        }
        else
        {
            first = n == 1 ? 0 : PairedExternal(src);
        }

        var tries = _policy.Pooling == AddressPooling.Paired ? 1 : n;
        for (var t = 0; t < tries; t++)
        {
            var e = (first + t) % n;
            var port = AllocatePort(proto, e, sport, dst, dport);
            if (port < 0) continue;
            if (limit > 0) CollectionsMarshal.GetValueRefOrAddDefault(_hosts, src, out _)++;
            var m = _table.AddMapping(proto, src, sport, mdst, mport, _ext[e], (ushort)port, e, MappingKind.Dynamic);
            TakePort(proto, e, port, m);
            _mappingsCreated++;
            Observer?.MappingCreated(new NatMappingEvent((IpProtocol)proto, new(new Ipv4Address(src), sport),
                new(new Ipv4Address(_ext[e]), (ushort)port), _now));
            return m;
        }

        reason = NatDropReason.PortsExhausted;
        return -1;
    }

    private void TakePort(byte proto, int ext, int port, int mapping)
    {
        var space = Space(proto, ext);
        if (space.Users is not null) space.Users[port]++;
        space.Owner[port] = mapping + 1;
    }

    /// <summary>Removes a mapping whose sessions are gone: frees its port (with hold-down) and its host count.</summary>
    private void FreeMapping(int index)
    {
        ref var m = ref _table.Mappings[index];
        var space = SpaceIfAny(m.Proto, m.ExtIndex);
        if (space is not null)
        {
            var port = m.ExtPort;
            var last = space.Users is null || (space.Users[port] > 0 && --space.Users[port] == 0);
            if (space.Owner[port] == index + 1 || last) space.Owner[port] = 0; // shared: others keep it, unowned
            if (last && space.HoldUntil is not null) space.HoldUntil[port] = NowSec + _holdDownSec;
        }

        if (m.Kind == MappingKind.Explicit) ForgetExplicit(index, m.IntAddr);
        if (m.Kind is MappingKind.Dynamic or MappingKind.Explicit && _policy.MaxMappingsPerHost > 0)
        {
            ref var count = ref CollectionsMarshal.GetValueRefOrNullRef(_hosts, m.IntAddr);
            if (!Unsafe.IsNullRef(ref count) && --count <= 0) _hosts.Remove(m.IntAddr);
        }

        _mappingsRemoved++;
        Observer?.MappingRemoved(new NatMappingEvent((IpProtocol)m.Proto, new(new Ipv4Address(m.IntAddr), m.IntPort),
            new(new Ipv4Address(m.ExtAddr), m.ExtPort), _now));
        _table.RemoveMapping(index);
    }

    /// <summary>Removes a mapping and all its sessions now (port overloading evicts this way).</summary>
    private void EvictMapping(int index)
    {
        var sessions = _table.Sessions;
        for (var s = _table.Mappings[index].SessionHead; s >= 0;)
        {
            var next = sessions[s].MapNext;
            _wheel.Unlink(_table.Sessions, s);
            _table.RemoveSession(s);
            _sessionsExpired++;
            s = next;
        }

        FreeMapping(index);
    }

    /// <summary>RFC 4787 REQ-3/REQ-4 and RFC 6888 REQ-8: picks an external port on address <paramref name="ext"/>.
    /// Returns -1 when none is free.</summary>
    private int AllocatePort(byte proto, int ext, ushort preferred, uint dst, ushort dport)
    {
        var space = Space(proto, ext);
        // ICMP identifiers are not ports: the whole 16-bit space is theirs (RFC 5508 section 3.1).
        int lo = proto == (byte)IpProtocol.Icmp ? 0 : _policy.PortRangeStart;
        int hi = proto == (byte)IpProtocol.Icmp ? 65535 : _policy.PortRangeEnd;
        var size = hi - lo + 1;
        var now = NowSec;
        switch (_policy.PortAssignment)
        {
            case PortAssignment.Overloading:
            {
                // x' = x always; an older mapping on that port is removed (the behaviour REQ-3 forbids).
                int p = preferred;
                var owner = space.Owner[p] - 1;
                if (owner >= 0)
                {
                    if (_table.Mappings[owner].Kind != MappingKind.Dynamic) return -1;
                    EvictMapping(owner);
                }

                return p;
            }

            case PortAssignment.Preserving:
                if (preferred >= lo && preferred <= hi && PortUsable(space, proto, ext, preferred, dst, dport, now))
                {
                    return preferred;
                }

                goto case PortAssignment.Random;

            case PortAssignment.Random:
            {
                var start = lo + (int)(NextRandom() % (ulong)size);
                return Scan(space, proto, ext, start, lo, hi, preferred, dst, dport, now);
            }

            default:
            {
                var start = space.Cursor < lo || space.Cursor > hi ? lo : space.Cursor;
                var p = Scan(space, proto, ext, start, lo, hi, preferred, dst, dport, now);
                if (p >= 0) space.Cursor = p + 1;
                return p;
            }
        }
    }

    private int Scan(PortSpace space, byte proto, int ext, int start, int lo, int hi, ushort preferred, uint dst, ushort dport, int now)
    {
        var size = hi - lo + 1;
        var parity = _policy.PortParity;
        for (var k = 0; k < size; k++)
        {
            var p = start + k;
            if (p > hi) p -= size;
            if (parity && ((p ^ preferred) & 1) != 0) continue;
            if (PortUsable(space, proto, ext, p, dst, dport, now)) return p;
        }

        return -1;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool PortUsable(PortSpace space, byte proto, int ext, int port, uint dst, ushort dport, int now)
    {
        if (space.IsFree(port))
        {
            return space.IsCool(port, now);
        }

        if (!_share) return false;

        // Linux's rule: usable unless the reply tuple (external endpoint, remote) is taken, or a static/DMZ owns it.

        var owner = space.Owner[port] - 1;
        if (owner >= 0 && _table.Mappings[owner].Kind != MappingKind.Dynamic) return false;
        return _table.FindIn(proto, _ext[ext], (ushort)port, dst, dport) < 0;
    }

    private void AddStaticForward(StaticForward f)
    {
        var e = f.ExternalAddress is { } a ? ExternalIndex(a.Value) : 0;
        var proto = (byte)f.Protocol;
        var m = _table.AddMapping(proto, f.Internal.Value, (ushort)f.InternalPort, 0, 0, _ext[e], (ushort)f.ExternalPort, e, MappingKind.Static);
        TakePort(proto, e, f.ExternalPort, m);
    }

    // ---- inbound admission ----

    /// <summary>An inbound packet matched no session: may a mapping, a forward or the DMZ take it (RFC 4787
    /// REQ-8, RFC 5382 REQ-3/REQ-4)? Returns the new session or -1 with a reason.</summary>
    private int AdmitInbound(byte proto, int ext, ushort extPort, uint src, ushort sport, bool tcpNonSyn, out NatDropReason reason)
    {
        reason = NatDropReason.None;
        var space = SpaceIfAny(proto, ext);
        var owner = space is null ? -1 : space.Owner[extPort] - 1;
        if (owner >= 0)
        {
            ref var m = ref _table.Mappings[owner];
            bool allowed;
            if (m.Kind == MappingKind.Explicit) allowed = _filters.Count == 0 || FilterAllows(owner, src, sport);
            else if (m.Kind != MappingKind.Dynamic) allowed = true;
            else if (_share) allowed = false;
            else
            {
                allowed = _policy.Filtering switch
                {
                    FilteringBehavior.EndpointIndependent => true,
                    FilteringBehavior.AddressDependent => _table.MappingHasRemoteAddress(owner, src),
                    _ => false,
                };
            }

            if (!allowed)
            {
                reason = NatDropReason.Filtered;
                return -1;
            }

            reason = SessionRefusal(proto, m.IntAddr, m.IntPort, src, sport, tcpNonSyn);
            return reason == NatDropReason.None ? NewSession(owner, src, sport) : -1;
        }

        if (_config.DmzHost is { } dmz && (space is null || space.IsFree(extPort)))
        {
            reason = SessionRefusal(proto, dmz.Value, extPort, src, sport, tcpNonSyn);
            if (reason != NatDropReason.None)
            {
                return -1;
            }

            var m = _table.FindMapping(proto, dmz.Value, extPort, _ext[ext], 0);
            if (m < 0)
            {
                m = _table.AddMapping(proto, dmz.Value, extPort, _ext[ext], 0, _ext[ext], extPort, ext, MappingKind.Dmz);
                TakePort(proto, ext, extPort, m);
                _mappingsCreated++;
                Observer?.MappingCreated(new NatMappingEvent((IpProtocol)proto, new(dmz, extPort), new(new Ipv4Address(_ext[ext]), extPort), _now));
            }

            return NewSession(m, src, sport);
        }

        reason = NatDropReason.NoMapping;
        return -1;
    }

    /// <summary>Why an admitted inbound packet still may not open a session to (intAddr, intPort) from
    /// (src, sport): a TCP segment that is not a SYN, a full table, or that inside tuple already in use by another
    /// session; None when it may.</summary>
    private NatDropReason SessionRefusal(byte proto, uint intAddr, ushort intPort, uint src, ushort sport, bool tcpNonSyn) =>
        tcpNonSyn ? NatDropReason.NoSession
        : _table.IsFull ? NatDropReason.TableFull
        : _table.FindOut(proto, intAddr, intPort, src, sport) >= 0 ? NatDropReason.SessionConflict
        : NatDropReason.None;
}
