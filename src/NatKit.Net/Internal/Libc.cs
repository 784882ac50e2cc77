using System.Runtime.InteropServices;

namespace NatKit.Net.Internal;

/// <summary>The few Linux system calls and constants behind <see cref="EpollPoller"/>, non-blocking and batched
/// datagram I/O.</summary>
internal static unsafe partial class Libc
{
    // errno values (Linux): shared by the epoll, non-blocking and recvmmsg/sendmmsg paths.
    public const int EINTR = 4;
    public const int EBADF = 9;
    public const int EAGAIN = 11;
    public const int ENOTSOCK = 88;
    public const int ECONNREFUSED = 111;
    public const int MSG_DONTWAIT = 0x40;
    public const int MSG_NOSIGNAL = 0x4000;
    public const int EPOLL_CTL_ADD = 1;
    public const int EPOLL_CTL_DEL = 2;
    public const int EPOLL_CTL_MOD = 3;
    public const int EPIPE = 32;
    public const uint EPOLLIN = 0x001;
    public const uint EPOLLOUT = 0x004;
    public const uint EPOLLRDHUP = 0x2000;
    public const uint EPOLLET = 0x80000000;
    public const int O_NONBLOCK = 0x800;
    public const int O_CLOEXEC = 0x80000;
    public const int F_GETFL = 3;
    public const int F_SETFL = 4;
    public const int F_SETPIPE_SZ = 1031;
    public const uint SPLICE_F_MOVE = 1;
    public const uint SPLICE_F_NONBLOCK = 2;
    public const int SHUT_WR = 1;
    public const int EPOLL_CLOEXEC = 0x80000;
    public const int EFD_CLOEXEC = 0x80000;
    public const int EFD_NONBLOCK = 0x800;

    /// <summary>struct epoll_event is packed (12 bytes) on x86-64 and naturally aligned (16) elsewhere.</summary>
    public static readonly int EpollEventSize =
        RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 12 : 16;

    public static readonly int EpollDataOffset = EpollEventSize == 12 ? 4 : 8;

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint recvfrom(int fd, byte* buffer, nint length, int flags, byte* address, int* addressLength);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint sendto(int fd, byte* buffer, nint length, int flags, byte* address, int addressLength);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int epoll_create1(int flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int epoll_ctl(int epfd, int op, int fd, byte* evt);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int epoll_wait(int epfd, byte* events, int maxEvents, int timeout);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int eventfd(uint initval, int flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint read(int fd, byte* buffer, nint count);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint write(int fd, byte* buffer, nint count);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int close(int fd);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int pipe2(int* fds, int flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial nint splice(int fdIn, long* offIn, int fdOut, long* offOut, nuint length, uint flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int fcntl(int fd, int command, int argument);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int shutdown(int fd, int how);

    /// <summary>An epoll set (Linux only) holding a non-blocking eventfd under <paramref name="wakeToken"/>, level-
    /// triggered, for waking the thread that waits on the set; false (nothing left open) when either cannot be made.</summary>
    public static bool TryCreateEpollWithWake(long wakeToken, out int epoll, out int wake)
    {
        epoll = wake = -1;
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }

        epoll = epoll_create1(EPOLL_CLOEXEC);
        if (epoll < 0)
        {
            return false;
        }

        wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (wake >= 0 && EpollControl(epoll, EPOLL_CTL_ADD, wake, EPOLLIN, wakeToken) == 0)
        {
            return true;
        }

        if (wake >= 0)
        {
            _ = close(wake);
        }

        _ = close(epoll);
        epoll = wake = -1;
        return false;
    }

    /// <summary>epoll_ctl with a struct epoll_event of <paramref name="events"/> and a 64-bit token.</summary>
    public static int EpollControl(int epoll, int op, int fd, uint events, long token)
    {
        byte* evt = stackalloc byte[16];
        new Span<byte>(evt, 16).Clear();
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(new Span<byte>(evt, 4), events);
        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(new Span<byte>(evt + EpollDataOffset, 8), token);
        return epoll_ctl(epoll, op, fd, evt);
    }
}
