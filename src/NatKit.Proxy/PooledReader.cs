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
    private int _start;
    private int _end;

    public PooledReader(Stream stream, int size)
    {
        _stream = stream;
        _buffer = ArrayPool<byte>.Shared.Rent(size);
    }

    public Stream Stream => _stream;

    public int Available => _end - _start;

    public int Capacity => Buffer.Length;

    public ReadOnlySpan<byte> Span => Buffer.AsSpan(_start, _end - _start);

    public ReadOnlyMemory<byte> Memory => Buffer.AsMemory(_start, _end - _start);

    /// <summary>The whole buffer, for use as scratch space while nothing is buffered.</summary>
    public byte[] Scratch => Buffer;

    /// <summary>Total bytes read from the stream.</summary>
    public long TotalRead { get; private set; }

    private byte[] Buffer => _buffer ?? throw new ObjectDisposedException(nameof(PooledReader));

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

    /// <summary>Moves to a buffer of at least <paramref name="size"/> bytes, keeping what is buffered (a tunnel
    /// copies in bigger pieces than heads need).</summary>
    public void Grow(int size)
    {
        var old = Buffer;
        if (old.Length >= size)
        {
            return;
        }

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
        var b = Interlocked.Exchange(ref _buffer, null);
        if (b is not null)
        {
            ArrayPool<byte>.Shared.Return(b);
        }
    }
}
