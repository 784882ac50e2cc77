using NatKit.Packets;

namespace NatKit.Nat.Ports;

/// <summary>
/// Where a <see cref="PacketPump"/> reads IP packets from and writes them to: a TUN device with its offloads, the
/// WebSocket sessions of a tunnel, an interface in the in-memory lab. The pump reads a batch from each of its two
/// ports, runs every packet through the engine, writes it to the port the verdict names, and ends the batch with
/// <see cref="Flush"/>. All calls come from the pump's one thread (or the lab's loop), one at a time.
/// </summary>
/// <remarks>
/// Packets travel in frames: <see cref="PacketPump.Headroom"/> bytes of room, then the IP packet. The room belongs to
/// the port (a TUN reads and writes its virtio-net header there), so a packet moves from one port to the other
/// without a copy. Offload state travels beside the packet as a <see cref="VirtioNetHeader"/>: a GSO super-packet or
/// a partial checksum that the receiving port cannot carry is the receiving port's to finish (segment it, complete
/// the checksum), never the pump's.
/// </remarks>
public interface IPacketPort
{
    /// <summary>
    /// Reads the next waiting packet into <paramref name="frame"/>[<see cref="PacketPump.Headroom"/>..] without
    /// blocking. Returns its length, 0 when nothing is waiting, or -1 for a read that held no packet (the pump counts
    /// it as a drop and reads on). <paramref name="offload"/> says whether it is a super-packet or has a partial
    /// checksum (<see cref="VirtioNetHeader.None"/> for a plain packet).
    /// </summary>
    int Read(Span<byte> frame, out VirtioNetHeader offload);

    /// <summary>
    /// Writes the packet at <paramref name="frame"/>[<see cref="PacketPump.Headroom"/>..][..<paramref name="length"/>]
    /// (the room before it is the port's to use). Returns false when the port refused it (a full queue, a kernel
    /// that said no): the pump counts that as a write failure, as a router counts a drop.
    /// </summary>
    bool Write(Span<byte> frame, int length, in VirtioNetHeader offload);

    /// <summary>Ends a batch: sends what the port gathered (coalesced datagrams, queued messages).</summary>
    void Flush();

    /// <summary>What the port has written and refused so far.</summary>
    PacketPortStats Stats { get; }
}

/// <summary>
/// A port whose packets arrive from outside the pump (other threads, the lab's loop) rather than from a kernel file
/// descriptor: its driver hands it a wake-up to call when packets become readable, so the pump can sleep without
/// polling it.
/// </summary>
public interface ISignalingPacketPort : IPacketPort
{
    /// <summary>Called once by the pump's driver before the first read. The port calls <paramref name="wake"/>
    /// (from any thread) whenever it goes from nothing waiting to something waiting.</summary>
    void SetWake(Action wake);
}

/// <summary>What a port has written: a super-packet or a coalesced run counts once per write.</summary>
/// <param name="Written">Writes that succeeded.</param>
/// <param name="WriteFailures">Writes refused.</param>
/// <param name="SuperPackets">GSO super-packets carried whole.</param>
/// <param name="Segmented">Super-packets cut into segments because this port could not carry them whole.</param>
/// <param name="Coalesced">Datagrams written as part of a coalesced super-packet.</param>
public readonly record struct PacketPortStats(long Written, long WriteFailures, long SuperPackets, long Segmented,
    long Coalesced);

/// <summary>
/// Who runs a <see cref="PacketPump"/>: the Linux data plane's thread, or the lab's loop. Work on the engine from
/// anywhere else (a flow snapshot, forgetting a host) is handed to it, since only the pump's caller may touch the
/// engine.
/// </summary>
public interface IPacketPumpDriver
{
    PacketPump Pump { get; }

    /// <summary>Runs <paramref name="action"/> between two rounds of the pump and returns its result.</summary>
    Task<T> InvokeAsync<T>(Func<T> action);
}
