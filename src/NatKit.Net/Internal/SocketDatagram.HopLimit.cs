using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace NatKit.Net.Internal;

/// <summary>One datagram with a hop limit of its own: on Linux one sendmsg whose control message (IP_TTL or
/// IPV6_HOPLIMIT) applies to that datagram only, so sends on other threads keep the socket's default.</summary>
internal sealed partial class SocketDatagram : IHopLimitDatagramSocket
{
    private const int IpProtoIp = 0;
    private const int IpTtl = 2;
    private const int IpProtoIpv6 = 41;
    private const int Ipv6HopLimit = 52;

    /// <summary>cmsghdr (length, level, type: 16 bytes on LP64) and one int, padded: CMSG_SPACE(sizeof(int)).</summary>
    private const int ControlLength = 24;

    public unsafe ValueTask<int> SendToAsync(ReadOnlyMemory<byte> datagram, IPEndPoint remoteEndPoint, byte hopLimit,
        CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfZero(hopLimit);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed), this);
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<int>(cancellationToken);
        }

        if (!DatagramBatchIo.Supported)
        {
            return ValueTask.FromResult(0);
        }

        var address = _endPoints.GetSocketAddress(remoteEndPoint, _socket.AddressFamily);
        Span<byte> name = stackalloc byte[address.Size];
        address.Buffer.Span[..address.Size].CopyTo(name);
        Span<byte> control = stackalloc byte[ControlLength];
        control.Clear();
        var v6 = _socket.AddressFamily == AddressFamily.InterNetworkV6;
        BinaryPrimitives.WriteUInt64LittleEndian(control, 20); // CMSG_LEN(sizeof(int))
        MemoryMarshal.Write(control[8..], v6 ? IpProtoIpv6 : IpProtoIp);
        MemoryMarshal.Write(control[12..], v6 ? Ipv6HopLimit : IpTtl);
        MemoryMarshal.Write(control[16..], (int)hopLimit);
        using var pin = datagram.Pin();
        fixed (byte* namePtr = name)
        fixed (byte* controlPtr = control)
        {
            var iov = new DatagramBatchIo.IoVec { Base = (byte*)pin.Pointer, Length = (nuint)datagram.Length };
            var header = new DatagramBatchIo.MsgHdr
            {
                Name = namePtr,
                NameLength = (uint)name.Length,
                Iov = &iov,
                IovLength = 1,
                Control = controlPtr,
                ControlLength = ControlLength,
            };
            nint sent;
            int errno;
            try
            {
                using var descriptor = new HeldDescriptor(_socket.SafeHandle);
                sent = SendMsg(descriptor.Fd, &header, MsgDontWait);
                errno = sent < 0 ? Marshal.GetLastPInvokeError() : 0;
            }
            catch (ObjectDisposedException)
            {
                throw new ObjectDisposedException(nameof(SocketDatagram));
            }

            if (sent >= 0)
            {
                return ValueTask.FromResult((int)sent);
            }

            ObjectDisposedException.ThrowIf(errno is Libc.EBADF or Libc.ENOTSOCK, this);
            // A full send buffer drops this datagram as a router would: hole punching sends again.
            return errno == Libc.EAGAIN
                ? ValueTask.FromResult(0)
                : ValueTask.FromException<int>(new NetworkException(SocketError.SocketError,
                    $"sending from {LocalEndPoint} to {remoteEndPoint} with hop limit {hopLimit} failed: errno {errno}"));
        }
    }

    private const int MsgDontWait = 0x40;

    [LibraryImport("libc", EntryPoint = "sendmsg", SetLastError = true)]
    private static unsafe partial nint SendMsg(int fd, DatagramBatchIo.MsgHdr* message, int flags);
}
