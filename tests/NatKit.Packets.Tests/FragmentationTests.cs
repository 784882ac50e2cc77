using FsCheck;
using FsCheck.Fluent;

namespace NatKit.Packets.Tests;

public sealed class FragmentationTests
{
    private static readonly Ipv4Header Header = new(KnownVectors.Client, KnownVectors.Server, Identification: 0x7777);

    /// <summary>Fragments a datagram and checks RFC 791's rules on every piece; returns the reassembled payload.</summary>
    private static byte[] FragmentAndReassemble(byte[] datagram, int mtu, out int count, byte[]? expectOptionsAfterFirst = null)
    {
        Assert.True(Ipv4Fragmenter.TryCreate(datagram, mtu, out var fragmenter));
        Ipv4Packet.TryParse(datagram, out var original);
        var payload = new byte[original.Payload.Length];
        var buffer = new byte[mtu];
        count = 0;
        var expectedOffset = 0;
        while (fragmenter.TryWriteNext(buffer, out var length))
        {
            Assert.True(length <= mtu);
            Assert.True(Ipv4Packet.TryParse(buffer.AsSpan(0, length), out var f));
            Assert.True(f.IsHeaderChecksumValid);
            Assert.Equal(original.Identification, f.Identification);
            Assert.Equal(original.Source, f.Source);
            Assert.Equal(original.Protocol, f.Protocol);
            Assert.Equal(expectedOffset, f.FragmentOffset);
            if (count > 0 && expectOptionsAfterFirst is not null)
            {
                Assert.Equal(expectOptionsAfterFirst, f.Options.ToArray());
            }

            var last = expectedOffset + f.Payload.Length == payload.Length;
            Assert.Equal(!last, f.MoreFragments);
            Assert.True(last || f.Payload.Length % 8 == 0);
            f.Payload.CopyTo(payload.AsSpan(f.FragmentOffset));
            expectedOffset += f.Payload.Length;
            count++;
        }

        Assert.Equal(fragmenter.FragmentCount, count);
        Assert.Equal(payload.Length, expectedOffset);
        return payload;
    }

    [Fact]
    public void Rfc791_Fragments_ReassembleToTheOriginal() =>
        Check.One(Generators.Config.WithMaxTest(150), Prop.ForAll(Generators.Arb(
            from payload in Generators.Bytes(3000)
            from mtu in Gen.Choose(68, 1600)
            select (payload, mtu)), t =>
        {
            var datagram = new byte[28 + t.payload.Length];
            PacketBuilder.WriteIpv4Udp(datagram, Header, 1, 2, t.payload);
            Ipv4Packet.TryParse(datagram, out var ip);
            var reassembled = FragmentAndReassemble(datagram, t.mtu, out var count);
            return reassembled.AsSpan().SequenceEqual(ip.Payload) && (count == 1) == (datagram.Length <= t.mtu);
        }));

    [Fact]
    public void Rfc791_1500ByteDatagramOver576_MakesThreeFragments_552_552_376()
    {
        var datagram = new byte[1500];
        PacketBuilder.WriteIpv4Udp(datagram, Header, 1, 2, new byte[1472]);
        FragmentAndReassemble(datagram, 576, out var count);
        Assert.Equal(3, count); // 552 + 552 + 376 = 1480 data bytes
    }

    [Fact]
    public void Rfc791_OnlyCopiedOptionsGoIntoLaterFragments()
    {
        // Options: Record Route (7, not copied, 7 bytes), then Security-like copied option 0x82 length 4, NOP.
        byte[] options = [7, 7, 4, 0, 0, 0, 0, 0x82, 4, 0xAA, 0xBB, 1];
        var datagram = new byte[20 + options.Length + 1000];
        var headerLength = PacketBuilder.WriteIpv4Header(datagram, Header, IpProtocol.Udp, 1000, options);
        Assert.Equal(32, headerLength);
        new Random(3).NextBytes(datagram.AsSpan(32));
        FragmentAndReassemble(datagram, 300, out var count, expectOptionsAfterFirst: [0x82, 4, 0xAA, 0xBB]);
        Assert.True(count > 1);
    }

    [Fact]
    public void Rfc791_FragmentOfAFragment_KeepsItsOffsetAndMoreFragments()
    {
        var datagram = new byte[1020];
        PacketBuilder.WriteIpv4Udp(datagram, Header, 1, 2, new byte[992]);
        Ipv4Packet.TryParse(datagram, out var ip);
        ip.MoreFragments = true;
        ip.FragmentOffset = 800;
        ip.FillHeaderChecksum();
        Assert.True(Ipv4Fragmenter.TryCreate(datagram, 500, out var f));
        var buffer = new byte[500];
        var offsets = new List<int>();
        while (f.TryWriteNext(buffer, out var n))
        {
            Ipv4Packet.TryParse(buffer.AsSpan(0, n), out var frag);
            Assert.True(frag.MoreFragments);
            offsets.Add(frag.FragmentOffset);
        }

        Assert.Equal([800, 1280, 1760], offsets);
    }

    [Fact]
    public void Rfc791_DontFragment_OverMtu_IsRefused_ButFitsIsOneFragment()
    {
        var datagram = new byte[1500];
        PacketBuilder.WriteIpv4Udp(datagram, Header with { DontFragment = true }, 1, 2, new byte[1472]);
        Assert.False(Ipv4Fragmenter.TryCreate(datagram, 1400, out _));
        Assert.True(Ipv4Fragmenter.TryCreate(datagram, 1500, out var f));
        Assert.Equal(1, f.FragmentCount);
        var buffer = new byte[1500];
        Assert.True(f.TryWriteNext(buffer, out var n));
        Assert.Equal(datagram, buffer.AsSpan(0, n).ToArray());
        Assert.False(f.TryWriteNext(buffer, out _));
    }

    [Fact]
    public void Rfc791_MtuBelowHeaderPlus8_IsRefused_AndSmallDestinationThrows()
    {
        var datagram = new byte[100];
        PacketBuilder.WriteIpv4Udp(datagram, Header, 1, 2, new byte[72]);
        Assert.False(Ipv4Fragmenter.TryCreate(datagram, 27, out _));
        Assert.True(Ipv4Fragmenter.TryCreate(datagram, 28, out var f));
        Assert.Equal(10, f.FragmentCount);
        Assert.Throws<ArgumentException>(() => WriteInto(datagram, new byte[20]));
        Assert.False(Ipv4Fragmenter.TryCreate(datagram.AsSpan(0, 50), 28, out _));
    }

    private static void WriteInto(byte[] datagram, byte[] destination)
    {
        Ipv4Fragmenter.TryCreate(datagram, 28, out var f);
        f.TryWriteNext(destination, out _);
    }

    [Fact]
    public void Rfc9293_MssClamp_PatchesChecksum_AtEvenAndOddOffsets()
    {
        byte[][] optionSets = [[2, 4, 0x05, 0xB4], [1, 2, 4, 0x05, 0xB4, 1, 1, 1], [1, 1, 1, 2, 4, 0x05, 0xB4, 0]];
        foreach (var options in optionSets)
        {
            var buffer = new byte[100];
            var n = PacketBuilder.WriteIpv4Tcp(buffer, Header, new TcpHeader(1, 2, 3, 0, TcpFlags.Syn), "data"u8, options);
            Ipv4Packet.TryParse(buffer.AsSpan(0, n), out var ip);
            TcpSegment.TryParse(ip.Payload, out var tcp);
            Assert.True(tcp.TryGetMaximumSegmentSize(out var mss));
            Assert.Equal(1460, mss);
            Assert.False(tcp.ClampMaximumSegmentSize(1500));
            Assert.True(tcp.ClampMaximumSegmentSize(1360));
            Assert.True(tcp.TryGetMaximumSegmentSize(out mss));
            Assert.Equal(1360, mss);
            Assert.True(tcp.IsChecksumValid(ip.Source, ip.Destination));
        }
    }
}
