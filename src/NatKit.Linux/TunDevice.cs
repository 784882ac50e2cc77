using System.Runtime.InteropServices;
using System.Text;
using NatKit.Linux.Interop;
using NatKit.Packets;

namespace NatKit.Linux;

/// <summary>What to ask of a TUN device when opening it.</summary>
/// <param name="Name">Interface name (at most 15 bytes). An existing persistent device of that name is attached
/// to; otherwise a new one is created and lives as long as this handle.</param>
/// <param name="Offloads">Offloads to request. The kernel may refuse some (USO before Linux 6.2): the device
/// falls back to what it accepts, see <see cref="TunDevice.Offloads"/>. <see cref="TunOffloads.None"/> opens the
/// device without a virtio-net header.</param>
public sealed record TunOptions(string Name, TunOffloads Offloads = TunOffloads.All);

/// <summary>
/// A Linux TUN device (IFF_TUN | IFF_NO_PI, plus IFF_VNET_HDR when offloads are asked for) opened non-blocking.
/// One packet per read and per write; with a virtio-net header every packet is preceded by
/// <see cref="VirtioNetHeader.Size"/> header bytes, in both directions.
/// </summary>
/// <remarks>
/// To open a device inside another network namespace, <see cref="OpenIn"/> switches a short-lived thread into
/// that namespace (setns), opens /dev/net/tun there, and returns: a TUN belongs to the namespace of the thread that
/// opened it, and the file descriptor works from any thread afterwards. The calling process never leaves its own
/// namespace.
/// </remarks>
public sealed unsafe class TunDevice : IDisposable
{
    private int _fd;

    private TunDevice(int fd, string name, TunOffloads offloads, bool vnetHeader)
    {
        _fd = fd;
        Name = name;
        Offloads = offloads;
        HasVirtioHeader = vnetHeader;
    }

    public string Name { get; }

    /// <summary>The offloads the kernel accepted.</summary>
    public TunOffloads Offloads { get; }

    /// <summary>True when every packet read or written starts with a <see cref="VirtioNetHeader"/>.</summary>
    public bool HasVirtioHeader { get; }

    /// <summary>Bytes before the IP header in every read and write (10 with a virtio header, else 0).</summary>
    public int HeaderRoom => HasVirtioHeader ? VirtioNetHeader.Size : 0;

    internal int FileDescriptor => _fd;

    /// <summary>Opens (or attaches to) a TUN device in the calling thread's network namespace.</summary>
    public static TunDevice Open(TunOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Name.Length == 0 || Encoding.UTF8.GetByteCount(options.Name) >= TunIoctl.IfNameSize)
        {
            throw new ArgumentException($"TUN name '{options.Name}' must be 1 to 15 bytes", nameof(options));
        }

        var fd = Libc.Open("/dev/net/tun", Libc.O_RDWR | Libc.O_NONBLOCK | Libc.O_CLOEXEC);
        if (fd < 0)
        {
            throw Libc.Error("open /dev/net/tun");
        }

        try
        {
            var vnet = options.Offloads != TunOffloads.None;
            var ifr = stackalloc byte[TunIoctl.IfReqSize];
            new Span<byte>(ifr, TunIoctl.IfReqSize).Clear();
            Encoding.UTF8.GetBytes(options.Name, new Span<byte>(ifr, TunIoctl.IfNameSize - 1));
            *(short*)(ifr + TunIoctl.IfNameSize) =
                (short)(TunIoctl.IFF_TUN | TunIoctl.IFF_NO_PI | (vnet ? TunIoctl.IFF_VNET_HDR : 0));
            if (Libc.Ioctl(fd, TunIoctl.TUNSETIFF, ifr) < 0)
            {
                throw Libc.Error($"TUNSETIFF {options.Name}");
            }

            var name = Marshal.PtrToStringUTF8((nint)ifr) ?? options.Name;
            var accepted = TunOffloads.None;
            if (vnet)
            {
                var size = VirtioNetHeader.Size;
                if (Libc.Ioctl(fd, TunIoctl.TUNSETVNETHDRSZ, &size) < 0)
                {
                    throw Libc.Error("TUNSETVNETHDRSZ");
                }

                accepted = NegotiateOffloads(fd, options.Offloads);
            }

            return new TunDevice(fd, name, accepted, vnet);
        }
        catch
        {
            _ = Libc.Close(fd);
            throw;
        }
    }

    /// <summary>Opens (or attaches to) a TUN device inside the named network namespace (/run/netns/NAME).</summary>
    public static TunDevice OpenIn(string networkNamespace, TunOptions options) =>
        NetworkNamespace.RunInside(networkNamespace, () => Open(options));

    /// <summary>
    /// Asks for the wanted offloads, dropping the ones the kernel refuses (EINVAL) from the newest down: USO first,
    /// then TSO, then the checksum offload itself.
    /// </summary>
    private static TunOffloads NegotiateOffloads(int fd, TunOffloads wanted)
    {
        ReadOnlySpan<TunOffloads> attempts =
        [
            wanted,
            wanted & ~(TunOffloads.Uso4 | TunOffloads.Uso6),
            wanted & TunOffloads.Checksum,
            TunOffloads.None,
        ];
        foreach (var attempt in attempts)
        {
            var flags = attempt;
            if ((flags & TunOffloads.Checksum) == 0)
            {
                flags = TunOffloads.None; // every segmentation offload needs the checksum offload
            }

            if (Libc.Ioctl(fd, TunIoctl.TUNSETOFFLOAD, (nuint)(uint)flags) == 0)
            {
                return flags;
            }
        }

        throw Libc.Error("TUNSETOFFLOAD");
    }

    /// <summary>
    /// Reads one packet (with its virtio header when <see cref="HasVirtioHeader"/>) without blocking. Returns its
    /// length, or 0 when nothing is waiting.
    /// </summary>
    public int Read(Span<byte> buffer)
    {
        fixed (byte* p = buffer)
        {
            while (true)
            {
                var n = Libc.Read(_fd, p, (nuint)buffer.Length);
                if (n >= 0)
                {
                    return (int)n;
                }

                var errno = Marshal.GetLastPInvokeError();
                if (errno == Libc.EAGAIN)
                {
                    return 0;
                }

                if (errno != Libc.EINTR)
                {
                    throw Libc.Error($"read {Name}");
                }
            }
        }
    }

    /// <summary>
    /// Writes one packet (with its virtio header when <see cref="HasVirtioHeader"/>). Returns false when the
    /// kernel refused it (malformed packet, no carrier, queue full), which a router treats as a drop.
    /// </summary>
    public bool Write(ReadOnlySpan<byte> packet)
    {
        fixed (byte* p = packet)
        {
            while (true)
            {
                var n = Libc.Write(_fd, p, (nuint)packet.Length);
                if (n >= 0)
                {
                    return true;
                }

                if (Marshal.GetLastPInvokeError() != Libc.EINTR)
                {
                    return false;
                }
            }
        }
    }

    /// <summary>Blocks until a packet is waiting or <paramref name="timeoutMilliseconds"/> pass; true when readable.</summary>
    public bool WaitReadable(int timeoutMilliseconds)
    {
        var pfd = new Libc.PollFd { Fd = _fd, Events = Libc.POLLIN };
        return Libc.Poll(&pfd, 1, timeoutMilliseconds) > 0 && (pfd.Revents & Libc.POLLIN) != 0;
    }

    public void Dispose()
    {
        var fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0)
        {
            _ = Libc.Close(fd);
        }
    }
}
