using System.Buffers;
using NatKit.Packets;

namespace NatKit.Nat;

/// <summary>
/// Fragments (RFC 4787 REQ-13/14): the first fragment is translated like a whole packet and its translation
/// remembered by (source, destination, protocol, identification); later fragments reuse it. Fragments that
/// arrive before their first are held (bounded count and time) and released when it comes. Packets bigger than
/// the egress MTU are split (DF clear) or answered with Fragmentation Needed (DF set). Unsolicited SYNs on hold
/// (RFC 5382 REQ-4) live here too: both are "held packets".
/// </summary>
public sealed partial class NatEngine
{
    private const int HeldSynSlots = 64;
    private const long SynHoldMs = 6000;
    private readonly long _fragmentTimeoutMs;
    private readonly FragmentTrack[] _fragTracks;
    private readonly HeldPacket[] _held;
    private readonly HeldPacket[] _heldSyns = new HeldPacket[HeldSynSlots];
    private int _heldCount;
    private int _heldSynCount;
    private int _trackCount;

    private struct FragmentTrack
    {
        public uint Src;
        public uint Dst;
        public uint NewSrc;
        public uint NewDst;
        public ushort Id;
        public byte Proto;
        public byte Direction;
        public byte Action;
        public long Expires;
    }

    private struct HeldPacket
    {
        public byte[]? Buffer;
        public int Length;
        public uint Src;
        public uint Dst;
        public ushort Id;
        public ushort SrcPort;
        public ushort DstPort;
        public byte Proto;
        public byte Direction;
        public long Expires;
    }

    private void RecordFragment(Ipv4Packet ip, NatDirection direction, uint src, uint dst, uint newSrc, uint newDst, NatAction action)
    {
        var id = ip.Identification;
        var proto = (byte)ip.Protocol;
        var slot = -1;
        var oldest = 0;
        for (var i = 0; i < _fragTracks.Length; i++)
        {
            ref var t = ref _fragTracks[i];
            if (t.Expires == 0 || t.Expires <= _now)
            {
                if (slot < 0) slot = i;
                continue;
            }

            if (t.Src == src && t.Dst == dst && t.Id == id && t.Proto == proto && t.Direction == (byte)direction)
            {
                slot = i;
                break;
            }

            if (t.Expires < _fragTracks[oldest].Expires) oldest = i;
        }

        if (slot < 0) slot = oldest;
        if (_fragTracks[slot].Expires == 0) _trackCount++;
        _fragTracks[slot] = new FragmentTrack
        {
            Src = src, Dst = dst, NewSrc = newSrc, NewDst = newDst, Id = id, Proto = proto, Direction = (byte)direction,
            Action = (byte)action, Expires = _now + _fragmentTimeoutMs,
        };
        if (_heldCount > 0) ReleaseHeld(ref _fragTracks[slot]);
    }

    /// <summary>A non-first fragment: translated by its first fragment's record, or held until it comes.</summary>
    private NatVerdict ForwardFragment(Ipv4Packet ip, NatDirection direction)
    {
        var src = ip.Source.Value;
        var dst = ip.Destination.Value;
        var id = ip.Identification;
        var proto = (byte)ip.Protocol;
        if (_trackCount > 0)
        {
            for (var i = 0; i < _fragTracks.Length; i++)
            {
                ref var t = ref _fragTracks[i];
                if (t.Expires > _now && t.Src == src && t.Dst == dst && t.Id == id && t.Proto == proto && t.Direction == (byte)direction)
                {
                    return ApplyTrack(ip, ref t, emit: false);
                }
            }
        }

        for (var i = 0; i < _held.Length; i++)
        {
            ref var h = ref _held[i];
            if (h.Buffer is not null) continue;
            var length = ip.Buffer.Length;
            h.Buffer = ArrayPool<byte>.Shared.Rent(length);
            ip.Buffer.CopyTo(h.Buffer);
            h.Length = length;
            h.Src = src;
            h.Dst = dst;
            h.Id = id;
            h.Proto = proto;
            h.Direction = (byte)direction;
            h.Expires = _now + _fragmentTimeoutMs;
            _heldCount++;
            _fragmentsHeld++;
            return NatVerdict.Consumed;
        }

        return Drop(NatDropReason.FragmentDropped);
    }

    private NatVerdict ApplyTrack(Ipv4Packet ip, ref FragmentTrack t, bool emit)
    {
        if (t.NewSrc != t.Src) ip.RewriteSource(new Ipv4Address(t.NewSrc));
        if (t.NewDst != t.Dst) ip.RewriteDestination(new Ipv4Address(t.NewDst));
        ip.RewriteTtl((byte)(ip.Ttl - 1));
        var action = (NatAction)t.Action;
        var side = action == NatAction.ForwardOutside ? NatSide.Outside : NatSide.Inside;
        var mtu = side == NatSide.Outside ? _config.OutsideMtu : _config.InsideMtu;
        if (ip.Buffer.Length > mtu) return FragmentAndEmit(ip, mtu, side);
        if (emit)
        {
            _sink.Emit(ip.Buffer, side);
            return NatVerdict.Consumed;
        }

        return new NatVerdict(action, NatDropReason.None);
    }

    private void ReleaseHeld(ref FragmentTrack t)
    {
        for (var i = 0; i < _held.Length; i++)
        {
            ref var h = ref _held[i];
            if (h.Buffer is null || h.Src != t.Src || h.Dst != t.Dst || h.Id != t.Id || h.Proto != t.Proto || h.Direction != t.Direction)
            {
                continue;
            }

            if (Ipv4Packet.TryParse(h.Buffer.AsSpan(0, h.Length), out var ip))
            {
                ApplyTrack(ip, ref t, emit: true);
            }

            FreeHeld(ref h);
            _heldCount--;
        }
    }

    private static void FreeHeld(ref HeldPacket h)
    {
        if (h.Buffer is not null) ArrayPool<byte>.Shared.Return(h.Buffer);
        h = default;
    }

    private void RunFragmentTimers()
    {
        if (_heldCount > 0)
        {
            for (var i = 0; i < _held.Length; i++)
            {
                ref var h = ref _held[i];
                if (h.Buffer is not null && h.Expires <= _now)
                {
                    FreeHeld(ref h);
                    _heldCount--;
                    _dropped++;
                    _dropsByReason[(int)NatDropReason.FragmentDropped]++;
                }
            }
        }

        if (_trackCount > 0)
        {
            for (var i = 0; i < _fragTracks.Length; i++)
            {
                if (_fragTracks[i].Expires != 0 && _fragTracks[i].Expires <= _now)
                {
                    _fragTracks[i] = default;
                    _trackCount--;
                }
            }
        }
    }

    /// <summary>Splits a (translated) datagram into fragments no bigger than <paramref name="mtu"/> (NatKit.Packets'
    /// RFC 791 fragmenter: options with the copied flag go into every fragment) and sends them to
    /// <paramref name="side"/>.</summary>
    private NatVerdict FragmentAndEmit(Ipv4Packet ip, int mtu, NatSide side)
    {
        if (!Ipv4Fragmenter.TryCreate(ip.Buffer, mtu, out var fragmenter)) return Drop(NatDropReason.FragmentationNeeded);
        while (fragmenter.TryWriteNext(_scratch, out var length))
        {
            _sink.Emit(_scratch.AsSpan(0, length), side);
        }

        return NatVerdict.Consumed;
    }

    // ---- RFC 5382 REQ-4 held SYNs ----

    private bool HoldSyn(Ipv4Packet ip, uint ext, ushort extPort, uint src, ushort sport)
    {
        for (var i = 0; i < _heldSyns.Length; i++)
        {
            ref var h = ref _heldSyns[i];
            if (h.Buffer is not null) continue;
            var length = ip.Buffer.Length;
            h.Buffer = ArrayPool<byte>.Shared.Rent(length);
            ip.Buffer.CopyTo(h.Buffer);
            h.Length = length;
            h.Dst = ext;
            h.DstPort = extPort;
            h.Src = src;
            h.SrcPort = sport;
            h.Expires = _now + SynHoldMs;
            _heldSynCount++;
            return true;
        }

        return false;
    }

    /// <summary>An outbound SYN created the session a held SYN was waiting for: drop the held one silently.</summary>
    private void CancelHeldSyn(uint ext, ushort extPort, uint remote, ushort remotePort)
    {
        for (var i = 0; i < _heldSyns.Length; i++)
        {
            ref var h = ref _heldSyns[i];
            if (h.Buffer is not null && h.Dst == ext && h.DstPort == extPort && h.Src == remote && h.SrcPort == remotePort)
            {
                FreeHeld(ref h);
                _heldSynCount--;
            }
        }
    }

    private void RunHeldSynTimers()
    {
        if (_heldSynCount == 0) return;
        for (var i = 0; i < _heldSyns.Length; i++)
        {
            ref var h = ref _heldSyns[i];
            if (h.Buffer is null || h.Expires > _now) continue;
            if (Ipv4Packet.TryParse(h.Buffer.AsSpan(0, h.Length), out var ip))
            {
                SendIcmpError(ip, IcmpV4Type.DestinationUnreachable, (byte)IcmpV4UnreachableCode.Port, 0, NatSide.Outside);
            }

            FreeHeld(ref h);
            _heldSynCount--;
            _dropped++;
            _dropsByReason[(int)NatDropReason.UnsolicitedSyn]++;
        }
    }
}
