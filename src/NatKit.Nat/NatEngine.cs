using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using NatKit.Nat.Internal;
using NatKit.Packets;

namespace NatKit.Nat;

/// <summary>
/// The NAT44 engine. Pure: no sockets, no clock, no threads. Hand it a packet, the side it came from and the
/// time; it rewrites the packet in place and says where it goes. Packets it makes itself (ICMP errors,
/// fragments, released fragments) go to the <see cref="INatSink"/>. Not thread-safe: one caller at a time
/// (shard by inside host for several cores). Time is milliseconds on any monotonic clock, never going back.
/// See docs/nat.md, "Driving the engine".
/// </summary>
public sealed partial class NatEngine : IMappingTable, IDisposable
{
    private const int ProtoTcp = 0;
    private const int ProtoUdp = 1;
    private const int ProtoIcmp = 2;
    private static readonly NullSink NoSink = new();

    private readonly NatConfig _config;
    private readonly NatPolicy _policy;
    private readonly FlowTable _table;
    private readonly TimerWheel _wheel;
    private readonly uint[] _ext;
    private readonly uint _extMin;
    private readonly uint _extMax;
    private readonly PortSpace?[] _ports;
    private readonly Dictionary<uint, int> _hosts = []; // mappings per internal address, with a per-host limit only
    private readonly uint[] _insideNet;
    private readonly uint[] _insideMask;
    private readonly long _epoch;
    private readonly long _udpMs;
    private readonly long _udpUnrepliedMs;
    private readonly long _tcpEstablishedMs;
    private readonly long _tcpTransitoryMs;
    private readonly long _icmpMs;
    private readonly int _holdDownSec;
    private readonly bool _share;
    private bool _hasEndpointMappings; // static forwards or explicit mappings: endpoint-keyed mappings under non-EIM
    private readonly byte[] _scratch = new byte[65536 + 64];
    private readonly Meter _meter;
    private readonly ulong _pairingSeed;
    private ulong _random;
    private int _roundRobin;
    private long _now;
    private INatSink _sink = NoSink;

    private long _packetsOut;
    private long _packetsIn;
    private long _dropped;
    private long _hairpinned;
    private long _mappingsCreated;
    private long _mappingsRemoved;
    private long _sessionsCreated;
    private long _sessionsExpired;
    private long _icmpSent;
    private long _fragmentsHeld;
    private readonly long[] _dropsByReason = new long[Enum.GetValues<NatDropReason>().Length];

    /// <summary>Makes an engine; throws <see cref="ArgumentException"/> naming the first bad field.</summary>
    /// <param name="config">The behaviour and limits.</param>
    /// <param name="startTime">The engine time (ms) at start: timers count from here.</param>
    /// <param name="observer">Told about mapping creation and removal (RFC 6888 logging), or null.</param>
    public NatEngine(NatConfig config, long startTime = 0, INatObserver? observer = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        var errors = config.Validate();
        if (errors.Count > 0)
        {
            throw new ArgumentException(errors[0], nameof(config));
        }

        _config = config;
        _policy = config.Policy;
        Observer = observer;
        _epoch = startTime;
        _now = startTime;
        _random = (ulong)(uint)config.RandomSeed * 0x9E3779B97F4A7C15UL | 1;
        // The table hash is keyed with a secret per engine, so outsiders cannot aim collisions at one bucket
        // chain; nothing observable depends on it (choices that must be reproducible use RandomSeed).
        _table = new FlowTable(config.MaxFlows, BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8)),
            config.InitialFlowCapacity ?? Math.Min(1024, config.MaxFlows));
        _pairingSeed = _random ^ 0x5DEECE66DUL;
        _wheel = new TimerWheel(startTime);
        _ext = new uint[config.ExternalAddresses.Count];
        for (var i = 0; i < _ext.Length; i++) _ext[i] = config.ExternalAddresses[i].Value;
        _extMin = _ext.Min();
        _extMax = _ext.Max();
        _ports = new PortSpace?[3 * _ext.Length];
        _insideNet = new uint[config.InsidePrefixes.Count];
        _insideMask = new uint[config.InsidePrefixes.Count];
        for (var i = 0; i < _insideNet.Length; i++)
        {
            _insideNet[i] = config.InsidePrefixes[i].Network.Value;
            _insideMask[i] = config.InsidePrefixes[i].Mask.Value;
        }

        _udpMs = Ms(_policy.UdpTimeout);
        _udpUnrepliedMs = Ms(_policy.UdpUnrepliedTimeout ?? _policy.UdpTimeout);
        _tcpEstablishedMs = Ms(_policy.TcpEstablishedTimeout);
        _tcpTransitoryMs = Ms(_policy.TcpTransitoryTimeout);
        _icmpMs = Ms(_policy.IcmpQueryTimeout);
        _holdDownSec = (int)Math.Ceiling(_policy.PortHoldDown.TotalSeconds);
        _share = _policy.SharePortsAcrossDestinations;
        _fragmentTimeoutMs = Ms(config.FragmentTimeout);
        _fragTracks = new FragmentTrack[Math.Max(16, config.MaxHeldFragments * 2)];
        _held = new HeldPacket[config.MaxHeldFragments];
        foreach (var f in config.StaticForwards)
        {
            AddStaticForward(f);
            _hasEndpointMappings = true;
        }

        _meter = new Meter("NatKit.Nat");
        _meter.CreateObservableCounter("natkit.nat.packets.outbound", () => _packetsOut, "{packet}", "Packets handed in from the inside");
        _meter.CreateObservableCounter("natkit.nat.packets.inbound", () => _packetsIn, "{packet}", "Packets handed in from the outside");
        _meter.CreateObservableCounter("natkit.nat.packets.dropped", DropMeasurements, "{packet}", "Packets dropped, by reason");
        _meter.CreateObservableCounter("natkit.nat.packets.hairpinned", () => _hairpinned, "{packet}", "Packets hairpinned (RFC 4787 REQ-9)");
        _meter.CreateObservableCounter("natkit.nat.mappings.created", () => _mappingsCreated, "{mapping}", "Mappings created");
        _meter.CreateObservableCounter("natkit.nat.mappings.removed", () => _mappingsRemoved, "{mapping}", "Mappings removed");
        _meter.CreateObservableCounter("natkit.nat.sessions.created", () => _sessionsCreated, "{session}", "Sessions created");
        _meter.CreateObservableCounter("natkit.nat.sessions.expired", () => _sessionsExpired, "{session}", "Sessions expired or closed");
        _meter.CreateObservableCounter("natkit.nat.icmp.sent", () => _icmpSent, "{packet}", "ICMP errors the NAT originated");
        _meter.CreateObservableUpDownCounter("natkit.nat.sessions.active", () => _table.SessionCount, "{session}", "Live sessions");
        _meter.CreateObservableUpDownCounter("natkit.nat.mappings.active", () => _table.MappingCount, "{mapping}", "Live mappings");
    }

    /// <summary>This engine's meter (every engine has its own, all named "NatKit.Nat").</summary>
    internal Meter Meter => _meter;

    /// <summary>The configuration in force.</summary>
    public NatConfig Config => _config;

    /// <summary>Told about mapping creation and removal; may be set at any time.</summary>
    public INatObserver? Observer { get; set; }

    /// <summary>Live sessions (one per 5-tuple).</summary>
    public int SessionCount => _table.SessionCount;

    /// <summary>Live mappings (static forwards and explicit mappings included).</summary>
    public int MappingCount => _table.MappingCount;

    /// <summary>Bytes held by the flow table's arrays (excluding the per-address port maps).</summary>
    public long TableBytes => _table.Bytes;

    /// <summary>Counters since start.</summary>
    public NatCounters Counters => new(_packetsOut, _packetsIn, _dropped, _hairpinned, _mappingsCreated, _mappingsRemoved,
        _sessionsCreated, _sessionsExpired, _icmpSent, _fragmentsHeld);

    /// <summary>Packets dropped for <paramref name="reason"/> since start.</summary>
    public long DropCount(NatDropReason reason) => _dropsByReason[(int)reason];

    /// <summary>
    /// Translates one packet in place. <paramref name="buffer"/> holds the packet in its first
    /// <paramref name="length"/> bytes (the rest may be spare room); <paramref name="length"/> is updated if the
    /// packet's length changes (link padding beyond the IPv4 total length is cut). Never throws for any bytes.
    /// </summary>
    /// <param name="buffer">The packet, rewritten in place.</param>
    /// <param name="length">Bytes of <paramref name="buffer"/> that are the packet.</param>
    /// <param name="direction">The side it arrived from.</param>
    /// <param name="now">Engine time in milliseconds (monotonic, never decreasing).</param>
    /// <param name="sink">Where packets the engine makes go (ICMP errors, fragments); null discards them.</param>
    public NatVerdict Process(Span<byte> buffer, ref int length, NatDirection direction, long now, INatSink? sink)
    {
        if (now > _now) _now = now;
        _sink = sink ?? NoSink;
        if (_wheel.IsDue(_now)) RunTimers();
        if (_now >= _explicitDue) ExpireExplicit();
        if (direction == NatDirection.Outbound) _packetsOut++;
        else _packetsIn++;
        if ((uint)length > (uint)buffer.Length || length < 1)
        {
            return Drop(NatDropReason.Malformed);
        }

        var version = buffer[0] >> 4;
        if (version != 4)
        {
            if (version == 6)
            {
                if (_config.Ipv6 == Ipv6Handling.PassThrough)
                {
                    return direction == NatDirection.Outbound ? NatVerdict.Outside : NatVerdict.Inside;
                }

                return Drop(NatDropReason.Ipv6NotTranslated);
            }

            return Drop(NatDropReason.UnknownVersion);
        }

        if (!Ipv4Packet.TryParse(buffer[..length], out var ip))
        {
            return Drop(NatDropReason.Malformed);
        }

        if (!ip.IsHeaderChecksumValid)
        {
            return Drop(NatDropReason.BadHeaderChecksum);
        }

        length = ip.Buffer.Length;
        return direction == NatDirection.Outbound ? Outbound(ip) : Inbound(ip);
    }

    /// <summary>Runs timers up to <paramref name="now"/>: expiry, held SYNs (RFC 5382 REQ-4), held fragments.
    /// <see cref="Process"/> does this too; call Tick when no packets flow.</summary>
    public void Tick(long now, INatSink? sink)
    {
        if (now > _now) _now = now;
        _sink = sink ?? NoSink;
        if (_wheel.IsDue(_now)) RunTimers();
        if (_now >= _explicitDue) ExpireExplicit();
    }

    /// <summary>A copy of every live session (not a hot path: allocates).</summary>
    public IReadOnlyList<NatFlowInfo> SnapshotFlows()
    {
        var list = new List<NatFlowInfo>(_table.SessionCount);
        foreach (var i in _table.LiveSessions())
        {
            ref var s = ref _table.Sessions[i];
            list.Add(new NatFlowInfo((IpProtocol)s.Proto, new(new Ipv4Address(s.IntAddr), s.IntPort),
                new(new Ipv4Address(s.ExtAddr), s.ExtPort), new(new Ipv4Address(s.RemAddr), s.RemPort),
                TcpStateOf(s), s.LastRefresh, Deadline(ref s)));
        }

        return list;
    }

    /// <summary>Finds the external endpoint an internal endpoint uses toward a remote (tests, tools).</summary>
    public NatEndpoint? FindExternal(IpProtocol protocol, NatEndpoint inside, NatEndpoint remote)
    {
        var i = _table.FindOut((byte)protocol, inside.Address.Value, inside.Port, remote.Address.Value, remote.Port);
        if (i < 0) return null;
        ref var s = ref _table.Sessions[i];
        return new NatEndpoint(new Ipv4Address(s.ExtAddr), s.ExtPort);
    }

    public void Dispose() => _meter.Dispose();

    /// <summary>Checks the tables agree with each other; returns the first inconsistency or null (tests).</summary>
    internal string? CheckInvariants()
    {
        var t = _table;
        if (t.OutIndex.Count != t.SessionCount || t.InIndex.Count != t.SessionCount) return "index counts differ from the session count";
        if (t.MapIndex.Count != t.MappingCount) return "mapping index count differs from the mapping count";
        if (_wheel.CountScheduled(t.Sessions) != t.SessionCount) return "the wheel does not hold every session once";
        var live = 0;
        foreach (var i in t.LiveSessions())
        {
            live++;
            ref var s = ref t.Sessions[i];
            if (t.FindOut(s.Proto, s.IntAddr, s.IntPort, s.RemAddr, s.RemPort) != i) return $"session {i} not found outbound";
            if (t.FindIn(s.Proto, s.ExtAddr, s.ExtPort, s.RemAddr, s.RemPort) != i) return $"session {i} not found inbound";
            ref var m = ref t.Mappings[s.Mapping];
            if (m.Proto != s.Proto || m.ExtAddr != s.ExtAddr || m.ExtPort != s.ExtPort) return $"session {i} disagrees with its mapping";
            if (SpaceIfAny(m.Proto, m.ExtIndex) is not { } space || space.IsFree(m.ExtPort)) return $"session {i}'s port is not taken";
        }

        return live == t.SessionCount ? null : "live sessions differ from the session count";
    }

    private static long Ms(TimeSpan t) => (long)t.TotalMilliseconds;

    private IEnumerable<Measurement<long>> DropMeasurements()
    {
        var names = Enum.GetNames<NatDropReason>();
        for (var i = 1; i < _dropsByReason.Length; i++)
        {
            if (_dropsByReason[i] != 0)
            {
                yield return new Measurement<long>(_dropsByReason[i], new KeyValuePair<string, object?>("reason", names[i]));
            }
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private NatVerdict Drop(NatDropReason reason)
    {
        _dropped++;
        _dropsByReason[(int)reason]++;
        return NatVerdict.Drop(reason);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool IsInside(uint address)
    {
        var nets = _insideNet;
        for (var i = 0; i < nets.Length; i++)
        {
            if ((address & _insideMask[i]) == nets[i]) return true;
        }

        return false;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int ExternalIndex(uint address)
    {
        if (address - _extMin > _extMax - _extMin) return -1;
        var ext = _ext;
        for (var i = 0; i < ext.Length; i++)
        {
            if (ext[i] == address) return i;
        }

        return -1;
    }

    private static int ProtoIndex(byte proto) => proto switch
    {
        (byte)IpProtocol.Tcp => ProtoTcp,
        (byte)IpProtocol.Udp => ProtoUdp,
        _ => ProtoIcmp,
    };

    private PortSpace Space(byte proto, int ext) =>
        _ports[(ProtoIndex(proto) * _ext.Length) + ext] ??= new PortSpace(_share, _holdDownSec > 0);

    private PortSpace? SpaceIfAny(byte proto, int ext) => _ports[(ProtoIndex(proto) * _ext.Length) + ext];

    private int NowSec => (int)((_now - _epoch) / 1000);

    /// <summary>Paired pooling's choice of external address for an inside address: fixed for a given seed.</summary>
    private int PairedExternal(uint inside)
    {
        var h = (inside ^ _pairingSeed) * 0x9E3779B97F4A7C15UL;
        return (int)((h >> 32) % (uint)_ext.Length);
    }

    private ulong NextRandom()
    {
        var x = _random;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        _random = x;
        return x;
    }

    private sealed class NullSink : INatSink
    {
        public void Emit(ReadOnlySpan<byte> packet, NatSide side)
        {
        }
    }
}
