using System.Buffers;
using NatKit.Packets;

namespace NatKit.Tunnel.Link;

/// <summary>One queued packet: a pooled buffer holding <see cref="Room"/> bytes of room, then the packet.</summary>
internal readonly record struct QueuedPacket(byte[] Buffer, int Room, int Length, VirtioNetHeader Offload)
{
    public Span<byte> Packet => Buffer.AsSpan(Room, Length);

    /// <summary>The room and the packet together (an offload message is built in place in the room).</summary>
    public Memory<byte> WithRoom => Buffer.AsMemory(0, Room + Length);
}

/// <summary>
/// A bounded FIFO of packets between a WebSocket's loop and the data plane, safe for one producer and one consumer on
/// different threads (a lock; uncontended it costs tens of nanoseconds). Each packet is copied into a buffer from
/// <see cref="ArrayPool{T}.Shared"/>, returned when it is taken: the queue holds memory only while it holds packets.
/// Bounded by packets and by bytes; a full queue refuses (the caller drops, or waits for <see cref="RoomSignal"/>).
/// </summary>
internal sealed class PacketQueue
{
    private readonly Lock _gate = new();
    private readonly int _capacity;
    private QueuedPacket[] _ring;
    private int _mask;
    private readonly long _maxBytes;
    private int _head;
    private int _count;
    private long _bytes;
    private bool _producerWaits;

    /// <param name="capacity">Most packets (rounded up to a power of two).</param>
    /// <param name="maxBytes">Most packet bytes held at once.</param>
    /// <param name="loop">Where a producer waiting for room resumes (see <see cref="AsyncSignal"/>).</param>
    public PacketQueue(int capacity, long maxBytes, SynchronizationContext? loop = null)
    {
        RoomSignal = new AsyncSignal(loop);
        var size = 4;
        while (size < capacity)
        {
            size <<= 1;
        }

        _capacity = size;
        _ring = new QueuedPacket[Math.Min(size, 16)]; // grows while packets pile up: an idle session holds little
        _mask = _ring.Length - 1;
        _maxBytes = maxBytes;
    }

    /// <summary>Set when a packet is taken from a queue whose producer found it full (see <see cref="WaitForRoom"/>).</summary>
    public AsyncSignal RoomSignal { get; }

    public int Count => Volatile.Read(ref _count);

    /// <summary>
    /// Copies <paramref name="packet"/> in behind <paramref name="room"/> spare bytes. False when the queue is full
    /// (nothing copied). <paramref name="wasEmpty"/> is true when this packet made an empty queue non-empty: the one
    /// moment the consumer needs waking.
    /// </summary>
    public bool TryEnqueue(ReadOnlySpan<byte> packet, in VirtioNetHeader offload, int room, out bool wasEmpty)
    {
        wasEmpty = false;
        lock (_gate)
        {
            if (_count == _ring.Length && _ring.Length < _capacity)
            {
                Grow();
            }

            if (_count == _ring.Length || (_count > 0 && _bytes + packet.Length > _maxBytes))
            {
                return false;
            }

            wasEmpty = _count == 0;
            var buffer = ArrayPool<byte>.Shared.Rent(room + packet.Length);
            packet.CopyTo(buffer.AsSpan(room));
            _ring[(_head + _count) & _mask] = new QueuedPacket(buffer, room, packet.Length, offload);
            _count++;
            _bytes += packet.Length;
            return true;
        }
    }

    /// <summary>Takes the oldest packet; <see cref="Release"/> it when done. <paramref name="nowEmpty"/> says the
    /// queue is empty after this take (so the consumer may stop looking until the next wake-up).</summary>
    public bool TryDequeue(out QueuedPacket packet, out bool nowEmpty)
    {
        bool wake;
        lock (_gate)
        {
            if (_count == 0)
            {
                packet = default;
                nowEmpty = true;
                return false;
            }

            packet = _ring[_head];
            _ring[_head] = default;
            _head = (_head + 1) & _mask;
            _count--;
            _bytes -= packet.Length;
            nowEmpty = _count == 0;
            wake = _producerWaits;
            if (wake)
            {
                _producerWaits = false;
            }
        }

        if (wake)
        {
            RoomSignal.Set();
        }

        return true;
    }

    /// <summary>Says the producer is about to wait on <see cref="RoomSignal"/> for room for
    /// <paramref name="length"/> bytes; false when there is room already (do not wait, enqueue).</summary>
    public bool WaitForRoom(int length)
    {
        lock (_gate)
        {
            if ((_count < _ring.Length || _ring.Length < _capacity) && (_count == 0 || _bytes + length <= _maxBytes))
            {
                return false;
            }

            _producerWaits = true;
            return true;
        }
    }

    /// <summary>Doubles the ring, keeping the packets in order (under the lock).</summary>
    private void Grow()
    {
        var bigger = new QueuedPacket[_ring.Length * 2];
        for (var i = 0; i < _count; i++)
        {
            bigger[i] = _ring[(_head + i) & _mask];
        }

        _ring = bigger;
        _mask = bigger.Length - 1;
        _head = 0;
    }

    /// <summary>Returns a taken packet's buffer to the pool.</summary>
    public static void Release(in QueuedPacket packet)
    {
        if (packet.Buffer is not null)
        {
            ArrayPool<byte>.Shared.Return(packet.Buffer);
        }
    }

    /// <summary>Drops everything queued (a link that ended: nothing stale may be sent on the next one).</summary>
    public int Clear()
    {
        var dropped = 0;
        while (TryDequeue(out var p, out _))
        {
            Release(p);
            dropped++;
        }

        return dropped;
    }
}
