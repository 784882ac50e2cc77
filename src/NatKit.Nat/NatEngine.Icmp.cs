using NatKit.Packets;

namespace NatKit.Nat;

/// <summary>ICMP errors: translated both ways (RFC 5508 REQ-3/4, RFC 4787 REQ-12), originated (Time Exceeded,
/// Fragmentation Needed, Port Unreachable for held SYNs). Errors never create, refresh or remove a session.</summary>
public sealed partial class NatEngine
{
    /// <summary>An inside host reports an error about a packet it received from outside (quoted: remote to
    /// internal). The quote's destination and the outer source become the external endpoint.</summary>
    private NatVerdict OutboundIcmpError(Ipv4Packet ip)
    {
        if (!TryOpenError(ip, out var icmp, out var inner, out var q, out var refused)) return refused;

        var proto = (byte)inner.Protocol;
        var remote = inner.Source.Value;
        var local = inner.Destination.Value;
        int idx;
        if (proto == (byte)IpProtocol.Icmp)
        {
            idx = IsQuotedQuery(q) ? _table.FindOut(proto, local, q.IcmpIdentifier, remote, 0) : -1;
        }
        else
        {
            idx = _table.FindOut(proto, local, q.DestinationPort, remote, q.SourcePort);
        }

        if (idx < 0) return Drop(NatDropReason.IcmpErrorNoSession);
        ref var s = ref _table.Sessions[idx];
        var mtu = _config.OutsideMtu;
        if (ip.Buffer.Length > mtu) return Drop(NatDropReason.FragmentationNeeded); // errors are never fragmented
        if (proto == (byte)IpProtocol.Icmp) RewriteQuotedIdentifier(q, s.ExtPort);
        else
        {
            PatchTransportChecksum(q, local, s.ExtAddr, q.DestinationPort, s.ExtPort);
            q.DestinationPort = s.ExtPort;
        }

        inner.RewriteDestination(new Ipv4Address(s.ExtAddr));
        ip.RewriteSource(new Ipv4Address(s.ExtAddr));
        ip.RewriteTtl((byte)(ip.Ttl - 1));
        icmp.FillChecksum();
        return NatVerdict.Outside;
    }

    /// <summary>The outside reports an error about a packet we sent (quoted: external endpoint to remote).</summary>
    private NatVerdict InboundIcmpError(Ipv4Packet ip)
    {
        if (!TryOpenError(ip, out var icmp, out var inner, out var q, out var refused)) return refused;

        var proto = (byte)inner.Protocol;
        var external = inner.Source.Value;
        var remote = inner.Destination.Value;
        int idx;
        if (proto == (byte)IpProtocol.Icmp)
        {
            idx = IsQuotedQuery(q) ? _table.FindIn(proto, external, q.IcmpIdentifier, remote, 0) : -1;
        }
        else
        {
            idx = _table.FindIn(proto, external, q.SourcePort, remote, q.DestinationPort);
        }

        if (idx < 0) return Drop(NatDropReason.IcmpErrorNoSession);
        ref var s = ref _table.Sessions[idx];
        if (ip.Buffer.Length > _config.InsideMtu) return Drop(NatDropReason.FragmentationNeeded);
        if (proto == (byte)IpProtocol.Icmp) RewriteQuotedIdentifier(q, s.IntPort);
        else
        {
            PatchTransportChecksum(q, external, s.IntAddr, q.SourcePort, s.IntPort);
            q.SourcePort = s.IntPort;
        }

        inner.RewriteSource(new Ipv4Address(s.IntAddr));
        ip.RewriteDestination(new Ipv4Address(s.IntAddr));
        ip.RewriteTtl((byte)(ip.Ttl - 1));
        icmp.FillChecksum();
        return NatVerdict.Inside;
    }

    /// <summary>What both directions check first: translation on, a whole ICMP error of a kind worth passing,
    /// quoting the first fragment of a datagram with a readable transport header. False with the drop verdict.</summary>
    private bool TryOpenError(Ipv4Packet ip, out IcmpV4Message icmp, out Ipv4Packet inner, out QuotedTransportHeader q,
        out NatVerdict refused)
    {
        icmp = default;
        inner = default;
        q = default;
        refused = default;
        if (!_policy.TranslateIcmpErrors)
        {
            refused = Drop(NatDropReason.IcmpErrorsDisabled);
            return false;
        }

        if (ip.MoreFragments || !IcmpV4Message.TryParse(ip.Payload, out icmp) || !icmp.TryGetQuotedPacket(out inner))
        {
            refused = Drop(NatDropReason.Malformed);
            return false;
        }

        if (!IsTranslatedError(icmp.Type))
        {
            refused = Drop(NatDropReason.UnsupportedIcmp);
            return false;
        }

        if (!inner.IsFirstFragment || !QuotedTransportHeader.TryParse(inner.Payload, inner.Protocol, out q))
        {
            refused = Drop(NatDropReason.IcmpErrorNoSession);
            return false;
        }

        return true;
    }

    /// <summary>Errors worth passing: Destination Unreachable, Time Exceeded, Parameter Problem. Redirects
    /// (a router's business, not a remote's) and Source Quench (deprecated, RFC 6633) are dropped.</summary>
    private static bool IsTranslatedError(IcmpV4Type type) =>
        type is IcmpV4Type.DestinationUnreachable or IcmpV4Type.TimeExceeded or IcmpV4Type.ParameterProblem;

    private static bool IsQuotedQuery(QuotedTransportHeader q) =>
        IcmpV4Message.IsQueryType((IcmpV4Type)q.Buffer[IcmpField.Type]);

    private static void RewriteQuotedIdentifier(QuotedTransportHeader q, ushort id)
    {
        if (q.TryGetChecksum(out var c)) q.TrySetChecksum(Checksum.Update(c, q.IcmpIdentifier, id));
        q.IcmpIdentifier = id;
    }

    /// <summary>Sends an ICMP error about <paramref name="original"/> back toward its sender (RFC 1812 4.3.2.7:
    /// never about an ICMP error, a non-first fragment, or a broadcast/multicast/unspecified source).</summary>
    private void SendIcmpError(Ipv4Packet original, IcmpV4Type type, byte code, uint rest, NatSide toward)
    {
        var from = original.Source;
        if (!original.IsFirstFragment || IsIcmpError(original) || from.IsMulticast || from.IsBroadcast || from.IsUnspecified
            || original.Destination.IsMulticast || original.Destination.IsBroadcast)
        {
            return;
        }

        var me = toward == NatSide.Inside
            ? _config.EffectiveInsideAddress
            : new Ipv4Address(ExternalIndex(original.Destination.Value) >= 0 ? original.Destination.Value : _ext[0]);
        var n = PacketBuilder.WriteIpv4IcmpError(_scratch, new Ipv4Header(me, from), type, code, rest, original.Buffer);
        _icmpSent++;
        _sink.Emit(_scratch.AsSpan(0, n), toward);
    }

    /// <summary>RFC 1191: DF set and too big for the next link.</summary>
    private void SendFragmentationNeeded(Ipv4Packet original, int mtu, NatSide toward) =>
        SendIcmpError(original, IcmpV4Type.DestinationUnreachable, (byte)IcmpV4UnreachableCode.FragmentationNeeded, (uint)mtu, toward);
}
