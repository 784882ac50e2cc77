namespace NatKit.Utp.Internal;

/// <summary>A bounded FIFO of bytes over one array: the send queue and the in-order receive buffer of a
/// connection. The array starts small and doubles up to <see cref="Capacity"/> as data actually queues up, so an
/// idle or half-open connection (a stranger's SYN) holds kilobytes, not the full window. Copies in and out; no
/// allocation once grown.</summary>
internal sealed class ByteRing
{
    private const int InitialSize = 16 * 1024;
    private byte[] _buffer;
    private int _head;

    public ByteRing(int capacity)
    {
        Capacity = capacity;
        _buffer = new byte[Math.Min(capacity, InitialSize)];
    }

    /// <summary>The most bytes the ring will hold.</summary>
    public int Capacity { get; }

    public int Count { get; private set; }

    public int Free => Capacity - Count;

    /// <summary>Appends as much of <paramref name="source"/> as fits; returns how many bytes were taken.</summary>
    public int Write(ReadOnlySpan<byte> source)
    {
        var n = Math.Min(source.Length, Free);
        if (Count + n > _buffer.Length)
        {
            Grow(Count + n);
        }

        var tail = (_head + Count) % _buffer.Length;
        var first = Math.Min(n, _buffer.Length - tail);
        source[..first].CopyTo(_buffer.AsSpan(tail));
        source[first..n].CopyTo(_buffer);
        Count += n;
        return n;
    }

    /// <summary>Removes up to <paramref name="destination"/>.Length bytes into it; returns how many.</summary>
    public int Read(Span<byte> destination)
    {
        var n = Math.Min(destination.Length, Count);
        var first = Math.Min(n, _buffer.Length - _head);
        _buffer.AsSpan(_head, first).CopyTo(destination);
        _buffer.AsSpan(0, n - first).CopyTo(destination[first..]);
        _head = (_head + n) % _buffer.Length;
        Count -= n;
        if (Count == 0)
        {
            _head = 0;
        }

        return n;
    }

    private void Grow(int needed)
    {
        var size = _buffer.Length;
        while (size < needed)
        {
            size = (int)Math.Min((long)size * 2, Capacity);
        }

        var next = new byte[size];
        var count = Count;
        var first = Math.Min(count, _buffer.Length - _head);
        _buffer.AsSpan(_head, first).CopyTo(next);
        _buffer.AsSpan(0, count - first).CopyTo(next.AsSpan(first));
        _buffer = next;
        _head = 0;
    }
}
