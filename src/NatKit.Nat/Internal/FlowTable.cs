using System.Runtime.CompilerServices;

namespace NatKit.Nat.Internal;

/// <summary>Session flag bits: TCP handshake/teardown as seen per direction, plus who has spoken.</summary>
internal static class SessionFlags
{
    public const byte SynOut = 1;
    public const byte SynIn = 2;
    public const byte FinOut = 4;
    public const byte FinIn = 8;
    public const byte Rst = 16;
    /// <summary>An inbound packet has been translated (Linux's "replied"; ends the unreplied UDP timer).</summary>
    public const byte Replied = 32;
}

/// <summary>Kinds of mapping.</summary>
internal static class MappingKind
{
    public const byte Dynamic = 0;
    public const byte Static = 1;
    public const byte Dmz = 2;
    /// <summary>Made by a port mapping protocol (<see cref="NatKit.Nat.IMappingTable"/>): lives until its lifetime ends.</summary>
    public const byte Explicit = 3;
}

/// <summary>One translated 5-tuple. 48 bytes; <see cref="Proto"/> 0 marks a free slot.</summary>
internal struct Session
{
    public uint IntAddr;
    public uint RemAddr;
    public uint ExtAddr;
    public ushort IntPort;
    public ushort RemPort;
    public ushort ExtPort;
    public byte Proto;
    public byte Flags;
    public int Mapping;
    public int MapNext;
    public int MapPrev;
    public int WheelNext;
    public int WheelPrev;
    public long LastRefresh;
}

/// <summary>One internal endpoint (and destination, per the mapping behaviour) to external endpoint binding.
/// 32 bytes. Lives while it has sessions, forever when static, until its lifetime ends when explicit.</summary>
internal struct Mapping
{
    public uint IntAddr;
    public uint DstAddr;
    public uint ExtAddr;
    public ushort IntPort;
    public ushort DstPort;
    public ushort ExtPort;
    public byte Proto;
    public byte Kind;
    public int SessionHead;
    public int SessionCount;
    public int ExtIndex;
}

/// <summary>
/// Sessions and mappings in flat struct arrays, with three open-addressing indices: outbound 5-tuple to
/// session, inbound (external endpoint, remote) to session, and mapping key to mapping. No per-entry objects,
/// so the GC never walks the table and memory per flow is arrays only.
/// </summary>
internal sealed class FlowTable
{
    private readonly ulong _seed;
    private readonly int _maxSessions;
    private int _freeSession = -1;
    private int _freeMapping = -1;
    private int _sessionHigh;
    private int _mappingHigh;

    public Session[] Sessions;
    public Mapping[] Mappings;
    public readonly SlotIndex OutIndex;
    public readonly SlotIndex InIndex;
    public readonly SlotIndex MapIndex;

    public FlowTable(int maxSessions, ulong seed, int initialCapacity = 1024)
    {
        _maxSessions = maxSessions;
        _seed = seed;
        var initial = Math.Min(initialCapacity, maxSessions);
        Sessions = new Session[initial];
        Mappings = new Mapping[initial];
        OutIndex = new SlotIndex(initial * 2);
        InIndex = new SlotIndex(initial * 2);
        MapIndex = new SlotIndex(initial * 2);
    }

    public int SessionCount { get; private set; }

    public int MappingCount { get; private set; }

    public int MaxSessions => _maxSessions;

    /// <summary>Bytes held by the arrays (for the bytes-per-flow measurement).</summary>
    public long Bytes => (long)Sessions.Length * Unsafe.SizeOf<Session>() + (long)Mappings.Length * Unsafe.SizeOf<Mapping>()
                         + OutIndex.Bytes + InIndex.Bytes + MapIndex.Bytes;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public uint Hash(byte proto, uint a1, ushort p1, uint a2, ushort p2)
    {
        var x = ((ulong)a1 << 32) | a2;
        var y = ((ulong)p1 << 32) | ((ulong)p2 << 16) | proto;
        var h = (x ^ _seed) * 0x9E3779B97F4A7C15UL;
        h ^= (y + (h >> 29)) * 0xC2B2AE3D27D4EB4FUL;
        h ^= h >> 32;
        h *= 0xBF58476D1CE4E5B9UL;
        return (uint)(h ^ (h >> 29));
    }

    // ---- lookups ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int FindOut(byte proto, uint intAddr, ushort intPort, uint remAddr, ushort remPort)
    {
        var m = new OutMatcher(Sessions, proto, intAddr, intPort, remAddr, remPort);
        return OutIndex.Find(Hash(proto, intAddr, intPort, remAddr, remPort), ref m);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int FindIn(byte proto, uint extAddr, ushort extPort, uint remAddr, ushort remPort)
    {
        var m = new InMatcher(Sessions, proto, extAddr, extPort, remAddr, remPort);
        return InIndex.Find(Hash(proto, extAddr, extPort, remAddr, remPort), ref m);
    }

    public int FindMapping(byte proto, uint intAddr, ushort intPort, uint dstAddr, ushort dstPort)
    {
        var m = new MapMatcher(Mappings, proto, intAddr, intPort, dstAddr, dstPort);
        return MapIndex.Find(Hash(proto, intAddr, intPort, dstAddr, dstPort), ref m);
    }

    // ---- mappings ----

    public int AddMapping(byte proto, uint intAddr, ushort intPort, uint dstAddr, ushort dstPort, uint extAddr,
        ushort extPort, int extIndex, byte kind)
    {
        int index;
        if (_freeMapping >= 0)
        {
            index = _freeMapping;
            _freeMapping = Mappings[index].SessionHead;
        }
        else
        {
            if (_mappingHigh == Mappings.Length)
            {
                Array.Resize(ref Mappings, Mappings.Length * 2);
            }

            index = _mappingHigh++;
        }

        ref var m = ref Mappings[index];
        m = new Mapping
        {
            Proto = proto, IntAddr = intAddr, IntPort = intPort, DstAddr = dstAddr, DstPort = dstPort,
            ExtAddr = extAddr, ExtPort = extPort, ExtIndex = extIndex, Kind = kind, SessionHead = -1,
        };
        var hasher = new MapHasher(this);
        MapIndex.Insert(Hash(proto, intAddr, intPort, dstAddr, dstPort), index, ref hasher);
        MappingCount++;
        return index;
    }

    public void RemoveMapping(int index)
    {
        ref var m = ref Mappings[index];
        var hasher = new MapHasher(this);
        MapIndex.Remove(Hash(m.Proto, m.IntAddr, m.IntPort, m.DstAddr, m.DstPort), index, ref hasher);
        m.Proto = 0;
        m.SessionHead = _freeMapping;
        _freeMapping = index;
        MappingCount--;
    }

    // ---- sessions ----

    public bool IsFull => SessionCount >= _maxSessions;

    public int AddSession(int mapping, uint remAddr, ushort remPort, long now)
    {
        int index;
        if (_freeSession >= 0)
        {
            index = _freeSession;
            _freeSession = Sessions[index].MapNext;
        }
        else
        {
            if (_sessionHigh == Sessions.Length)
            {
                Array.Resize(ref Sessions, Math.Min(Sessions.Length * 2, Math.Max(_maxSessions, 16)));
            }

            index = _sessionHigh++;
        }

        ref var mp = ref Mappings[mapping];
        ref var s = ref Sessions[index];
        s = new Session
        {
            Proto = mp.Proto, IntAddr = mp.IntAddr, IntPort = mp.IntPort, ExtAddr = mp.ExtAddr, ExtPort = mp.ExtPort,
            RemAddr = remAddr, RemPort = remPort, Mapping = mapping, LastRefresh = now,
            MapNext = mp.SessionHead, MapPrev = -1, WheelNext = -1, WheelPrev = TimerWheel.OffWheel,
        };
        if (mp.SessionHead >= 0)
        {
            Sessions[mp.SessionHead].MapPrev = index;
        }

        mp.SessionHead = index;
        mp.SessionCount++;
        var outHasher = new OutHasher(this);
        OutIndex.Insert(Hash(s.Proto, s.IntAddr, s.IntPort, remAddr, remPort), index, ref outHasher);
        var inHasher = new InHasher(this);
        InIndex.Insert(Hash(s.Proto, s.ExtAddr, s.ExtPort, remAddr, remPort), index, ref inHasher);
        SessionCount++;
        return index;
    }

    /// <summary>Unlinks a session from its indices and its mapping. Returns the mapping's remaining session count.
    /// The caller has already taken it off the timer wheel.</summary>
    public int RemoveSession(int index)
    {
        ref var s = ref Sessions[index];
        var outHasher = new OutHasher(this);
        OutIndex.Remove(Hash(s.Proto, s.IntAddr, s.IntPort, s.RemAddr, s.RemPort), index, ref outHasher);
        var inHasher = new InHasher(this);
        InIndex.Remove(Hash(s.Proto, s.ExtAddr, s.ExtPort, s.RemAddr, s.RemPort), index, ref inHasher);
        ref var mp = ref Mappings[s.Mapping];
        if (s.MapPrev >= 0) Sessions[s.MapPrev].MapNext = s.MapNext;
        else mp.SessionHead = s.MapNext;
        if (s.MapNext >= 0) Sessions[s.MapNext].MapPrev = s.MapPrev;
        mp.SessionCount--;
        s.Proto = 0;
        s.MapNext = _freeSession;
        _freeSession = index;
        SessionCount--;
        return mp.SessionCount;
    }

    /// <summary>True when the mapping has a session toward <paramref name="remAddr"/> (address-dependent filtering).</summary>
    public bool MappingHasRemoteAddress(int mapping, uint remAddr)
    {
        for (var i = Mappings[mapping].SessionHead; i >= 0; i = Sessions[i].MapNext)
        {
            if (Sessions[i].RemAddr == remAddr) return true;
        }

        return false;
    }

    /// <summary>Indices of live sessions (for snapshots; not a hot path).</summary>
    public IEnumerable<int> LiveSessions()
    {
        for (var i = 0; i < _sessionHigh; i++)
        {
            if (Sessions[i].Proto != 0) yield return i;
        }
    }

    private readonly struct OutMatcher(Session[] s, byte proto, uint a1, ushort p1, uint a2, ushort p2) : IEntryMatcher
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public bool Matches(int index)
        {
            ref var e = ref s[index];
            return e.IntAddr == a1 && e.RemAddr == a2 && e.IntPort == p1 && e.RemPort == p2 && e.Proto == proto;
        }
    }

    private readonly struct InMatcher(Session[] s, byte proto, uint a1, ushort p1, uint a2, ushort p2) : IEntryMatcher
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public bool Matches(int index)
        {
            ref var e = ref s[index];
            return e.ExtAddr == a1 && e.RemAddr == a2 && e.ExtPort == p1 && e.RemPort == p2 && e.Proto == proto;
        }
    }

    private readonly struct MapMatcher(Mapping[] m, byte proto, uint a1, ushort p1, uint a2, ushort p2) : IEntryMatcher
    {
        public bool Matches(int index)
        {
            ref var e = ref m[index];
            return e.IntAddr == a1 && e.DstAddr == a2 && e.IntPort == p1 && e.DstPort == p2 && e.Proto == proto;
        }
    }

    private readonly struct OutHasher(FlowTable t) : IEntryHasher
    {
        public uint HashOf(int index)
        {
            ref var e = ref t.Sessions[index];
            return t.Hash(e.Proto, e.IntAddr, e.IntPort, e.RemAddr, e.RemPort);
        }
    }

    private readonly struct InHasher(FlowTable t) : IEntryHasher
    {
        public uint HashOf(int index)
        {
            ref var e = ref t.Sessions[index];
            return t.Hash(e.Proto, e.ExtAddr, e.ExtPort, e.RemAddr, e.RemPort);
        }
    }

    private readonly struct MapHasher(FlowTable t) : IEntryHasher
    {
        public uint HashOf(int index)
        {
            ref var e = ref t.Mappings[index];
            return t.Hash(e.Proto, e.IntAddr, e.IntPort, e.DstAddr, e.DstPort);
        }
    }
}
