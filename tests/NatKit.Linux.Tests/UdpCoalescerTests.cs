using System.Buffers.Binary;
using FsCheck;
using FsCheck.Fluent;
using NatKit.Linux;
using NatKit.Packets;

namespace NatKit.Linux.Tests;

public sealed class UdpCoalescerTests
{
    private static readonly Ipv4Address Source = new(10, 0, 0, 2);
    private static readonly Ipv4Address Destination = new(198, 51, 100, 2);
    private static readonly VirtioNetHeader Partial = new(VirtioNetHeader.NeedsChecksum, VirtioGsoType.None, 0, 0, 20, 6);

    [Fact]
    public void SameFlowDatagrams_BecomeOneUsoPacket_ThatSplitsBackIntoTheSameDatagrams()
    {
        Prop.ForAll(Gen.Choose(2, UdpCoalescer.MaxSegments).ToArbitrary(), Gen.Choose(1, 900).ToArbitrary(),
            Gen.Choose(0, 899).ToArbitrary(), (count, size, lastCut) =>
            {
                var coalescer = new UdpCoalescer();
                var sent = new List<byte[]>();
                for (var i = 0; i < count; i++)
                {
                    var payloadSize = i == count - 1 ? Math.Max(1, size - (lastCut % size)) : size;
                    var packet = Datagram(payloadSize, (byte)i, 5000);
                    sent.Add(packet.AsSpan(28).ToArray());
                    if (i == 0)
                    {
                        Assert.True(UdpCoalescer.CanStart(packet, Partial));
                        coalescer.Start(packet);
                    }
                    else
                    {
                        Assert.True(coalescer.TryAppend(packet, Partial));
                    }
                }

                var taken = coalescer.Take().ToArray();
                Assert.True(VirtioNetHeader.TryRead(taken, out var header));
                Assert.Equal(VirtioGsoType.UdpL4, header.GsoType);
                Assert.Equal(size, header.GsoSize);
                var output = new byte[1 << 17];
                var lengths = new int[128];
                var n = GsoSegmenter.Split(taken.AsSpan(VirtioNetHeader.Size), header, output, 0, lengths);
                Assert.Equal(count, n);
                var position = 0;
                for (var i = 0; i < n; i++)
                {
                    Assert.True(Ipv4Packet.TryParse(output.AsSpan(position, lengths[i]), out var ip));
                    Assert.True(UdpDatagram.TryParse(ip.Payload, out var udp));
                    Assert.True(udp.IsChecksumValid(Source, Destination));
                    Assert.Equal(sent[i], ip.Payload[8..].ToArray());
                    position += lengths[i];
                }

                return coalescer.Count == 0;
            }).QuickCheckThrowOnFailure();
    }

    [Fact]
    public void OtherFlows_BiggerDatagrams_FinishedChecksums_AndRunsAfterAShortOne_DoNotJoin()
    {
        var coalescer = new UdpCoalescer();
        coalescer.Start(Datagram(100, 1, 5000));
        Assert.False(coalescer.TryAppend(Datagram(100, 2, 5001), Partial)); // another source port
        Assert.False(coalescer.TryAppend(Datagram(101, 2, 5000), Partial)); // bigger than the segment size
        Assert.False(coalescer.TryAppend(Datagram(100, 2, 5000), VirtioNetHeader.None)); // checksum already final
        Assert.True(coalescer.TryAppend(Datagram(50, 2, 5000), Partial)); // a shorter one ends the run
        Assert.False(coalescer.TryAppend(Datagram(50, 3, 5000), Partial));
        Assert.Equal(2, coalescer.Count);
    }

    [Fact]
    public void ASingleDatagram_IsTakenUnchanged_WithAPartialChecksumHeader()
    {
        var coalescer = new UdpCoalescer();
        var packet = Datagram(64, 9, 5000);
        coalescer.Start(packet);
        var taken = coalescer.Take();
        Assert.True(VirtioNetHeader.TryRead(taken, out var header));
        Assert.False(header.IsGso);
        Assert.True(header.NeedsChecksumCompletion);
        Assert.Equal(packet, taken[VirtioNetHeader.Size..].ToArray());
    }

    /// <summary>A datagram as a local stack hands it to a TUN with checksum offload: pseudo-header sum only.</summary>
    private static byte[] Datagram(int payloadSize, byte fill, ushort sourcePort)
    {
        var payload = new byte[payloadSize];
        payload.AsSpan().Fill(fill);
        var packet = new byte[28 + payloadSize];
        PacketBuilder.WriteIpv4Udp(packet, new Ipv4Header(Source, Destination), sourcePort, 6000, payload);
        var pseudo = Checksum.PseudoHeader(Source, Destination, IpProtocol.Udp, 8 + payloadSize);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(26), (ushort)~Checksum.Finish(pseudo));
        return packet;
    }
}
