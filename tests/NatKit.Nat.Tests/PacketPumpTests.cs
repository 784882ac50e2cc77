using System.Buffers.Binary;
using NatKit.Nat.Ports;
using NatKit.Packets;
using static NatKit.Nat.Tests.NatHarness;

namespace NatKit.Nat.Tests;

/// <summary>The pump between two packet ports: what it reads, where the verdict sends it, what it leaves to the
/// ports, and that it never touches an offload beyond moving a partial checksum.</summary>
public sealed class PacketPumpTests
{
    /// <summary>A port over two lists: packets waiting to be read, packets written (with their offload state).</summary>
    private sealed class ListPort : IPacketPort
    {
        public Queue<(byte[] Packet, VirtioNetHeader Offload)> Waiting { get; } = new();

        public List<(byte[] Packet, VirtioNetHeader Offload)> Written { get; } = [];

        public int Flushes { get; private set; }

        public PacketPortStats Stats => new(Written.Count, 0, 0, 0, 0);

        public int Read(Span<byte> frame, out VirtioNetHeader offload)
        {
            offload = VirtioNetHeader.None;
            if (!Waiting.TryDequeue(out var next))
            {
                return 0;
            }

            offload = next.Offload;
            next.Packet.CopyTo(frame[PacketPump.Headroom..]);
            return next.Packet.Length;
        }

        public bool Write(Span<byte> frame, int length, in VirtioNetHeader offload)
        {
            Written.Add((frame.Slice(PacketPump.Headroom, length).ToArray(), offload));
            return true;
        }

        public void Flush() => Flushes++;
    }

    private static NatEngine Engine() => new(new NatConfig
    {
        Policy = NatPresets.FullCone,
        InsidePrefixes = [Ipv4Prefix.Parse("192.168.1.0/24")],
        ExternalAddresses = [Ext1],
        InsideAddress = Ipv4Address.Parse("192.168.1.1"),
    });

    [Fact]
    public void OutboundPacket_IsTranslatedOntoTheOutsidePort_AndItsAnswerComesBackInside()
    {
        using var engine = Engine();
        var (inside, outside) = (new ListPort(), new ListPort());
        var pump = new PacketPump(engine, inside, outside);
        inside.Waiting.Enqueue((BuildUdp("192.168.1.10:4000", "198.51.100.1:53"), VirtioNetHeader.None));

        Assert.Equal(1, pump.RunBatch(0, out var more));
        Assert.False(more);
        var sent = Assert.Single(outside.Written);
        Assert.True(Ipv4Packet.TryParse(sent.Packet, out var ip));
        Assert.Equal(Ext1, ip.Source);
        Assert.Empty(inside.Written);

        outside.Waiting.Enqueue((BuildUdp("198.51.100.1:53", $"{Ext1}:4000"), VirtioNetHeader.None));
        Assert.Equal(1, pump.RunBatch(1, out _));
        var back = Assert.Single(inside.Written);
        Assert.True(Ipv4Packet.TryParse(back.Packet, out var answer));
        Assert.Equal(Ipv4Address.Parse("192.168.1.10"), answer.Destination);
        Assert.Equal(new PacketPumpStats(1, 1, 0, 0, 2), pump.Stats);
        Assert.Equal(2, inside.Flushes); // every round ends with both ports flushed
        Assert.Equal(2, outside.Flushes);
    }

    [Fact]
    public void InsideService_AnswersDatagramsToTheInsideAddress_OthersAreTranslated_OutsideNeverReachesIt()
    {
        using var engine = Engine();
        var (inside, outside) = (new ListPort(), new ListPort());
        var pump = new PacketPump(engine, inside, outside) { InsideServices = new InsideUdpServices(Ipv4Address.Parse("192.168.1.1")) };
        var asked = new List<NatEndpoint>();
        pump.InsideServices.Add(5351, (request, source, now, reply) =>
        {
            asked.Add(source);
            request.CopyTo(reply);
            return request.Length;
        });
        inside.Waiting.Enqueue((BuildUdp("192.168.1.10:4000", "192.168.1.1:5351", payload: 12), VirtioNetHeader.None));
        inside.Waiting.Enqueue((BuildUdp("192.168.1.10:4000", "192.168.1.1:5352"), VirtioNetHeader.None)); // no service: the engine's
        outside.Waiting.Enqueue((BuildUdp("198.51.100.1:53", "192.168.1.1:5351"), VirtioNetHeader.None)); // from outside: the engine's
        pump.RunBatch(0, out _);

        Assert.Equal([Ep("192.168.1.10:4000")], asked);
        var answer = Assert.Single(inside.Written, w => Source(w.Packet) == Ep("192.168.1.1:5351"));
        Assert.Equal(Ep("192.168.1.10:4000"), Destination(answer.Packet));
        Assert.Equal(2, pump.Stats.InsideRead + pump.Stats.OutsideRead - 1); // all three read, one answered
        Assert.Equal(12 + 8 + 20, answer.Packet.Length);
    }

    [Fact]
    public void EngineMadePackets_GoToTheSideItNames_AndDropsAreCounted()
    {
        using var engine = Engine();
        var (inside, outside) = (new ListPort(), new ListPort());
        var pump = new PacketPump(engine, inside, outside);
        inside.Waiting.Enqueue((BuildUdp("192.168.1.10:4000", "198.51.100.1:53", ttl: 1), VirtioNetHeader.None));
        outside.Waiting.Enqueue((BuildUdp("198.51.100.1:53", $"{Ext1}:9999"), VirtioNetHeader.None)); // no mapping

        pump.RunBatch(0, out _);

        Assert.Empty(outside.Written);
        var error = Assert.Single(inside.Written); // ICMP Time Exceeded from the inside address, to the sender
        Assert.True(Ipv4Packet.TryParse(error.Packet, out var ip));
        Assert.Equal(IpProtocol.Icmp, ip.Protocol);
        Assert.Equal(Ipv4Address.Parse("192.168.1.1"), ip.Source);
        Assert.Equal(new PacketPumpStats(1, 1, 2, 1, 1), pump.Stats);
    }

    [Fact]
    public void AFullBatch_SaysMoreIsWaiting_AndTheRestComesNextRound()
    {
        var (inside, outside) = (new ListPort(), new ListPort());
        var pump = new PacketPump(null, inside, outside);
        for (var i = 0; i < PacketPump.Batch + 3; i++)
        {
            inside.Waiting.Enqueue((BuildUdp("192.168.1.10:4000", "198.51.100.1:53"), VirtioNetHeader.None));
        }

        Assert.Equal(PacketPump.Batch, pump.RunBatch(0, out var more));
        Assert.True(more);
        Assert.Equal(3, pump.RunBatch(0, out more));
        Assert.False(more);
        Assert.Equal(PacketPump.Batch + 3, outside.Written.Count);
    }

    [Fact]
    public void WithoutAnEngine_PacketsCrossUnchanged_WithTheirOffloadState()
    {
        var (inside, outside) = (new ListPort(), new ListPort());
        var pump = new PacketPump(null, inside, outside);
        var packet = BuildUdp("10.9.0.2:4000", "198.51.100.1:53");
        var gso = new VirtioNetHeader(VirtioNetHeader.NeedsChecksum, VirtioGsoType.UdpL4, 28, 8, 20, 6);
        inside.Waiting.Enqueue((packet, gso));
        outside.Waiting.Enqueue((packet, VirtioNetHeader.None));

        pump.RunBatch(0, out _);

        Assert.Equal(packet, Assert.Single(outside.Written).Packet);
        Assert.Equal(gso, outside.Written[0].Offload); // the port decides what to do with a super-packet
        Assert.Equal(packet, Assert.Single(inside.Written).Packet);
    }

    [Fact]
    public void PartialChecksum_IsMovedByTheAddressChangeOnly_SoTheReceiverFinishesItValid()
    {
        using var engine = Engine();
        var (inside, outside) = (new ListPort(), new ListPort());
        var pump = new PacketPump(engine, inside, outside);
        var packet = BuildUdp("192.168.1.10:4000", "198.51.100.1:53", payload: 100);
        var source = Ipv4Address.Parse("192.168.1.10");
        var destination = Ipv4Address.Parse("198.51.100.1");
        var pseudo = (ushort)~Checksum.Finish(Checksum.PseudoHeader(source, destination, IpProtocol.Udp, 108));
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(26), pseudo); // what a local stack hands a TUN with CSUM
        var partial = new VirtioNetHeader(VirtioNetHeader.NeedsChecksum, VirtioGsoType.None, 0, 0, 20, 6);
        inside.Waiting.Enqueue((packet, partial));

        pump.RunBatch(0, out _);

        var (sent, offload) = Assert.Single(outside.Written);
        Assert.Equal(partial, offload);
        Assert.True(Ipv4Packet.TryParse(sent, out var ip));
        Assert.Equal(Ext1, ip.Source);

        // finish it as the receiving kernel does: sum from the UDP header on, with the field in, into the field
        BinaryPrimitives.WriteUInt16BigEndian(sent.AsSpan(26), Checksum.Compute(sent.AsSpan(20)));
        Assert.Equal(0xFFFFu, Checksum.Add(Checksum.PseudoHeader(ip.Source, ip.Destination, IpProtocol.Udp, 108), sent.AsSpan(20)));
    }
}
