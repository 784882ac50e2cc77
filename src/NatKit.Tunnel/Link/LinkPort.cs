using NatKit.Nat.Ports;
using NatKit.Packets;

namespace NatKit.Tunnel.Link;

/// <summary>
/// A client's side of the tunnel as a packet port: whatever link is current (none between two connections: writes
/// then fail and are counted, as a router drops packets for a link that is down). The client's pump forwards between
/// its TUN device and this port without a NAT.
/// </summary>
internal sealed class LinkPort : ISignalingPacketPort
{
    private readonly byte[] _scratch = GC.AllocateUninitializedArray<byte>(2 * PacketPump.FrameSize);
    private readonly int[] _lengths = new int[512];
    private TunnelLink? _link;
    private Action? _wake;
    private bool _touched;
    private long _written;
    private long _writeFailures;

    public PacketPortStats Stats => new(Volatile.Read(ref _written), Volatile.Read(ref _writeFailures), 0, 0, 0);

    public void SetWake(Action wake) => _wake = wake;

    /// <summary>Makes <paramref name="link"/> (or none) the one packets go to and come from.</summary>
    public void Attach(TunnelLink? link)
    {
        if (link is not null)
        {
            link.OnReadable = () => _wake?.Invoke();
        }

        Volatile.Write(ref _link, link);
        _wake?.Invoke();
    }

    public int Read(Span<byte> frame, out VirtioNetHeader offload)
    {
        offload = VirtioNetHeader.None;
        var link = Volatile.Read(ref _link);
        if (link is null || !link.Inbound.TryDequeue(out var packet, out _))
        {
            return 0;
        }

        var length = packet.Length;
        packet.Packet.CopyTo(frame[PacketPump.Headroom..]);
        offload = packet.Offload;
        PacketQueue.Release(packet);
        return length;
    }

    public bool Write(Span<byte> frame, int length, in VirtioNetHeader offload)
    {
        var link = Volatile.Read(ref _link);
        if (link is null || !link.TrySend(frame.Slice(PacketPump.Headroom, length), offload, _scratch, _lengths))
        {
            _writeFailures++;
            return false;
        }

        _written++;
        _touched = true;
        return true;
    }

    public void Flush()
    {
        if (_touched)
        {
            _touched = false;
            Volatile.Read(ref _link)?.SendFromDataPlane();
        }
    }
}
