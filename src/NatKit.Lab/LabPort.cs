using NatKit.Lab.Internal;
using NatKit.Nat.Ports;
using NatKit.Packets;

namespace NatKit.Lab;

/// <summary>
/// A packet port on a lab segment: the lab's third kind of <see cref="IPacketPort"/> beside a TUN device and a
/// tunnel's WebSocket sessions. Whatever the segment delivers to the port's addresses (or, as the segment's gateway,
/// to anything beyond the segment) waits in a queue for the pump; what the pump writes is put on the segment toward
/// its destination. A tunnel server's outside (owning its external address on the internet segment) and a tunnel
/// client's inside (the gateway of a LAN whose hosts then reach the world only through the tunnel) are lab ports.
/// </summary>
/// <remarks>
/// Lab packets are plain IPv4 packets: a write with an offload (a GSO super-packet, a partial checksum) is refused
/// and counted, since nothing in the lab makes one. Like every lab object it is used on the lab's thread only.
/// </remarks>
public sealed class LabPort : LabNode, ISignalingPacketPort
{
    private readonly Queue<LabPacket> _queue = new();
    private Action? _wake;
    private long _written;
    private long _writeFailures;

    internal LabPort(VirtualNetwork network, string name, LabSegment segment, IReadOnlyList<Ipv4Address> addresses,
        int capacity)
        : base(network, name)
    {
        Interface = new LabInterface(this, segment, addresses, segment.Link);
        Capacity = capacity;
    }

    /// <summary>The segment the port is on.</summary>
    public LabSegment Segment => Interface.Segment;

    /// <summary>Its addresses on the segment (the first is primary).</summary>
    public IReadOnlyList<Ipv4Address> Addresses => Interface.Addresses;

    /// <summary>Most packets waiting to be read; more are dropped (<see cref="Overflows"/>).</summary>
    public int Capacity { get; }

    /// <summary>Packets dropped because <see cref="Capacity"/> were waiting.</summary>
    public long Overflows { get; private set; }

    /// <summary>Packets waiting to be read.</summary>
    public int Waiting => _queue.Count;

    public PacketPortStats Stats => new(_written, _writeFailures, 0, 0, 0);

    internal LabInterface Interface { get; }

    public void SetWake(Action wake) => _wake = wake;

    public int Read(Span<byte> frame, out VirtioNetHeader offload)
    {
        offload = VirtioNetHeader.None;
        Network.Scheduler.EnsureLabThread();
        if (!_queue.TryDequeue(out var packet))
        {
            return 0;
        }

        var length = packet.Length;
        if (length > frame.Length - PacketPump.Headroom)
        {
            Network.Pool.Return(packet);
            return -1;
        }

        packet.Span.CopyTo(frame[PacketPump.Headroom..]);
        Network.Pool.Return(packet);
        return length;
    }

    public bool Write(Span<byte> frame, int length, in VirtioNetHeader offload)
    {
        Network.Scheduler.EnsureLabThread();
        if (offload.Flags != 0 || offload.IsGso || length < Ipv4Field.MinHeaderLength)
        {
            _writeFailures++;
            return false;
        }

        var packet = Network.Pool.Copy(frame.Slice(PacketPump.Headroom, length));
        var destination = Ipv4Address.Read(packet.Buffer.AsSpan(Ipv4Field.Destination));
        Interface.Segment.Transmit(Interface, packet, Interface.NextHop(destination));
        _written++;
        return true;
    }

    /// <summary>Writes go onto the segment at once; nothing is gathered.</summary>
    public void Flush()
    {
    }

    internal override void Receive(LabInterface iface, LabPacket packet)
    {
        if (_queue.Count >= Capacity)
        {
            Overflows++;
            Network.Pool.Return(packet);
            return;
        }

        _queue.Enqueue(packet);
        if (_queue.Count == 1)
        {
            _wake?.Invoke();
        }
    }
}
