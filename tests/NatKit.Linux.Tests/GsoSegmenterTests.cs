using System.Buffers.Binary;
using FsCheck;
using FsCheck.Fluent;
using NatKit.Linux;
using NatKit.Packets;

namespace NatKit.Linux.Tests;

public sealed class GsoSegmenterTests
{
    private static readonly Ipv4Address Source = new(10, 0, 0, 2);
    private static readonly Ipv4Address Destination = new(198, 51, 100, 2);

    [Fact]
    public void TcpV4SuperPacket_SplitsIntoValidSegments_ThatCarryTheSameBytes()
    {
        var payload = Payload(4000);
        var (packet, header) = TcpSuperPacket(payload, mss: 1448, TcpFlags.Ack | TcpFlags.Psh | TcpFlags.Fin | TcpFlags.Cwr);
        var output = new byte[16384];
        var lengths = new int[64];

        var count = GsoSegmenter.Split(packet, header, output, VirtioNetHeader.Size, lengths);

        Assert.Equal(3, count);
        var joined = new List<byte>();
        var position = 0;
        for (var i = 0; i < count; i++)
        {
            var segment = output.AsSpan(position + VirtioNetHeader.Size, lengths[i] - VirtioNetHeader.Size);
            Assert.True(output.AsSpan(position, VirtioNetHeader.Size).IndexOfAnyExcept((byte)0) < 0);
            Assert.True(Ipv4Packet.TryParse(segment, out var ip));
            Assert.True(Checksum.IsValid(ip.Header));
            Assert.Equal(segment.Length, ip.TotalLength);
            Assert.Equal((ushort)(0x1234 + i), ip.Identification);
            Assert.True(TcpSegment.TryParse(ip.Payload, out var tcp));
            Assert.True(tcp.IsChecksumValid(Source, Destination));
            Assert.Equal(1000u + (uint)(i * 1448), BinaryPrimitives.ReadUInt32BigEndian(ip.Payload[4..]));
            var flags = (TcpFlags)ip.Payload[13];
            Assert.Equal(i == count - 1, flags.HasFlag(TcpFlags.Fin));
            Assert.Equal(i == count - 1, flags.HasFlag(TcpFlags.Psh));
            Assert.Equal(i == 0, flags.HasFlag(TcpFlags.Cwr));
            Assert.True(flags.HasFlag(TcpFlags.Ack));
            joined.AddRange(ip.Payload[20..].ToArray());
            position += lengths[i];
        }

        Assert.Equal(payload, joined);
    }

    [Fact]
    public void UdpL4SuperPacket_SplitsIntoDatagramsWithTheirOwnLengthAndChecksum()
    {
        var payload = Payload(2500);
        var packet = new byte[28 + payload.Length];
        PacketBuilder.WriteIpv4Udp(packet, new Ipv4Header(Source, Destination), 5000, 6000, payload);
        var header = new VirtioNetHeader(VirtioNetHeader.NeedsChecksum, VirtioGsoType.UdpL4, 28, 1000, 20, 6);
        var output = new byte[8192];
        var lengths = new int[8];

        var count = GsoSegmenter.Split(packet, header, output, 0, lengths);

        Assert.Equal(3, count);
        var joined = new List<byte>();
        var position = 0;
        for (var i = 0; i < count; i++)
        {
            Assert.True(Ipv4Packet.TryParse(output.AsSpan(position, lengths[i]), out var ip));
            Assert.True(UdpDatagram.TryParse(ip.Payload, out var udp));
            Assert.Equal(i < 2 ? 1008 : 508, BinaryPrimitives.ReadUInt16BigEndian(ip.Payload[4..]));
            Assert.True(udp.IsChecksumValid(Source, Destination));
            joined.AddRange(ip.Payload[8..].ToArray());
            position += lengths[i];
        }

        Assert.Equal(payload, joined);
    }

    [Fact]
    public void TcpV6SuperPacket_SplitsIntoSegmentsWithTheirOwnPayloadLengthAndChecksum()
    {
        var source = Ipv6Address.Parse("2001:db8::2");
        var destination = Ipv6Address.Parse("2001:db8:1::2");
        var payload = Payload(3000);
        var packet = new byte[40 + 20 + payload.Length];
        packet[0] = 0x60;
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(4), (ushort)(20 + payload.Length));
        packet[6] = (byte)IpProtocol.Tcp;
        packet[7] = 64;
        source.Write(packet.AsSpan(8));
        destination.Write(packet.AsSpan(24));
        PacketBuilder.WriteTcp(packet.AsSpan(40), new TcpHeader(40000, 80, 7, 1, TcpFlags.Ack | TcpFlags.Psh), default, payload);
        var header = new VirtioNetHeader(VirtioNetHeader.NeedsChecksum, VirtioGsoType.TcpV6, 60, 1400, 40, 16);
        var output = new byte[8192];
        var lengths = new int[8];

        var count = GsoSegmenter.Split(packet, header, output, 0, lengths);

        Assert.Equal(3, count);
        var position = 0;
        for (var i = 0; i < count; i++)
        {
            var segment = output.AsSpan(position, lengths[i]);
            Assert.Equal(segment.Length - 40, BinaryPrimitives.ReadUInt16BigEndian(segment[4..]));
            Assert.True(TcpSegment.TryParse(segment[40..], out var tcp));
            Assert.True(tcp.IsChecksumValid(source, destination));
            Assert.Equal(7u + (uint)(i * 1400), BinaryPrimitives.ReadUInt32BigEndian(segment[44..]));
            position += lengths[i];
        }
    }

    [Fact]
    public void PartialChecksum_IsFinishedToTheFullChecksum()
    {
        var (packet, header) = TcpSuperPacket(Payload(777), mss: 0, TcpFlags.Ack);
        Assert.True(GsoSegmenter.CompleteChecksum(packet, header));
        Assert.True(Ipv4Packet.TryParse(packet, out var ip));
        Assert.True(TcpSegment.TryParse(ip.Payload, out var tcp));
        Assert.True(tcp.IsChecksumValid(Source, Destination));
    }

    [Fact]
    public void AnyPayloadAndSegmentSize_SplitsLosslessly_AndGarbageNeverThrows()
    {
        var output = new byte[1 << 17];
        var lengths = new int[256];
        Prop.ForAll(Gen.Choose(1, 20000).ToArbitrary(), Gen.Choose(100, 9000).ToArbitrary(), (size, mss) =>
        {
            var payload = Payload(size);
            var (packet, header) = TcpSuperPacket(payload, mss, TcpFlags.Ack);
            var count = GsoSegmenter.Split(packet, header, output, 0, lengths);
            var total = 0;
            var position = 0;
            var same = true;
            for (var i = 0; i < count; i++)
            {
                var carried = output.AsSpan(position + 40, lengths[i] - 40);
                same &= carried.SequenceEqual(payload.AsSpan(total, Math.Min(carried.Length, size - total)));
                total += carried.Length;
                position += lengths[i];
            }

            return count == (size + mss - 1) / mss && total == size && same;
        }).QuickCheckThrowOnFailure();

        Prop.ForAll(Gen.ArrayOf(Gen.Choose(0, 255).Select(b => (byte)b)).ToArbitrary(), Gen.Choose(0, 255).ToArbitrary(),
            (bytes, mss) =>
            {
                var header = new VirtioNetHeader(1, VirtioGsoType.TcpV4, 40, (ushort)mss, 20, 16);
                _ = GsoSegmenter.Split(bytes, header, output, 10, lengths);
                _ = GsoSegmenter.CompleteChecksum(bytes, header);
                return true;
            }).QuickCheckThrowOnFailure();
    }

    private static byte[] Payload(int size)
    {
        var payload = new byte[size];
        for (var i = 0; i < size; i++)
        {
            payload[i] = (byte)(i * 7);
        }

        return payload;
    }

    /// <summary>A TCP super-packet as the kernel hands it over: checksum field holding the pseudo-header sum.</summary>
    private static (byte[] Packet, VirtioNetHeader Header) TcpSuperPacket(byte[] payload, int mss, TcpFlags flags)
    {
        var packet = new byte[40 + payload.Length];
        PacketBuilder.WriteIpv4Tcp(packet, new Ipv4Header(Source, Destination, Identification: 0x1234),
            new TcpHeader(40000, 80, 1000, 1, flags), payload);
        var partial = Checksum.Add(Checksum.Add(Checksum.Add(0, packet.AsSpan(12, 8)), (ushort)6),
            (uint)(20 + payload.Length));
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(36), (ushort)~Checksum.Finish(partial));
        var gso = mss == 0 ? VirtioGsoType.None : VirtioGsoType.TcpV4;
        return (packet, new VirtioNetHeader(VirtioNetHeader.NeedsChecksum, gso, 40, (ushort)mss, 20, 16));
    }
}
