using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace NatKit.Net.Internal;

/// <summary>
/// A UDP socket over System.Net.Sockets using the pooled, allocation-free SocketAddress overloads: asynchronous,
/// synchronous and batched (<see cref="IBlockingDatagramSocket"/>), or non-blocking under a poller
/// (<see cref="INonBlockingDatagramSocket"/>, in SocketDatagram.NonBlocking.cs).
/// </summary>
internal sealed partial class SocketDatagram : IDatagramSocket, ISocketBuffers, IBlockingDatagramSocket
{
    private readonly Socket _socket;
    private readonly SocketAddress _receiveAddress;
    private readonly EndPointCache _endPoints = new();
    private bool _disposed;

    public SocketDatagram(Socket socket)
    {
        _socket = socket;
        LocalEndPoint = (IPEndPoint)socket.LocalEndPoint!;
        _receiveAddress = new SocketAddress(socket.AddressFamily);
    }

    public IPEndPoint LocalEndPoint { get; }

    public ValueTask<int> SendToAsync(ReadOnlyMemory<byte> datagram, IPEndPoint remoteEndPoint,
        CancellationToken cancellationToken = default)
    {
        var address = _endPoints.GetSocketAddress(remoteEndPoint, _socket.AddressFamily);
        return _socket.SendToAsync(datagram, SocketFlags.None, address, cancellationToken);
    }

    // Pooled builder: a receive that has to wait reuses its state machine box instead of allocating one.
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<ReceivedDatagram> ReceiveFromAsync(Memory<byte> buffer,
        CancellationToken cancellationToken = default)
    {
        while (true)
        {
            try
            {
                var n = await _socket.ReceiveFromAsync(buffer, SocketFlags.None, _receiveAddress, cancellationToken)
                    .ConfigureAwait(false);
                return new ReceivedDatagram(n, _endPoints.GetEndPoint(_receiveAddress));
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionReset
                                                or SocketError.MessageSize)
            {
                // An ICMP error for an earlier send, or a datagram larger than the buffer: neither ends the
                // socket. Keep receiving.
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.OperationAborted)
            {
                throw new ObjectDisposedException(nameof(SocketDatagram), e);
            }
        }
    }

    public ReceivedDatagram Receive(Span<byte> buffer)
    {
        while (true)
        {
            if (TryReceiveOnce(buffer, out var datagram))
            {
                return datagram;
            }
        }
    }

    /// <summary>One blocking receive; false when the datagram was one to skip (an ICMP error, too large).</summary>
    private bool TryReceiveOnce(Span<byte> buffer, out ReceivedDatagram datagram)
    {
        datagram = default;
        try
        {
            var n = _socket.ReceiveFrom(buffer, SocketFlags.None, _receiveAddress);
            datagram = new ReceivedDatagram(n, _endPoints.GetEndPoint(_receiveAddress));
            return true;
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionReset
                                            or SocketError.MessageSize)
        {
            // As in ReceiveFromAsync: neither an ICMP error nor an oversized datagram ends the socket.
            return false;
        }
        catch (SocketException e) when (Volatile.Read(ref _disposed) || e.SocketErrorCode is SocketError.OperationAborted
                                            or SocketError.Interrupted or SocketError.Shutdown)
        {
            // Closed from another thread while this one waited in the kernel.
            throw new ObjectDisposedException(nameof(SocketDatagram), e);
        }
        catch (SocketException e)
        {
            throw new NetworkException(e.SocketErrorCode, $"receive on {LocalEndPoint} failed: {e.Message}", e);
        }
    }

    public int Send(ReadOnlySpan<byte> datagram, IPEndPoint remoteEndPoint)
    {
        var address = _endPoints.GetSocketAddress(remoteEndPoint, _socket.AddressFamily);
        try
        {
            return _socket.SendTo(datagram, SocketFlags.None, address);
        }
        catch (SocketException e) when (Volatile.Read(ref _disposed) || e.SocketErrorCode == SocketError.OperationAborted)
        {
            throw new ObjectDisposedException(nameof(SocketDatagram), e);
        }
        catch (SocketException e)
        {
            throw new NetworkException(e.SocketErrorCode, $"send to {remoteEndPoint} failed: {e.Message}", e);
        }
    }

    public int ReceiveBatch(DatagramBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        if (!DatagramBatchIo.Supported)
        {
            var one = Receive(batch.Slot(0));
            batch.Set(0, one.Length, one.RemoteEndPoint);
            return 1;
        }

        var headers = batch.Headers;
        while (true)
        {
            headers.PrepareReceive();
            var n = CallNative(headers, batch.Capacity, DatagramBatchIo.MSG_WAITFORONE, out var errno);
            if (n > 0 && !Volatile.Read(ref _disposed))
            {
                var kept = 0;
                for (var i = 0; i < n; i++)
                {
                    var length = headers.ReceivedLength(i, out var truncated);
                    if (truncated || !headers.HasSender(i))
                    {
                        // As Receive: a datagram larger than the buffer is dropped. No sender: not a datagram but
                        // the wake-up of a shutdown.
                        continue;
                    }

                    if (kept != i)
                    {
                        batch.Slot(i)[..length].CopyTo(batch.Slot(kept));
                    }

                    headers.CopySender(i, _receiveAddress);
                    batch.Set(kept++, length, _endPoints.GetEndPoint(_receiveAddress));
                }

                if (kept > 0)
                {
                    return kept;
                }

                continue;
            }

            if (n == 0 || Volatile.Read(ref _disposed) || errno is Libc.EBADF or Libc.ENOTSOCK)
            {
                // Zero datagrams from a blocking wait means shut down, which only closing the socket does.
                throw new ObjectDisposedException(nameof(SocketDatagram));
            }

            if (errno != Libc.ECONNREFUSED) // an ICMP error for an earlier send: keep receiving
            {
                WaitOrThrow(errno, SelectMode.SelectRead, "receive on");
            }
        }
    }

    public int SendBatch(DatagramBatch batch, int count)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(count, batch.Capacity);
        var sent = 0;
        if (!DatagramBatchIo.Supported)
        {
            for (var i = 0; i < count; i++)
            {
                try
                {
                    Send(batch.Datagram(i), batch.RemoteEndPoint(i));
                    sent++;
                }
                catch (NetworkException)
                {
                }
            }

            return sent;
        }

        var headers = batch.Headers;
        for (var i = 0; i < count; i++)
        {
            headers.PrepareSend(i, batch.LengthOf(i),
                _endPoints.GetSocketAddress(batch.RemoteEndPoint(i), _socket.AddressFamily));
        }

        var done = 0;
        while (done < count)
        {
            var n = CallNative(headers, count - done, -1, out var errno, done);
            if (n > 0)
            {
                done += n;
                sent += n;
                continue;
            }

            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) ||
                                            errno is Libc.EBADF or Libc.ENOTSOCK, this);
            if (errno is Libc.EINTR or Libc.EAGAIN)
            {
                WaitOrThrow(errno, SelectMode.SelectWrite, "send from");
                continue;
            }

            done++; // this datagram was refused; the rest still go
        }

        return sent;
    }

    /// <summary>recvmmsg (<paramref name="receiveFlags"/> &gt;= 0) or sendmmsg on the socket's descriptor, holding it open for the call's length.</summary>
    private unsafe int CallNative(MessageHeaders headers, int count, int receiveFlags, out int errno, int offset = 0)
    {
        errno = 0;
        try
        {
            using var descriptor = new HeldDescriptor(_socket.SafeHandle);
            var n = receiveFlags >= 0
                ? DatagramBatchIo.RecvMmsg(descriptor.Fd, headers.Messages + offset, (uint)count, receiveFlags, null)
                : DatagramBatchIo.SendMmsg(descriptor.Fd, headers.Messages + offset, (uint)count, 0);
            if (n < 0)
            {
                errno = Marshal.GetLastPInvokeError();
            }

            return n;
        }
        catch (ObjectDisposedException)
        {
            throw new ObjectDisposedException(nameof(SocketDatagram));
        }
    }

    /// <summary>EINTR: try again. EAGAIN (the socket was made non-blocking by an asynchronous call): wait until
    /// it is ready. Anything else is an error that leaves the socket open.</summary>
    private void WaitOrThrow(int errno, SelectMode mode, string what)
    {
        if (errno == Libc.EINTR)
        {
            return;
        }

        if (errno == Libc.EAGAIN)
        {
            try
            {
                _socket.Poll(-1, mode);
                return;
            }
            catch (SocketException e)
            {
                throw new ObjectDisposedException(nameof(SocketDatagram), e);
            }
        }

        throw new NetworkException(SocketError.SocketError, $"{what} {LocalEndPoint} failed: errno {errno}");
    }

    public bool TrySetBufferSizes(int receiveBytes, int sendBytes)
    {
        try
        {
            if (receiveBytes > 0)
            {
                _socket.ReceiveBufferSize = receiveBytes;
            }

            if (sendBytes > 0)
            {
                _socket.SendBufferSize = sendBytes;
            }

            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    public void Dispose()
    {
        Volatile.Write(ref _disposed, true);
        _socket.Dispose();
    }

    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }
}
