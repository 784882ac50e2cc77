using System.Runtime.CompilerServices;
using NatKit.Nat.Internal;
using NatKit.Packets;

namespace NatKit.Nat;

/// <summary>Outbound, inbound and hairpin translation of TCP, UDP and ICMP echo.</summary>
public sealed partial class NatEngine
{
    private const byte TcpSyn = (byte)TcpFlags.Syn;
    private const byte TcpRst = (byte)TcpFlags.Rst;
    private const byte TcpControl = (byte)(TcpFlags.Syn | TcpFlags.Fin | TcpFlags.Rst);

    /// <summary>Reads what identifies a flow: the ports (ICMP echo: the identifier), TCP flags, or sends ICMP
    /// errors elsewhere. Returns false with a drop reason, or true.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool TryReadTransport(Ipv4Packet ip, bool outbound, out byte proto, out ushort sport, out ushort dport,
        out byte tcpFlags, out NatDropReason reason)
    {
        proto = (byte)ip.Protocol;
        sport = dport = 0;
        tcpFlags = 0;
        reason = NatDropReason.None;
        var l4 = ip.Payload;
        switch (proto)
        {
            case (byte)IpProtocol.Udp:
                if (ip.MoreFragments ? l4.Length < UdpField.HeaderLength : !UdpDatagram.TryParse(l4, out _))
                {
                    reason = NatDropReason.Malformed;
                    return false;
                }

                break;
            case (byte)IpProtocol.Tcp:
                if (!TcpSegment.TryParse(l4, out var tcp))
                {
                    reason = NatDropReason.Malformed; // also RFC 1858 tiny first fragments
                    return false;
                }

                tcpFlags = (byte)tcp.Flags;
                break;
            case (byte)IpProtocol.Icmp:
                if (!IcmpV4Message.TryParse(l4, out var icmp))
                {
                    reason = NatDropReason.Malformed;
                    return false;
                }

                if (icmp.Type is not (IcmpV4Type.EchoRequest or IcmpV4Type.EchoReply))
                {
                    reason = NatDropReason.UnsupportedIcmp;
                    return false;
                }

                if (outbound) sport = icmp.Identifier;
                else dport = icmp.Identifier;
                return true;
            default:
                reason = NatDropReason.UnsupportedProtocol;
                return false;
        }

        QuotedTransportHeader.TryParse(l4, (IpProtocol)proto, out var q);
        sport = q.SourcePort;
        dport = q.DestinationPort;
        return true;
    }

    private static bool IsIcmpError(Ipv4Packet ip) =>
        ip.Protocol == IpProtocol.Icmp && ip.Payload.Length >= IcmpField.HeaderLength
        && IcmpV4Message.IsErrorType((IcmpV4Type)ip.Payload[IcmpField.Type]);

    private NatVerdict Outbound(Ipv4Packet ip)
    {
        var src = ip.Source.Value;
        var dst = ip.Destination.Value;
        if (!IsInside(src)) return Drop(NatDropReason.SourceNotInside);
        if (ip.Ttl <= 1)
        {
            SendIcmpError(ip, IcmpV4Type.TimeExceeded, 0, 0, NatSide.Inside);
            return Drop(NatDropReason.TtlExpired);
        }

        var extDst = ExternalIndex(dst);
        if (extDst < 0 && IsInside(dst))
        {
            // Inside to inside (e.g. a reply to an internal-source hairpin): routed, not translated.
            ip.RewriteTtl((byte)(ip.Ttl - 1));
            return NatVerdict.Inside;
        }

        if (!ip.IsFirstFragment) return ForwardFragment(ip, NatDirection.Outbound);
        if (IsIcmpError(ip)) return OutboundIcmpError(ip);
        if (!TryReadTransport(ip, true, out var proto, out var sport, out var dport, out var tcpFlags, out var reason))
        {
            return Drop(reason);
        }

        if (extDst >= 0) return Hairpin(ip, proto, src, sport, dst, dport, extDst, tcpFlags);
        var mtu = _config.OutsideMtu;
        if (ip.Buffer.Length > mtu && ip.DontFragment)
        {
            SendFragmentationNeeded(ip, mtu, NatSide.Inside);
            return Drop(NatDropReason.FragmentationNeeded);
        }

        var idx = _table.FindOut(proto, src, sport, dst, dport);
        if (idx < 0)
        {
            if ((tcpFlags & TcpRst) != 0) return Drop(NatDropReason.NoSession);
            idx = CreateOutbound(proto, src, sport, dst, dport, out reason);
            if (idx < 0) return Drop(reason);
            if (_heldSynCount > 0 && (tcpFlags & TcpSyn) != 0)
            {
                ref var created = ref _table.Sessions[idx];
                CancelHeldSyn(created.ExtAddr, created.ExtPort, dst, dport);
            }
        }

        ref var s = ref _table.Sessions[idx];
        Touch(ref s, true);
        if ((tcpFlags & TcpControl) != 0) TrackTcpState(idx, tcpFlags, true);
        var ext = s.ExtAddr;
        RewriteSource(ip, proto, src, ext, sport, s.ExtPort);
        ip.RewriteTtl((byte)(ip.Ttl - 1));
        if (ip.MoreFragments) RecordFragment(ip, NatDirection.Outbound, src, dst, ext, dst, NatAction.ForwardOutside);
        if (ip.Buffer.Length > mtu) return FragmentAndEmit(ip, mtu, NatSide.Outside);
        return NatVerdict.Outside;
    }

    private NatVerdict Inbound(Ipv4Packet ip)
    {
        var dst = ip.Destination.Value;
        var ext = ExternalIndex(dst);
        if (ext < 0) return Drop(NatDropReason.NotForUs);
        var src = ip.Source.Value;
        if (ip.Ttl <= 1)
        {
            SendIcmpError(ip, IcmpV4Type.TimeExceeded, 0, 0, NatSide.Outside);
            return Drop(NatDropReason.TtlExpired);
        }

        if (!ip.IsFirstFragment) return ForwardFragment(ip, NatDirection.Inbound);
        if (IsIcmpError(ip)) return InboundIcmpError(ip);
        if (!TryReadTransport(ip, false, out var proto, out var sport, out var dport, out var tcpFlags, out var reason))
        {
            return Drop(reason);
        }

        var mtu = _config.InsideMtu;
        if (ip.Buffer.Length > mtu && ip.DontFragment)
        {
            SendFragmentationNeeded(ip, mtu, NatSide.Outside);
            return Drop(NatDropReason.FragmentationNeeded);
        }

        var idx = _table.FindIn(proto, dst, dport, src, sport);
        if (idx < 0)
        {
            var isTcp = proto == (byte)IpProtocol.Tcp;
            var syn = isTcp && (tcpFlags & TcpSyn) != 0;
            idx = AdmitInbound(proto, ext, dport, src, sport, isTcp && !syn, out reason);
            if (idx < 0)
            {
                if (syn && (tcpFlags & (byte)TcpFlags.Ack) == 0 && reason is NatDropReason.Filtered or NatDropReason.NoMapping)
                {
                    // RFC 5382 REQ-4: an unsolicited SYN.
                    if (_policy.UnsolicitedSyn == UnsolicitedSynBehavior.HoldThenPortUnreachable && HoldSyn(ip, dst, dport, src, sport))
                    {
                        return NatVerdict.Consumed;
                    }

                    return Drop(NatDropReason.UnsolicitedSyn);
                }

                return Drop(reason);
            }
        }

        ref var s = ref _table.Sessions[idx];
        Touch(ref s, false);
        if ((tcpFlags & TcpControl) != 0) TrackTcpState(idx, tcpFlags, false);
        var intAddr = s.IntAddr;
        RewriteDestination(ip, proto, dst, intAddr, dport, s.IntPort);
        ip.RewriteTtl((byte)(ip.Ttl - 1));
        if (ip.MoreFragments) RecordFragment(ip, NatDirection.Inbound, src, dst, src, intAddr, NatAction.ForwardInside);
        if (ip.Buffer.Length > mtu) return FragmentAndEmit(ip, mtu, NatSide.Inside);
        return NatVerdict.Inside;
    }

    /// <summary>RFC 4787 REQ-9 / RFC 5382 REQ-8: an inside host sent to an external endpoint of this NAT.</summary>
    private NatVerdict Hairpin(Ipv4Packet ip, byte proto, uint src, ushort sport, uint dst, ushort dport, int extDst, byte tcpFlags)
    {
        if (_policy.Hairpinning == HairpinBehavior.None) return Drop(NatDropReason.HairpinDisabled);
        if (proto == (byte)IpProtocol.Icmp) return Drop(NatDropReason.UnsupportedIcmp);
        var mtu = _config.InsideMtu;
        if (ip.Buffer.Length > mtu && ip.DontFragment)
        {
            SendFragmentationNeeded(ip, mtu, NatSide.Inside);
            return Drop(NatDropReason.FragmentationNeeded);
        }

        var isTcp = proto == (byte)IpProtocol.Tcp;
        var first = _table.FindOut(proto, src, sport, dst, dport);
        NatDropReason reason;
        if (first < 0)
        {
            if ((tcpFlags & TcpRst) != 0) return Drop(NatDropReason.NoSession);
            first = CreateOutbound(proto, src, sport, dst, dport, out reason);
            if (first < 0) return Drop(reason);
        }

        ref var s1 = ref _table.Sessions[first];
        Touch(ref s1, true);
        if ((tcpFlags & TcpControl) != 0) TrackTcpState(first, tcpFlags, true);
        var e1 = s1.ExtAddr;
        var p1 = s1.ExtPort;
        var second = _table.FindIn(proto, dst, dport, e1, p1);
        if (second < 0)
        {
            second = AdmitInbound(proto, extDst, dport, e1, p1, isTcp && (tcpFlags & TcpSyn) == 0, out reason);
            if (second < 0) return Drop(reason);
        }

        ref var s2 = ref _table.Sessions[second];
        Touch(ref s2, false);
        if ((tcpFlags & TcpControl) != 0) TrackTcpState(second, tcpFlags, false);
        var newSrc = src;
        if (_policy.Hairpinning == HairpinBehavior.ExternalSource)
        {
            RewriteSource(ip, proto, src, e1, sport, p1);
            newSrc = e1;
        }

        var intAddr = s2.IntAddr;
        RewriteDestination(ip, proto, dst, intAddr, dport, s2.IntPort);
        ip.RewriteTtl((byte)(ip.Ttl - 1));

        _hairpinned++;
        if (ip.MoreFragments) RecordFragment(ip, NatDirection.Outbound, src, dst, newSrc, intAddr, NatAction.ForwardInside);
        if (ip.Buffer.Length > mtu) return FragmentAndEmit(ip, mtu, NatSide.Inside);
        return NatVerdict.Inside;
    }

    /// <summary>Outbound rewrite: source address and port (ICMP: identifier), checksums patched (RFC 1624).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RewriteSource(Ipv4Packet ip, byte proto, uint oldAddr, uint newAddr, ushort oldPort, ushort newPort) =>
        Rewrite(ip, proto, oldAddr, newAddr, oldPort, newPort, source: true);

    /// <summary>Inbound rewrite: destination address and port (ICMP: identifier), checksums patched.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void RewriteDestination(Ipv4Packet ip, byte proto, uint oldAddr, uint newAddr, ushort oldPort, ushort newPort) =>
        Rewrite(ip, proto, oldAddr, newAddr, oldPort, newPort, source: false);

    /// <summary>Rewrites one side of the packet (<paramref name="source"/> is a constant at every call, so the
    /// inlined copies carry no branch on it).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Rewrite(Ipv4Packet ip, byte proto, uint oldAddr, uint newAddr, ushort oldPort, ushort newPort, bool source)
    {
        var l4 = ip.Payload;
        if (proto == (byte)IpProtocol.Icmp)
        {
            IcmpV4Message.TryParse(l4, out var icmp);
            if (oldPort != newPort) icmp.RewriteIdentifier(newPort);
        }
        else
        {
            QuotedTransportHeader.TryParse(l4, (IpProtocol)proto, out var q);
            PatchTransportChecksum(q, oldAddr, newAddr, oldPort, newPort);
            if (source) q.SourcePort = newPort;
            else q.DestinationPort = newPort;
        }

        if (source) ip.RewriteSource(new Ipv4Address(newAddr));
        else ip.RewriteDestination(new Ipv4Address(newAddr));
    }

    /// <summary>RFC 1624 update of a TCP/UDP checksum for one address and one port change (pseudo-header
    /// included). A UDP checksum of 0 means "none" and stays 0. Quotes that stop before the field are left.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PatchTransportChecksum(QuotedTransportHeader q, uint oldAddr, uint newAddr, ushort oldPort, ushort newPort)
    {
        if (!q.TryGetChecksum(out var c)) return;
        // One step for address and port: a chained update could pass through 0, which UDP reads as "none".
        var (from, to) = (new Ipv4Address(oldAddr), new Ipv4Address(newAddr));
        c = q.Protocol == IpProtocol.Udp
            ? Checksum.UpdateUdp(c, from, to, oldPort, newPort)
            : Checksum.Update(c, from, to, oldPort, newPort);

        q.TrySetChecksum(c);
    }
}
