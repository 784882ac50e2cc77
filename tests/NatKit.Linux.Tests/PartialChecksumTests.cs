using System.Buffers.Binary;
using FsCheck;
using FsCheck.Fluent;
using NatKit.Linux;
using NatKit.Nat.Ports;
using NatKit.Packets;

namespace NatKit.Linux.Tests;

/// <summary>
/// <see cref="PacketPump.MovePartialChecksum"/>: a packet whose UDP checksum is still partial (virtio
/// NEEDS_CSUM: the field holds the pseudo-header sum) has its addresses and port rewritten by the NAT; once the field
/// is moved by the address change alone, finishing it (as the receiving kernel does) gives a valid checksum.
/// </summary>
public sealed class PartialChecksumTests
{
    private static readonly VirtioNetHeader Partial = new(VirtioNetHeader.NeedsChecksum, VirtioGsoType.None, 0, 0, 20, 6);

    [Fact]
    public void MovedPartialChecksum_FinishesValid_ForAnyAddressAndPortRewrite()
    {
        var words = ArbMap.Default.ArbFor<(uint, uint, uint, uint, ushort, byte)>();
        Prop.ForAll(words, t =>
        {
            var (oldSource, oldDestination, newSource, newDestination, newPort, size) = t;
            var payload = new byte[size];
            payload.AsSpan().Fill(size);
            var packet = new byte[28 + size];
            PacketBuilder.WriteIpv4Udp(packet, new Ipv4Header(new Ipv4Address(oldSource), new Ipv4Address(oldDestination)),
                5000, 6000, payload);
            var partialSum = (ushort)~Checksum.Finish(Checksum.PseudoHeader(new Ipv4Address(oldSource),
                new Ipv4Address(oldDestination), IpProtocol.Udp, 8 + size));
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(26), partialSum);

            // the NAT's rewrite: addresses and source port change, the checksum field is updated the wrong way
            BinaryPrimitives.WriteUInt32BigEndian(packet.AsSpan(12), newSource);
            BinaryPrimitives.WriteUInt32BigEndian(packet.AsSpan(16), newDestination);
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(20), newPort);
            BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(26), (ushort)(partialSum ^ 0x5A5A));

            PacketPump.MovePartialChecksum(packet, 26, partialSum, oldSource, oldDestination);
            Assert.True(GsoSegmenter.CompleteChecksum(packet, Partial));
            Assert.True(UdpDatagram.TryParse(packet.AsSpan(20), out var udp));
            return udp.IsChecksumValid(new Ipv4Address(newSource), new Ipv4Address(newDestination));
        }).QuickCheckThrowOnFailure();
    }
}

/// <summary>Which GSO super-packets a destination link takes whole (the rest are segmented).</summary>
public sealed class GsoCarriageTests
{
    private static VirtioNetHeader Gso(VirtioGsoType type) => new(VirtioNetHeader.NeedsChecksum, type, 40, 1400, 20, 16);

    [Theory]
    [InlineData(VirtioGsoType.TcpV4, TunOffloads.Tso4, false, true)]
    [InlineData(VirtioGsoType.TcpV4, TunOffloads.Tso6, false, false)]
    [InlineData(VirtioGsoType.TcpV6, TunOffloads.Tso6, true, true)]
    [InlineData(VirtioGsoType.TcpV6, TunOffloads.Tso4 | TunOffloads.Uso6, true, false)]
    [InlineData(VirtioGsoType.UdpL4, TunOffloads.Uso4, false, true)]
    [InlineData(VirtioGsoType.UdpL4, TunOffloads.Uso4, true, false)] // an IPv6 USO packet needs USO6
    [InlineData(VirtioGsoType.UdpL4, TunOffloads.Uso6, true, true)]
    [InlineData(VirtioGsoType.UdpL4, TunOffloads.Uso6, false, false)]
    [InlineData(VirtioGsoType.Udp, TunOffloads.All, false, false)] // UFO: not a type this data plane passes whole
    public void Carries_OnlyWhatTheLinkAcceptedForThatPacket(VirtioGsoType type, TunOffloads offloads, bool ipv6, bool whole)
    {
        Assert.Equal(whole, TunPort.Carries(offloads, Gso(type), ipv6));
    }
}
