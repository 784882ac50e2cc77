using System.Buffers.Text;

namespace NatKit.Proxy.Http;

/// <summary>Appends the bytes of a head into a fixed buffer; <see cref="Overflowed"/> says whether it ran out.</summary>
internal ref struct HeadWriter
{
    private readonly Span<byte> _buffer;

    public HeadWriter(Span<byte> buffer)
    {
        _buffer = buffer;
        Length = 0;
        Overflowed = false;
    }

    public int Length { get; private set; }

    public bool Overflowed { get; private set; }

    public void Append(scoped ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length > _buffer.Length - Length)
        {
            Overflowed = true;
            return;
        }

        bytes.CopyTo(_buffer[Length..]);
        Length += bytes.Length;
    }

    public void AppendNumber(long value)
    {
        if (!Utf8Formatter.TryFormat(value, _buffer[Length..], out var n))
        {
            Overflowed = true;
            return;
        }

        Length += n;
    }

    public void AppendHex(long value)
    {
        if (!Utf8Formatter.TryFormat(value, _buffer[Length..], out var n, new System.Buffers.StandardFormat('x')))
        {
            Overflowed = true;
            return;
        }

        Length += n;
    }

    /// <summary>name ": " value CRLF.</summary>
    public void AppendField(scoped ReadOnlySpan<byte> name, scoped ReadOnlySpan<byte> value)
    {
        Append(name);
        Append(": "u8);
        Append(value);
        Append("\r\n"u8);
    }
}
