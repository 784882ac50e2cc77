using System.Net;
using NatKit.Utp.Internal;

namespace NatKit.Utp;

/// <summary>
/// One uTP connection as a <see cref="Stream"/>. Reads return 0 once the peer's FIN and everything before it has been
/// read; <see cref="ShutdownWrite"/> sends a FIN after the queued data (half-close: reading goes on);
/// <see cref="FlushAsync(CancellationToken)"/> waits until the peer has acknowledged every byte written;
/// disposing sends what is queued and a FIN, and discards what still arrives. A dead peer or a RESET makes reads and
/// writes throw <see cref="NatKit.Net.NetworkException"/> (TimedOut, ConnectionReset).
/// One reader and one writer may run concurrently.
/// </summary>
public sealed class UtpStream : Stream
{
    private readonly UtpSocket _socket;
    private readonly UtpConnection _connection;
    private bool _disposed;

    internal UtpStream(UtpSocket socket, UtpConnection connection)
    {
        _socket = socket;
        _connection = connection;
    }

    public IPEndPoint RemoteEndPoint => _connection.Remote;

    public IPEndPoint LocalEndPoint => _socket.LocalEndPoint;

    /// <summary>The connection id this side receives on (BEP 29: the sender's id is this one plus or minus 1).</summary>
    public ushort ReceiveConnectionId => _connection.RecvId;

    public ushort SendConnectionId => _connection.SendId;

    public UtpStatistics Statistics => _socket.Statistics(_connection);

    public override bool CanRead => !_disposed;

    public override bool CanWrite => !_disposed;

    public override bool CanSeek => false;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _socket.ReadAsync(_connection, buffer, cancellationToken);
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count) =>
        ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _socket.WriteAsync(_connection, buffer, cancellationToken);
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) =>
        WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    /// <summary>Completes when the peer has acknowledged every byte written so far.</summary>
    public override Task FlushAsync(CancellationToken cancellationToken) =>
        _disposed ? Task.CompletedTask : _socket.FlushAsync(_connection, cancellationToken).AsTask();

    public override void Flush() => FlushAsync(CancellationToken.None).GetAwaiter().GetResult();

    /// <summary>
    /// Coalesces the writes that follow into full-size datagrams (like TCP_CORK): until <see cref="Uncork"/>, bytes
    /// that would leave in a packet shorter than the connection's datagram size wait for the next write. Bounded: a
    /// short remainder leaves one <see cref="UtpOptions.TickInterval"/> after the last write at most, and at once on
    /// <see cref="Uncork"/>, <see cref="FlushAsync(CancellationToken)"/>, <see cref="ShutdownWrite"/> or disposal. For
    /// a writer that knows where its bursts end (a pipe copying one read's worth through TLS, whose 16 KiB records
    /// would otherwise go out one datagram each): cork, write the burst, uncork.
    /// </summary>
    public void Cork()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _socket.Cork(_connection, corked: true);
    }

    /// <summary>Ends <see cref="Cork"/>: the bytes held back leave now (as far as the windows allow).</summary>
    public void Uncork()
    {
        if (!_disposed)
        {
            _socket.Cork(_connection, corked: false);
        }
    }

    /// <summary>Half-close: a FIN follows the data already written; reading goes on until the peer's FIN.</summary>
    public void ShutdownWrite()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _socket.ShutdownWrite(_connection);
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (!_disposed)
        {
            _disposed = true;
            _socket.Close(_connection);
        }

        base.Dispose(disposing);
    }
}
