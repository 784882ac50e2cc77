using System.Buffers;
using System.Runtime.CompilerServices;

namespace NatKit.Proxy;

/// <summary>
/// A read buffer over a stream, rented from the shared pool: heads are parsed in place, bodies and tunnels are
/// copied through the same bytes. Bytes read past the current message stay buffered for the next one.
/// </summary>
internal sealed class PooledReader : IDisposable
{
    private readonly Stream _stream;
    private byte[]? _buffer;
    private int _size;
    private int _start;
    private int _end;
    private bool _disposed;

    public PooledReader(Stream stream, int size)
    {
        _stream = stream;
        _size = size;
    }

    public Stream Stream => _stream;

    public int Available => _end - _start;

    public int Capacity => Buffer.Length;

    public ReadOnlySpan<byte> Span => Buffer.AsSpan(_start, _end - _start);

    public ReadOnlyMemory<byte> Memory => Buffer.AsMemory(_start, _end - _start);

    /// <summary>Total bytes read from the stream.</summary>
    public long TotalRead { get; private set; }

    /// <summary>The buffer, rented on first use (and again after <see cref="WaitForDataAsync"/> gave it back).</summary>
    private byte[] Buffer
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _buffer ??= ArrayPool<byte>.Shared.Rent(_size);
        }
    }

    /// <summary>Waits until the stream has bytes (or ends) holding no buffer: when nothing is buffered the buffer
    /// goes back to the pool first, so an idle keep-alive connection holds none (a zero-byte read, as Kestrel
    /// does). Streams that cannot wait for zero bytes just return, and the next fill waits instead.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public async ValueTask WaitForDataAsync(CancellationToken cancellationToken)
    {
        if (Available > 0)
        {
            return;
        }

        ReleaseIfEmpty();
        await _stream.ReadAsync(Memory<byte>.Empty, cancellationToken).ConfigureAwait(false);
    }

    public void Consume(int count)
    {
        _start += count;
        if (_start >= _end)
        {
            _start = _end = 0;
        }
    }

    /// <summary>Reads more bytes after the buffered ones. Returns 0 at end of stream, -1 when the buffer is full.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<int> FillAsync(CancellationToken cancellationToken)
    {
        var buffer = Buffer;
        if (_end == buffer.Length)
        {
            if (_start == 0)
            {
                return -1;
            }

            buffer.AsSpan(_start, _end - _start).CopyTo(buffer);
            _end -= _start;
            _start = 0;
        }

        var n = await _stream.ReadAsync(buffer.AsMemory(_end), cancellationToken).ConfigureAwait(false);
        _end += n;
        TotalRead += n;
        return n;
    }

    /// <summary>Gives the buffer back to the pool when nothing is buffered; the next use rents one again.</summary>
    public void ReleaseIfEmpty()
    {
        if (Available > 0)
        {
            return;
        }

        _start = _end = 0;
        if (Interlocked.Exchange(ref _buffer, null) is { } b)
        {
            ArrayPool<byte>.Shared.Return(b);
        }
    }

    /// <summary>Moves to a buffer of at least <paramref name="size"/> bytes, keeping what is buffered (a tunnel
    /// copies in bigger pieces than heads need).</summary>
    public void Grow(int size)
    {
        var old = Buffer;
        if (old.Length >= size)
        {
            return;
        }

        _size = size;
        var bigger = ArrayPool<byte>.Shared.Rent(size);
        old.AsSpan(_start, _end - _start).CopyTo(bigger);
        _end -= _start;
        _start = 0;
        _buffer = bigger;
        ArrayPool<byte>.Shared.Return(old);
    }

    /// <summary>Skips the empty lines a client may send before a request line (RFC 9112 2.2).</summary>
    public void SkipLeadingEmptyLines()
    {
        while (Available >= 2 && Span[0] == (byte)'\r' && Span[1] == (byte)'\n')
        {
            Consume(2);
        }
    }

    public void Dispose()
    {
        _disposed = true;
        var b = Interlocked.Exchange(ref _buffer, null);
        if (b is not null)
        {
            ArrayPool<byte>.Shared.Return(b);
        }
    }
}
