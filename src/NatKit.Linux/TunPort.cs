using NatKit.Nat.Ports;
using NatKit.Packets;

namespace NatKit.Linux;

/// <summary>
/// A <see cref="TunDevice"/> as a packet port, with its offloads: reads carry the virtio-net header's offload state
/// to the pump; writes carry a GSO super-packet whole when the device accepted that offload and cut it with
/// <see cref="GsoSegmenter"/> when it did not, finish a partial checksum for a device without TUN_F_CSUM, and gather
/// consecutive same-flow UDP datagrams into one USO write per batch (<see cref="UdpCoalescer"/>). The port does not
/// own the device.
/// </summary>
public sealed class TunPort : IPacketPort
{
    private const int Headroom = PacketPump.Headroom;

    private readonly TunDevice _device;
    private readonly UdpCoalescer? _coalescer;
    private readonly byte[] _segments = GC.AllocateUninitializedArray<byte>(2 * PacketPump.FrameSize, pinned: true);
    private readonly int[] _segmentLengths = new int[512];

    private long _written;
    private long _writeFailures;
    private long _superPackets;
    private long _segmented;
    private long _coalesced;

    public TunPort(TunDevice device)
    {
        _device = device ?? throw new ArgumentNullException(nameof(device));
        _coalescer = device.HasVirtioHeader && (device.Offloads & TunOffloads.Uso4) != 0 ? new UdpCoalescer() : null;
    }

    public TunDevice Device => _device;

    public PacketPortStats Stats => new(Volatile.Read(ref _written), Volatile.Read(ref _writeFailures),
        Volatile.Read(ref _superPackets), Volatile.Read(ref _segmented), Volatile.Read(ref _coalesced));

    /// <summary>The device's file descriptor, for the driver's poll(2).</summary>
    internal int Descriptor => _device.FileDescriptor;

    public int Read(Span<byte> frame, out VirtioNetHeader offload)
    {
        offload = VirtioNetHeader.None;
        var room = _device.HeaderRoom;
        var n = _device.Read(frame[(Headroom - room)..]);
        if (n == 0)
        {
            return 0;
        }

        if (_device.HasVirtioHeader)
        {
            _ = VirtioNetHeader.TryRead(frame, out offload);
        }

        return n - room > 0 ? n - room : -1;
    }

    public bool Write(Span<byte> frame, int length, in VirtioNetHeader offload)
    {
        if (_coalescer is not null)
        {
            var packet = frame.Slice(Headroom, length);
            if (_coalescer.TryAppend(packet, offload))
            {
                return true;
            }

            Flush();
            if (UdpCoalescer.CanStart(packet, offload))
            {
                _coalescer.Start(packet);
                return true;
            }
        }

        return Send(frame, length, offload);
    }

    public void Flush()
    {
        if (_coalescer is null || _coalescer.Count == 0)
        {
            return;
        }

        if (_coalescer.Count > 1)
        {
            _coalesced += _coalescer.Count;
        }

        _ = Count(_device.Write(_coalescer.Take()));
    }

    /// <summary>Whether a link with <paramref name="offloads"/> takes this GSO super-packet whole: TSO4/TSO6 for
    /// TCP, USO4 or USO6 by the packet's IP version for UDP, and nothing for a GSO type this code does not know.</summary>
    internal static bool Carries(TunOffloads offloads, in VirtioNetHeader header, bool ipv6)
    {
        var needed = (header.GsoType & ~VirtioGsoType.Ecn) switch
        {
            VirtioGsoType.TcpV4 => TunOffloads.Tso4,
            VirtioGsoType.TcpV6 => TunOffloads.Tso6,
            VirtioGsoType.UdpL4 => ipv6 ? TunOffloads.Uso6 : TunOffloads.Uso4,
            _ => TunOffloads.None,
        };
        return needed != TunOffloads.None && (offloads & needed) == needed;
    }

    private bool Send(Span<byte> frame, int length, in VirtioNetHeader header)
    {
        if (header.IsGso)
        {
            if (_device.HasVirtioHeader && Carries(_device.Offloads, header, ipv6: frame[Headroom] >> 4 == 6))
            {
                _superPackets++;
                header.Write(frame);
                return Count(_device.Write(frame[..(Headroom + length)]));
            }

            _segmented++;
            var count = GsoSegmenter.Split(frame.Slice(Headroom, length), header, _segments, _device.HeaderRoom,
                _segmentLengths);
            if (count < 0)
            {
                _writeFailures++;
                return false;
            }

            var position = 0;
            var all = true;
            for (var i = 0; i < count; i++)
            {
                all &= Count(_device.Write(_segments.AsSpan(position, _segmentLengths[i])));
                position += _segmentLengths[i];
            }

            return all;
        }

        if (header.NeedsChecksumCompletion)
        {
            if ((_device.Offloads & TunOffloads.Checksum) != 0)
            {
                header.Write(frame);
                return Count(_device.Write(frame[..(Headroom + length)]));
            }

            _ = GsoSegmenter.CompleteChecksum(frame.Slice(Headroom, length), header);
        }

        if (_device.HasVirtioHeader)
        {
            frame[..Headroom].Clear();
            return Count(_device.Write(frame[..(Headroom + length)]));
        }

        return Count(_device.Write(frame.Slice(Headroom, length)));
    }

    private bool Count(bool written)
    {
        if (written)
        {
            _written++;
        }
        else
        {
            _writeFailures++;
        }

        return written;
    }
}
