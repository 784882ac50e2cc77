using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace NatKit.Net.Internal;

/// <summary>An <see cref="IDatagramPoller"/> over a Linux epoll instance (level-triggered), with an eventfd to
/// wake the waiting thread.</summary>
internal sealed unsafe class EpollPoller : IDatagramPoller
{
    private const int MaxEvents = 256;
    private const long WakeToken = long.MinValue;

    private readonly int _epoll;
    private readonly int _wake;
    private readonly byte[] _events = GC.AllocateArray<byte>(MaxEvents * 16, pinned: true);
    private int _disposed;

    private EpollPoller(int epoll, int wake)
    {
        _epoll = epoll;
        _wake = wake;
    }

    public static EpollPoller? TryCreate() =>
        Libc.TryCreateEpollWithWake(WakeToken, out var epoll, out var wake) ? new EpollPoller(epoll, wake) : null;

    public bool TryAdd(IDatagramSocket socket, long token)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (token == WakeToken || socket is not SocketDatagram s)
        {
            return false;
        }

        return s.WithDescriptor(fd => Control(_epoll, Libc.EPOLL_CTL_ADD, fd, token) == 0, false);
    }

    public void Remove(IDatagramSocket socket)
    {
        if (Volatile.Read(ref _disposed) == 0 && socket is SocketDatagram s)
        {
            s.WithDescriptor(fd => Control(_epoll, Libc.EPOLL_CTL_DEL, fd, 0) == 0, false);
        }
    }

    public int Wait(Span<long> ready, int timeoutMilliseconds)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var max = Math.Min(ready.Length, MaxEvents);
        int n;
        fixed (byte* events = _events)
        {
            n = Libc.epoll_wait(_epoll, events, max, timeoutMilliseconds);
        }

        if (n < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno == Libc.EINTR)
            {
                return 0;
            }

            throw new NetworkException(System.Net.Sockets.SocketError.SocketError, $"epoll_wait failed: errno {errno}");
        }

        var count = 0;
        var stride = Libc.EpollEventSize;
        for (var i = 0; i < n; i++)
        {
            var token = BinaryPrimitives.ReadInt64LittleEndian(_events.AsSpan(i * stride + Libc.EpollDataOffset));
            if (token == WakeToken)
            {
                ulong value;
                Libc.read(_wake, (byte*)&value, sizeof(ulong));
                continue;
            }

            ready[count++] = token;
        }

        return count;
    }

    public void Wake()
    {
        if (Volatile.Read(ref _disposed) == 0)
        {
            ulong one = 1;
            Libc.write(_wake, (byte*)&one, sizeof(ulong));
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            Libc.close(_wake);
            Libc.close(_epoll);
        }
    }

    private static int Control(int epoll, int op, int fd, long token) =>
        Libc.EpollControl(epoll, op, fd, Libc.EPOLLIN, token);
}
