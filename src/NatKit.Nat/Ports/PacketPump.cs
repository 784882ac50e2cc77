using System.Buffers.Binary;
using NatKit.Packets;

namespace NatKit.Nat.Ports;

/// <summary>What a <see cref="PacketPump"/> has done since it was made.</summary>
/// <param name="InsideRead">Packets read from the inside port (a GSO super-packet counts once).</param>
/// <param name="OutsideRead">Packets read from the outside port.</param>
/// <param name="Dropped">Packets the engine dropped (and reads a port could not make sense of).</param>
/// <param name="Emitted">Packets the engine made itself (ICMP errors, fragments).</param>
/// <param name="Batches">Rounds that moved at least one packet: reads per batch is the batching achieved.</param>
public readonly record struct PacketPumpStats(long InsideRead, long OutsideRead, long Dropped, long Emitted, long Batches);

/// <summary>
/// Runs a <see cref="NatEngine"/> between two <see cref="IPacketPort"/>s: each round reads up to <see cref="Batch"/>
/// packets from the inside port and then from the outside port, translates each in place in one frame, writes it to
/// the port the verdict names, and flushes both ports. Without an engine it forwards every packet to the other port
/// unchanged (a tunnel client between its TUN device and its session).
/// </summary>
/// <remarks>
/// <para>The pump has no thread and no clock: a driver calls <see cref="RunBatch"/> with the engine's time and
/// decides how to wait between rounds (the Linux data plane's dedicated thread with poll(2), the lab's event loop).
/// One caller at a time, as for the engine.</para>
/// <para>Partial checksums (virtio NEEDS_CSUM) hold only the pseudo-header sum, which the engine's RFC 1624 update
/// would push the wrong way. The pump keeps the field, lets the engine translate, then moves the field by the
/// address change alone (ports are in the bytes the receiver still sums), the way Linux's inet_proto_csum_replace4
/// treats CHECKSUM_PARTIAL. Everything else about offloads is the ports' business.</para>
/// </remarks>
public sealed class PacketPump : INatSink
{
    /// <summary>Bytes of room before the packet in every frame (a virtio-net header fits).</summary>
    public const int Headroom = VirtioNetHeader.Size;

    /// <summary>A frame holds the room and the largest IP packet (a 64 KiB super-packet).</summary>
    public const int FrameSize = Headroom + 65536 + 128;

    /// <summary>Most packets read from one port per round.</summary>
    public const int Batch = 64;

    private readonly NatEngine? _engine;
    private readonly IPacketPort _inside;
    private readonly IPacketPort _outside;
    private readonly byte[] _frame = GC.AllocateUninitializedArray<byte>(FrameSize, pinned: true);
    private readonly byte[] _emitFrame = GC.AllocateUninitializedArray<byte>(FrameSize, pinned: true);
    private long _now;

    private long _insideRead;
    private long _outsideRead;
    private long _dropped;
    private long _emitted;
    private long _batches;

    /// <param name="engine">The engine, or null to forward unchanged between the ports.</param>
    /// <param name="inside">The inside port (the engine's inside: a LAN, the tunnel's sessions).</param>
    /// <param name="outside">The outside port.</param>
    public PacketPump(NatEngine? engine, IPacketPort inside, IPacketPort outside)
    {
        _engine = engine;
        _inside = inside ?? throw new ArgumentNullException(nameof(inside));
        _outside = outside ?? throw new ArgumentNullException(nameof(outside));
    }

    public NatEngine? Engine => _engine;

    public IPacketPort Inside => _inside;

    public IPacketPort Outside => _outside;

    /// <summary>UDP services on the NAT's inside address (NAT-PMP/PCP), answered before the engine sees the packet;
    /// null: none. Set it on the thread that runs the pump (the data plane's InvokeAsync).</summary>
    public InsideUdpServices? InsideServices { get; set; }

    /// <summary>The gateway's own stack on its inside address (see <see cref="InsideLocalDelivery"/>), offered inside
    /// packets the services did not answer; null: none. Set it on the thread that runs the pump.</summary>
    public InsideLocalDelivery? InsideLocal { get; set; }

    /// <summary>Writes a plain IPv4 packet the gateway's own stack sends to the inside (its answers, its multicast).
    /// On the thread that runs the pump (the data plane's InvokeAsync). False when too large or refused.</summary>
    public bool WriteInside(ReadOnlySpan<byte> packet)
    {
        if (packet.Length > _emitFrame.Length - Headroom)
        {
            return false;
        }

        _emitted++;
        packet.CopyTo(_emitFrame.AsSpan(Headroom));
        var written = _inside.Write(_emitFrame, packet.Length, VirtioNetHeader.None);
        _inside.Flush();
        return written;
    }

    /// <summary>A racy but tear-free read of the counters (each is a 64-bit field written by the pump's caller).</summary>
    public PacketPumpStats Stats => new(Volatile.Read(ref _insideRead), Volatile.Read(ref _outsideRead),
        Volatile.Read(ref _dropped), Volatile.Read(ref _emitted), Volatile.Read(ref _batches));

    /// <summary>
    /// One round at engine time <paramref name="now"/> (milliseconds): up to <see cref="Batch"/> packets from each
    /// port, then both ports flushed. Returns the packets moved; <paramref name="more"/> is true when a port had a
    /// full batch waiting (call again before sleeping).
    /// </summary>
    public int RunBatch(long now, out bool more)
    {
        _now = now;
        var outbound = Pump(_inside, NatDirection.Outbound);
        var inbound = Pump(_outside, NatDirection.Inbound);
        _inside.Flush();
        _outside.Flush();
        more = outbound == Batch || inbound == Batch;
        if (outbound + inbound > 0)
        {
            _batches++;
        }

        return outbound + inbound;
    }

    /// <summary>Runs the engine's timers (expiry, held SYNs and fragments) at <paramref name="now"/>; packets it
    /// makes go out through the ports.</summary>
    public void Tick(long now)
    {
        _now = now;
        if (_engine is not null)
        {
            _engine.Tick(now, this);
            _inside.Flush();
            _outside.Flush();
        }
    }

    /// <summary>INatSink: a packet the engine made (ICMP error, fragment) goes out as a plain packet.</summary>
    void INatSink.Emit(ReadOnlySpan<byte> packet, NatSide side)
    {
        if (packet.Length > _emitFrame.Length - Headroom)
        {
            return;
        }

        _emitted++;
        packet.CopyTo(_emitFrame.AsSpan(Headroom));
        _ = (side == NatSide.Inside ? _inside : _outside).Write(_emitFrame, packet.Length, VirtioNetHeader.None);
    }

    private int Pump(IPacketPort source, NatDirection direction)
    {
        for (var i = 0; i < Batch; i++)
        {
            var length = source.Read(_frame, out var offload);
            if (length == 0)
            {
                return i;
            }

            if (direction == NatDirection.Outbound)
            {
                _insideRead++;
            }
            else
            {
                _outsideRead++;
            }

            Forward(direction, length, offload);
        }

        return Batch;
    }

    private void Forward(NatDirection direction, int length, in VirtioNetHeader offload)
    {
        if (length < 0)
        {
            _dropped++;
            return;
        }

        if (_engine is null)
        {
            _ = (direction == NatDirection.Outbound ? _outside : _inside).Write(_frame, length, offload);
            return;
        }

        var packet = _frame.AsSpan(Headroom);
        if (direction == NatDirection.Outbound && InsideServices is { } services &&
            services.TryServe(packet[..length], _now, _emitFrame.AsSpan(Headroom), out var answer))
        {
            if (answer > 0) _ = _inside.Write(_emitFrame, answer, VirtioNetHeader.None);
            return;
        }

        if (direction == NatDirection.Outbound && InsideLocal is { } local && local(packet[..length], offload))
        {
            return;
        }

        // A partial checksum (see remarks): remember the field and the addresses around the engine's rewrite.
        var checksumField = offload.ChecksumStart + offload.ChecksumOffset;
        var partial = offload.NeedsChecksumCompletion && length >= 20 && packet[0] >> 4 == 4 &&
                      checksumField + 2 <= length;
        ushort partialSum = 0;
        uint oldSource = 0, oldDestination = 0;
        if (partial)
        {
            partialSum = BinaryPrimitives.ReadUInt16BigEndian(packet[checksumField..]);
            oldSource = BinaryPrimitives.ReadUInt32BigEndian(packet[12..]);
            oldDestination = BinaryPrimitives.ReadUInt32BigEndian(packet[16..]);
        }

        var verdict = _engine.Process(packet, ref length, direction, _now, this);
        IPacketPort destination;
        if (verdict.Action == NatAction.ForwardOutside)
        {
            destination = _outside;
        }
        else if (verdict.Action == NatAction.ForwardInside)
        {
            destination = _inside;
        }
        else
        {
            if (verdict.Action == NatAction.Drop)
            {
                _dropped++;
            }

            return;
        }

        if (partial && checksumField + 2 <= length)
        {
            MovePartialChecksum(packet, checksumField, partialSum, oldSource, oldDestination);
        }

        _ = destination.Write(_frame, length, offload);
    }

    /// <summary>
    /// After a translation of an IPv4 packet whose L4 checksum is partial: restores the field the engine updated
    /// (<paramref name="partialSum"/>, the pseudo-header sum before translation) and moves it by the address change
    /// only. The field holds S, not ~S: S' = S - old + new, so the RFC 1624 update is applied to ~S.
    /// </summary>
    public static void MovePartialChecksum(Span<byte> packet, int checksumField, ushort partialSum, uint oldSource,
        uint oldDestination)
    {
        var newSource = BinaryPrimitives.ReadUInt32BigEndian(packet[12..]);
        var newDestination = BinaryPrimitives.ReadUInt32BigEndian(packet[16..]);
        var complemented = (ushort)~partialSum;
        complemented = Checksum.Update(complemented, oldSource, newSource);
        complemented = Checksum.Update(complemented, oldDestination, newDestination);
        BinaryPrimitives.WriteUInt16BigEndian(packet[checksumField..], (ushort)~complemented);
    }
}
