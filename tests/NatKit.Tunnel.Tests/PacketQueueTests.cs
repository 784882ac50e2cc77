using NatKit.Packets;
using NatKit.Tunnel.Link;

namespace NatKit.Tunnel.Tests;

public class PacketQueueTests
{
    [Fact]
    public void Packets_ComeOutInOrder_WhileTheRingGrows_UpToItsCapacity()
    {
        var queue = new PacketQueue(capacity: 64, maxBytes: 1 << 20);
        for (var i = 0; i < 10; i++) // move the head, so growing must unwrap the ring
        {
            Assert.True(queue.TryEnqueue([(byte)i], VirtioNetHeader.None, 0, out _));
            Assert.True(queue.TryDequeue(out var p, out _));
            PacketQueue.Release(p);
        }

        for (var i = 0; i < 64; i++)
        {
            Assert.True(queue.TryEnqueue([(byte)i, 1, 2], VirtioNetHeader.None, 0, out var wasEmpty));
            Assert.Equal(i == 0, wasEmpty);
        }

        Assert.False(queue.TryEnqueue([99], VirtioNetHeader.None, 0, out _)); // full at its capacity
        Assert.True(queue.WaitForRoom(1));
        for (var i = 0; i < 64; i++)
        {
            Assert.True(queue.TryDequeue(out var p, out var nowEmpty));
            Assert.Equal((byte)i, p.Packet[0]);
            Assert.Equal(3, p.Length);
            Assert.Equal(i == 63, nowEmpty);
            PacketQueue.Release(p);
        }
    }

    [Fact]
    public void TheByteBound_RefusesAPacketThatWouldPassIt_ButNeverTheFirst()
    {
        var queue = new PacketQueue(capacity: 64, maxBytes: 100);
        Assert.True(queue.TryEnqueue(new byte[150], VirtioNetHeader.None, 0, out _)); // alone, it may exceed
        Assert.False(queue.TryEnqueue(new byte[1], VirtioNetHeader.None, 0, out _));
        Assert.Equal(1, queue.Clear());
        Assert.True(queue.TryEnqueue(new byte[60], VirtioNetHeader.None, 0, out _));
        Assert.False(queue.TryEnqueue(new byte[60], VirtioNetHeader.None, 0, out _));
        Assert.True(queue.TryEnqueue(new byte[40], VirtioNetHeader.None, 0, out _));
    }
}
