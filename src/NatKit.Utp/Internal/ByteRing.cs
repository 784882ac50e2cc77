namespace NatKit.Utp.Internal;

/// <summary>A fixed-capacity FIFO of bytes over one array: the send queue and the in-order receive buffer of a
/// connection. Copies in and out; never allocates after construction.</summary>
internal sealed class ByteRing
{
    private readonly byte[] _buffer;
    private int _head;

    public ByteRing(int capacity)
    {
        _buffer = new byte[capacity];
    }

    public int Capacity => _buffer.Length;

    public int Count { get; private set; }

    public int Free => _buffer.Length - Count;

    /// <summary>Appends as much of <paramref name="source"/> as fits; returns how many bytes were taken.</summary>
    public int Write(ReadOnlySpan<byte> source)
    {
        var n = Math.Min(source.Length, Free);
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
}
