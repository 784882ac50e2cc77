namespace NatKit.Packets;

/// <summary>
/// Walks the kind-length-data option list shared by IPv4 (RFC 791 section 3.1) and TCP (RFC 9293 section 3.1):
/// kind 0 ends the list, kind 1 is a one-byte no-op, every other kind has a length byte counting kind, length
/// and data (&gt;= 2). A length that is short or runs past the end stops the walk and sets <see cref="IsMalformed"/>.
/// </summary>
public ref struct TlvOptionReader
{
    public const byte EndOfOptionList = 0;
    public const byte NoOperation = 1;

    private readonly ReadOnlySpan<byte> _options;
    private int _offset;

    public TlvOptionReader(ReadOnlySpan<byte> options)
    {
        _options = options;
        _offset = 0;
        IsMalformed = false;
    }

    /// <summary>True when the walk stopped at a bad length.</summary>
    public bool IsMalformed { get; private set; }

    /// <summary>Offset of the option last returned, from the start of the option bytes.</summary>
    public int CurrentOffset { get; private set; }

    /// <summary>Reads the next option other than no-op. False at the end of the list, at kind 0, or when malformed.</summary>
    public bool TryReadNext(out byte kind, out ReadOnlySpan<byte> data)
    {
        data = default;
        kind = 0;
        while (_offset < _options.Length)
        {
            var k = _options[_offset];
            if (k == EndOfOptionList)
            {
                _offset = _options.Length;
                return false;
            }

            if (k == NoOperation)
            {
                _offset++;
                continue;
            }

            if (_offset + 1 >= _options.Length)
            {
                IsMalformed = true;
                _offset = _options.Length;
                return false;
            }

            int length = _options[_offset + 1];
            if (length < 2 || _offset + length > _options.Length)
            {
                IsMalformed = true;
                _offset = _options.Length;
                return false;
            }

            kind = k;
            data = _options.Slice(_offset + 2, length - 2);
            CurrentOffset = _offset;
            _offset += length;
            return true;
        }

        return false;
    }
}
