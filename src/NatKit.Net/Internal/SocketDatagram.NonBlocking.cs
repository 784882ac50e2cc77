using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace NatKit.Net.Internal;

/// <summary>Non-blocking I/O on the calling thread (<see cref="INonBlockingDatagramSocket"/>): on Linux straight
/// recvfrom/sendto with MSG_DONTWAIT on the socket's descriptor, so it never changes the socket's mode and mixes
/// with the async methods; elsewhere the synchronous Socket calls after checking what is queued.</summary>
internal sealed partial class SocketDatagram : INonBlockingDatagramSocket
{
    // Sized for the socket's family, as the kernel fills it: the endpoint cache matches whole buffers.
    private SocketAddress? _tryReceiveAddress;

    public unsafe bool TryReceive(Span<byte> buffer, out ReceivedDatagram datagram)
    {
        datagram = default;
        if (!OperatingSystem.IsLinux())
        {
            return TryReceivePortable(buffer, out datagram);
        }

        using var descriptor = new HeldDescriptor(_socket.SafeHandle);
        var address = _tryReceiveAddress ??= new SocketAddress(_socket.AddressFamily);
        while (true)
        {
            var size = address.Buffer.Length;
            nint n;
            fixed (byte* p = buffer)
            fixed (byte* a = address.Buffer.Span)
            {
                n = Libc.recvfrom(descriptor.Fd, p, buffer.Length, Libc.MSG_DONTWAIT, a, &size);
            }

            if (n >= 0)
            {
                address.Size = size;
                datagram = new ReceivedDatagram((int)n, _endPoints.GetEndPoint(address));
                return true;
            }

            var errno = Marshal.GetLastPInvokeError();
            if (errno is not (Libc.EINTR or Libc.ECONNREFUSED) /* ECONNREFUSED: an ICMP error for an earlier send */)
            {
                return false; // EAGAIN: nothing queued; anything else: nothing to take either
            }
        }
    }

    public unsafe bool TrySend(ReadOnlySpan<byte> datagram, IPEndPoint remoteEndPoint)
    {
        var address = _endPoints.GetSocketAddress(remoteEndPoint, _socket.AddressFamily);
        if (!OperatingSystem.IsLinux())
        {
            return TrySendPortable(datagram, address);
        }

        using var descriptor = new HeldDescriptor(_socket.SafeHandle);
        nint n;
        fixed (byte* p = datagram)
        fixed (byte* a = address.Buffer.Span)
        {
            n = Libc.sendto(descriptor.Fd, p, datagram.Length, Libc.MSG_DONTWAIT | Libc.MSG_NOSIGNAL, a, address.Size);
        }

        return n >= 0;
    }

    /// <summary>Runs <paramref name="action"/> with the socket's descriptor held open; <paramref name="ifClosed"/>
    /// if the socket is closed.</summary>
    internal T WithDescriptor<T>(Func<int, T> action, T ifClosed)
    {
        try
        {
            using var descriptor = new HeldDescriptor(_socket.SafeHandle);
            return action(descriptor.Fd);
        }
        catch (ObjectDisposedException)
        {
            return ifClosed;
        }
    }

    /// <summary>A socket's descriptor held open for the length of a native call: a reference on its handle, so a
    /// close from another thread cannot free (and the kernel reuse) the number meanwhile. Throws
    /// <see cref="ObjectDisposedException"/> when the socket is already closed.</summary>
    private readonly ref struct HeldDescriptor
    {
        private readonly SafeHandle _handle;

        public HeldDescriptor(SafeHandle handle)
        {
            var added = false;
            handle.DangerousAddRef(ref added);
            _handle = handle;
            Fd = (int)handle.DangerousGetHandle();
        }

        public int Fd { get; }

        public void Dispose() => _handle.DangerousRelease();
    }

    private bool TryReceivePortable(Span<byte> buffer, out ReceivedDatagram datagram)
    {
        datagram = default;
        try
        {
            while (_socket.Available > 0)
            {
                try
                {
                    var n = _socket.ReceiveFrom(buffer, SocketFlags.None, _receiveAddress);
                    datagram = new ReceivedDatagram(n, _endPoints.GetEndPoint(_receiveAddress));
                    return true;
                }
                catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionReset or SocketError.MessageSize)
                {
                }
            }

            return false;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private bool TrySendPortable(ReadOnlySpan<byte> datagram, SocketAddress address)
    {
        try
        {
            _socket.SendTo(datagram, SocketFlags.None, address);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }
}
