using FsCheck;
using FsCheck.Fluent;

namespace NatKit.Packets.Tests;

/// <summary>Untrusted bytes: random and mutated inputs never throw out of a TryParse or a parsed view.</summary>
public sealed class FuzzTests
{
    /// <summary>Parses <paramref name="bytes"/> every way and reads every accessor of whatever parsed.</summary>
    internal static int TouchEverything(Span<byte> bytes)
    {
        var acc = 0;
        if (Ipv4Packet.TryParse(bytes, out var ip))
        {
            acc += TouchIpv4(ip);
        }

        if (Ipv4Packet.TryParseQuoted(bytes, out var quotedIp))
        {
            acc += TouchIpv4(quotedIp);
        }

        if (Ipv6Packet.TryParse(bytes, out var ip6))
        {
            acc += TouchIpv6(ip6);
        }

        if (Ipv6Packet.TryParseQuoted(bytes, out var quoted6))
        {
            acc += TouchIpv6(quoted6);
        }

        if (Ipv4Fragmenter.TryCreate(bytes, 68 + bytes.Length % 200, out var fragmenter))
        {
            Span<byte> buffer = stackalloc byte[300];
            var n = 0;
            while (fragmenter.TryWriteNext(buffer, out var length))
            {
                acc += length;
                Assert.True(Ipv4Packet.TryParse(buffer[..length], out _));
                Assert.True(++n <= fragmenter.FragmentCount);
            }
        }

        acc += TouchTransport(bytes);
        var options = new TlvOptionReader(bytes);
        while (options.TryReadNext(out var kind, out var data))
        {
            acc += kind + data.Length;
        }

        return acc;
    }

    private static int TouchIpv4(Ipv4Packet ip)
    {
        var acc = ip.Version + ip.HeaderLength + ip.TypeOfService + ip.Dscp + ip.Ecn + ip.TotalLength + ip.Identification
                  + ip.FragmentOffset + (ip.DontFragment ? 1 : 0) + (ip.MoreFragments ? 1 : 0) + (ip.IsFragment ? 1 : 0)
                  + (ip.IsFirstFragment ? 1 : 0) + ip.Ttl + (int)ip.Protocol + ip.HeaderChecksum + (int)ip.Source.Value
                  + (int)ip.Destination.Value + ip.Options.Length + ip.Payload.Length + ip.Header.Length
                  + (ip.IsTruncated ? 1 : 0) + (ip.IsHeaderChecksumValid ? 1 : 0) + ip.ComputeHeaderChecksum()
                  + (int)ip.PseudoHeaderSum();
        var options = new TlvOptionReader(ip.Options);
        while (options.TryReadNext(out var kind, out var data))
        {
            acc += kind + data.Length;
        }

        acc += TouchTransport(ip.Payload);
        if (QuotedTransportHeader.TryParse(ip.Payload, ip.Protocol, out var q))
        {
            acc += q.SourcePort + q.DestinationPort + q.IcmpIdentifier + q.ChecksumOffset + (q.TryGetChecksum(out var c) ? c : 0);
        }

        return acc;
    }

    private static int TouchIpv6(Ipv6Packet ip)
    {
        var acc = ip.Version + ip.TrafficClass + (int)ip.FlowLabel + ip.PayloadLength + (int)ip.NextHeader + ip.HopLimit
                  + ip.Source.GetHashCode() + ip.Destination.GetHashCode() + ip.Payload.Length + (ip.IsTruncated ? 1 : 0);
        var reader = ip.ExtensionHeaders;
        var steps = 0;
        while (reader.TryReadNext(out var type, out var header))
        {
            acc += (int)type + header.Length;
            Assert.True(++steps <= Ipv6ExtensionHeaderReader.MaxHeaders);
        }

        if (ip.TryGetHeaderChain(out var chain))
        {
            acc += chain.ExtensionHeaderCount + chain.FragmentOffset + (int)chain.FragmentIdentification;
            var upper = ip.Buffer[chain.UpperLayerOffset..];
            acc += (int)ip.PseudoHeaderSum(chain.UpperLayerProtocol, upper.Length) + TouchTransport(upper);
            if (QuotedTransportHeader.TryParse(upper, chain.UpperLayerProtocol, out var q))
            {
                acc += q.SourcePort + q.DestinationPort + (q.TryGetChecksum(out var c) ? c : 0);
            }
        }

        return acc;
    }

    private static int TouchTransport(Span<byte> bytes)
    {
        var acc = 0;
        var a = new Ipv4Address(0x0A000001);
        var b = new Ipv4Address(0xC0000201);
        if (UdpDatagram.TryParse(bytes, out var udp))
        {
            acc += udp.SourcePort + udp.DestinationPort + udp.Length + udp.Checksum + udp.Payload.Length
                   + udp.ComputeChecksum(a, b) + (udp.IsChecksumValid(a, b) ? 1 : 0)
                   + udp.ComputeChecksum(Ipv6Address.Loopback, Ipv6Address.Loopback);
        }

        if (TcpSegment.TryParse(bytes, out var tcp))
        {
            acc += (tcp.TryGetMaximumSegmentSize(out var mss) ? mss : 0) + (tcp.ClampMaximumSegmentSize(536) ? 1 : 0);
            acc += tcp.SourcePort + tcp.DestinationPort + (int)tcp.SequenceNumber + (int)tcp.AcknowledgmentNumber
                   + tcp.HeaderLength + (int)tcp.Flags + tcp.WindowSize + tcp.Checksum + tcp.UrgentPointer
                   + tcp.Options.Length + tcp.Payload.Length + tcp.ComputeChecksum(a, b) + (tcp.Syn ? 1 : 0)
                   + (tcp.Ack ? 1 : 0) + (tcp.Fin ? 1 : 0) + (tcp.Rst ? 1 : 0);
            var options = new TlvOptionReader(tcp.Options);
            while (options.TryReadNext(out var kind, out var data))
            {
                acc += kind + data.Length;
            }
        }

        if (IcmpV4Message.TryParse(bytes, out var icmp))
        {
            acc += (int)icmp.Type + icmp.Code + icmp.Checksum + icmp.Identifier + icmp.SequenceNumber
                   + (int)icmp.RestOfHeader + icmp.NextHopMtu + icmp.Pointer + icmp.Payload.Length
                   + icmp.ComputeChecksum() + (icmp.IsChecksumValid ? 1 : 0) + (icmp.IsError ? 1 : 0) + (icmp.IsQuery ? 1 : 0);
            if (icmp.TryGetQuotedPacket(out var quoted))
            {
                acc += TouchIpv4(quoted);
            }
        }

        if (IcmpV6Message.TryParse(bytes, out var icmp6))
        {
            acc += (int)icmp6.Type + icmp6.Code + icmp6.Checksum + icmp6.Identifier + icmp6.SequenceNumber + (int)icmp6.Mtu
                   + icmp6.Payload.Length + icmp6.ComputeChecksum(Ipv6Address.Loopback, Ipv6Address.Any)
                   + (icmp6.IsError ? 1 : 0) + (icmp6.IsEcho ? 1 : 0);
            if (icmp6.TryGetQuotedPacket(out var quoted6))
            {
                acc += TouchIpv6(quoted6);
            }
        }

        return acc;
    }

    [Fact]
    public void RandomBytes_NeverThrow() =>
        Check.One(Generators.Config.WithMaxTest(2000), Prop.ForAll(Generators.Arb(Generators.Bytes(120)), bytes =>
        {
            TouchEverything(bytes);
            return true;
        }));

    /// <summary>Valid packets with a few bytes overwritten, or cut, reach much deeper than random bytes.</summary>
    [Fact]
    public void MutatedPackets_NeverThrow()
    {
        var seeds = new[]
        {
            KnownVectors.Udp, KnownVectors.TcpSyn, KnownVectors.IcmpEcho, ErrorQuoting(KnownVectors.Udp),
            ErrorQuoting(KnownVectors.TcpSyn), ErrorQuoting(ErrorQuoting(KnownVectors.IcmpEcho)),
            KnownVectors6.IcmpEcho, KnownVectors6.UdpWithChain, TooBigQuoting(KnownVectors6.UdpWithChain),
        };
        var gen =
            from seed in Gen.Elements(seeds)
            from mutations in Gen.ListOf(Gen.Choose(0, 255).SelectMany(v => Gen.Choose(0, 200), (v, p) => (v, p)))
            from cut in Gen.Choose(0, 200)
            select (seed, mutations, cut);
        Check.One(Generators.Config.WithMaxTest(3000), Prop.ForAll(Generators.Arb(gen), t =>
        {
            var bytes = (byte[])t.seed.Clone();
            foreach (var (value, position) in t.mutations)
            {
                bytes[position % bytes.Length] = (byte)value;
            }

            TouchEverything(bytes.AsSpan(0, Math.Min(bytes.Length, t.cut + 20)));
            TouchEverything(bytes);
            return true;
        }));
    }

    internal static byte[] TooBigQuoting(byte[] original)
    {
        var buffer = new byte[1280];
        var n = PacketBuilder.WriteIpv6PacketTooBig(buffer, new Ipv6Header(KnownVectors6.B, KnownVectors6.A), 1280, original);
        return buffer.AsSpan(0, n).ToArray();
    }

    internal static byte[] ErrorQuoting(byte[] original)
    {
        var buffer = new byte[600];
        var n = PacketBuilder.WriteIpv4TimeExceeded(buffer, new Ipv4Header(Ipv4Address.Parse("198.51.100.1"), KnownVectors.Client), original);
        return buffer.AsSpan(0, n).ToArray();
    }
}
