using System.Runtime.InteropServices;
using NatKit.Nat.Internal;
using NatKit.Packets;

namespace NatKit.Nat;

/// <summary>Explicit mappings at run time (<see cref="IMappingTable"/>): what NAT-PMP, PCP and UPnP ask for.</summary>
public sealed partial class NatEngine
{
    private readonly Dictionary<int, long> _explicit = []; // mapping index -> expiry (engine ms)
    private readonly Dictionary<uint, int> _explicitPerHost = [];
    private readonly Dictionary<int, MappingFilter[]> _filters = []; // mapping index -> FILTER (RFC 6887 13.3)
    private long _explicitDue = long.MaxValue;

    /// <inheritdoc/>
    public IReadOnlyList<Ipv4Address> ExternalAddresses => _config.ExternalAddresses;

    /// <inheritdoc/>
    public NatPolicy Policy => _policy;

    /// <inheritdoc/>
    public bool IsInside(Ipv4Address address) => IsInside(address.Value);

    /// <summary>Explicit mappings alive now (expired ones may linger until the next packet or tick).</summary>
    public int ExplicitMappingCount => _explicit.Count;

    /// <inheritdoc/>
    public MappingResult Map(in MappingRequest request, long now)
    {
        Advance(now);
        if (request.Protocol is not (IpProtocol.Udp or IpProtocol.Tcp)) return new(MappingStatus.UnsupportedProtocol, default);
        var inside = request.Internal;
        if (inside.Port == 0 || !IsInside(inside.Address.Value)) return new(MappingStatus.NotInside, default);
        var filters = request.Filters;
        if (filters is { Count: > MappingFilter.MaxPerMapping }) return new(MappingStatus.TooManyFilters, default);
        var proto = (byte)request.Protocol;
        var address = inside.Address.Value;
        var lifetime = request.Lifetime > _policy.PortMappingMaxLifetime ? _policy.PortMappingMaxLifetime : request.Lifetime;
        var expires = _now + Math.Max(1, Ms(lifetime));

        var m = _table.FindMapping(proto, address, inside.Port, 0, 0);
        if (m >= 0)
        {
            ref var existing = ref _table.Mappings[m];
            if (existing.Kind == MappingKind.Static) return new(MappingStatus.PortUnavailable, default);
            if (request.RequireExternalPort && request.ExternalPort != 0 && existing.ExtPort != request.ExternalPort)
            {
                return new(MappingStatus.PortUnavailable, default);
            }

            if (existing.Kind == MappingKind.Explicit)
            {
                SetExpiry(m, expires);
                SetFilters(m, filters);
                return new(MappingStatus.Refreshed, Describe(m, expires));
            }

            // RFC 6887 section 11.3: an implicit (dynamic) mapping of the endpoint becomes the explicit one, so the
            // host keeps the external port its traffic already uses.
            if (existing.Kind == MappingKind.Dynamic)
            {
                if (!ExplicitQuotaAllows(address)) return new(MappingStatus.QuotaExceeded, default);
                existing.Kind = MappingKind.Explicit;
                CountExplicit(address, +1);
                SetExpiry(m, expires);
                SetFilters(m, filters);
                _hasEndpointMappings = true;
                return new(MappingStatus.Created, Describe(m, expires));
            }
        }

        if (!ExplicitQuotaAllows(address)) return new(MappingStatus.QuotaExceeded, default);
        var limit = _policy.MaxMappingsPerHost;
        if (limit > 0 && _hosts.TryGetValue(address, out var count) && count >= limit) return new(MappingStatus.QuotaExceeded, default);

        var e = request.ExternalAddress is { } wanted && ExternalIndex(wanted.Value) is var wi and >= 0 ? wi
            : _ext.Length == 1 ? 0 : PairedExternal(address);
        var port = ExplicitPort(proto, e, request.ExternalPort != 0 ? request.ExternalPort : inside.Port, request.RequireExternalPort && request.ExternalPort != 0);
        if (port < 0)
        {
            return new(request.RequireExternalPort && request.ExternalPort != 0 ? MappingStatus.PortUnavailable : MappingStatus.NoResources, default);
        }

        if (limit > 0) CollectionsMarshal.GetValueRefOrAddDefault(_hosts, address, out _)++;
        m = _table.AddMapping(proto, address, inside.Port, 0, 0, _ext[e], (ushort)port, e, MappingKind.Explicit);
        TakePort(proto, e, port, m);
        CountExplicit(address, +1);
        SetExpiry(m, expires);
        SetFilters(m, filters);
        _hasEndpointMappings = true;
        _mappingsCreated++;
        Observer?.MappingCreated(new NatMappingEvent(request.Protocol, inside, new(new Ipv4Address(_ext[e]), (ushort)port), _now));
        return new(MappingStatus.Created, Describe(m, expires));
    }

    /// <inheritdoc/>
    public MappingResult MapPeer(IpProtocol protocol, NatEndpoint internalEndpoint, NatEndpoint remote, TimeSpan lifetime, long now)
    {
        Advance(now);
        if (protocol is not (IpProtocol.Udp or IpProtocol.Tcp)) return new(MappingStatus.UnsupportedProtocol, default);
        var src = internalEndpoint.Address.Value;
        if (internalEndpoint.Port == 0 || !IsInside(src)) return new(MappingStatus.NotInside, default);
        var dst = remote.Address.Value;
        if (remote.Port == 0 || dst == 0 || IsInside(dst) || ExternalIndex(dst) >= 0 || remote.Address.IsMulticast)
        {
            return new(MappingStatus.BadRemote, default);
        }

        var proto = (byte)protocol;
        var status = MappingStatus.Refreshed;
        var idx = _table.FindOut(proto, src, internalEndpoint.Port, dst, remote.Port);
        if (idx < 0)
        {
            idx = CreateOutbound(proto, src, internalEndpoint.Port, dst, remote.Port, out var reason);
            if (idx < 0) return new(reason == NatDropReason.HostLimit ? MappingStatus.QuotaExceeded : MappingStatus.NoResources, default);
            status = MappingStatus.Created;
        }

        ref var s = ref _table.Sessions[idx];
        if (lifetime > _policy.PortMappingMaxLifetime) lifetime = _policy.PortMappingMaxLifetime;
        // The idle timer runs from LastRefresh, so holding the session until `until` moves LastRefresh forward (the
        // wheel re-checks a later deadline lazily); packets only ever move it later (Touch).
        var held = _now + Ms(lifetime) - Timeout(ref s);
        if (lifetime > TimeSpan.Zero && held > s.LastRefresh)
        {
            s.LastRefresh = held;
        }
        else if (lifetime == TimeSpan.Zero && s.LastRefresh > _now)
        {
            s.LastRefresh = _now; // an earlier deadline: move it to its slot on the wheel
            _wheel.Unlink(_table.Sessions, idx);
            _wheel.Schedule(_table.Sessions, idx, Deadline(ref s));
        }

        var deadline = Deadline(ref s);
        return new(status, new ExplicitMapping(protocol, internalEndpoint, new(new Ipv4Address(s.ExtAddr), s.ExtPort), deadline));
    }

    /// <inheritdoc/>
    public bool TryGetMapping(IpProtocol protocol, NatEndpoint internalEndpoint, long now, out ExplicitMapping mapping)
    {
        Advance(now);
        mapping = default;
        var m = _table.FindMapping((byte)protocol, internalEndpoint.Address.Value, internalEndpoint.Port, 0, 0);
        if (m < 0 || !_explicit.TryGetValue(m, out var expires)) return false;
        mapping = Describe(m, expires);
        return true;
    }

    /// <inheritdoc/>
    public bool Unmap(IpProtocol protocol, NatEndpoint internalEndpoint, long now)
    {
        Advance(now);
        var m = _table.FindMapping((byte)protocol, internalEndpoint.Address.Value, internalEndpoint.Port, 0, 0);
        if (m < 0 || _table.Mappings[m].Kind != MappingKind.Explicit) return false;
        EndExplicit(m);
        return true;
    }

    /// <inheritdoc/>
    public IReadOnlyList<ExplicitMapping> ListMappings(long now)
    {
        Advance(now);
        var list = new List<ExplicitMapping>(_explicit.Count);
        foreach (var (m, expires) in _explicit) list.Add(Describe(m, expires));
        list.Sort(static (a, b) => a.External.Port != b.External.Port ? a.External.Port.CompareTo(b.External.Port) : a.Protocol.CompareTo(b.Protocol));
        return list;
    }

    private void Advance(long now)
    {
        if (now > _now) _now = now;
        if (_now >= _explicitDue) ExpireExplicit();
    }

    private ExplicitMapping Describe(int m, long expires)
    {
        ref var x = ref _table.Mappings[m];
        return new ExplicitMapping((IpProtocol)x.Proto, new(new Ipv4Address(x.IntAddr), x.IntPort), new(new Ipv4Address(x.ExtAddr), x.ExtPort), expires);
    }

    private bool ExplicitQuotaAllows(uint address) =>
        !_explicitPerHost.TryGetValue(address, out var n) ? _policy.MaxPortMappingsPerHost > 0 : n < _policy.MaxPortMappingsPerHost;

    private void CountExplicit(uint address, int delta)
    {
        ref var n = ref CollectionsMarshal.GetValueRefOrAddDefault(_explicitPerHost, address, out _);
        n += delta;
        if (n <= 0) _explicitPerHost.Remove(address);
    }

    private void SetFilters(int m, IReadOnlyList<MappingFilter>? filters)
    {
        if (filters is null || filters.Count == 0) _filters.Remove(m);
        else _filters[m] = [.. filters];
    }

    /// <summary>FILTER (RFC 6887 section 13.3): may this remote send into explicit mapping <paramref name="m"/>?</summary>
    private bool FilterAllows(int m, uint address, ushort port)
    {
        if (!_filters.TryGetValue(m, out var filters)) return true;
        foreach (var f in filters)
        {
            if (f.Allows(new Ipv4Address(address), port)) return true;
        }

        return false;
    }

    private void SetExpiry(int m, long expires)
    {
        _explicit[m] = expires;
        if (expires < _explicitDue) _explicitDue = expires;
    }

    /// <summary>A free, cooled-down external port for an explicit mapping: <paramref name="preferred"/> when it is in
    /// the policy's range and free, else (unless <paramref name="exact"/>) a random one. Never evicts, never shares:
    /// an explicit mapping owns its port outright, because anyone may reach it.</summary>
    private int ExplicitPort(byte proto, int e, ushort preferred, bool exact)
    {
        var space = Space(proto, e);
        var lo = _policy.PortRangeStart;
        var hi = _policy.PortRangeEnd;
        var now = NowSec;
        if (preferred >= lo && preferred <= hi && space.IsFree(preferred) && space.IsCool(preferred, now)) return preferred;
        if (exact) return -1;
        var size = hi - lo + 1;
        var start = lo + (int)(NextRandom() % (ulong)size);
        for (var k = 0; k < size; k++)
        {
            var p = start + k;
            if (p > hi) p -= size;
            if (space.IsFree(p) && space.IsCool(p, now)) return p;
        }

        return -1;
    }

    /// <summary>Ends an explicit mapping (deleted or expired). An endpoint-independent one with live sessions becomes
    /// the dynamic mapping its traffic would have made; otherwise it goes with its sessions.</summary>
    private void EndExplicit(int m)
    {
        ref var x = ref _table.Mappings[m];
        if (x.SessionCount > 0 && _policy.Mapping == MappingBehavior.EndpointIndependent)
        {
            ForgetExplicit(m, x.IntAddr);
            x.Kind = MappingKind.Dynamic;
            return;
        }

        EvictMapping(m); // FreeMapping calls ForgetExplicit
    }

    /// <summary>Drops the explicit bookkeeping of mapping <paramref name="m"/> (its expiry and its host's count).</summary>
    private void ForgetExplicit(int m, uint address)
    {
        if (_explicit.Remove(m)) CountExplicit(address, -1);
        _filters.Remove(m);
    }

    private void ExpireExplicit()
    {
        List<int>? due = null;
        var next = long.MaxValue;
        foreach (var (m, expires) in _explicit)
        {
            if (expires <= _now) (due ??= []).Add(m);
            else if (expires < next) next = expires;
        }

        _explicitDue = next;
        if (due is null) return;
        foreach (var m in due) EndExplicit(m);
    }
}
