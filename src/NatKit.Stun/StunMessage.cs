namespace NatKit.Stun;

/// <summary>One attribute in the parsed (owning) form.</summary>
public sealed record StunRawAttribute(ushort Type, byte[] Value)
{
    public bool Equals(StunRawAttribute? other) =>
        other is not null && Type == other.Type && Value.AsSpan().SequenceEqual(other.Value);

    public override int GetHashCode() => HashCode.Combine(Type, Value.Length);

    public override string ToString() => $"{StunAttributeType.Name(Type)} ({Value.Length} bytes)";
}

/// <summary>
/// A STUN message in owning form, for code that keeps messages around (tests, diagnostics, the client's
/// results). Hot paths use <see cref="StunMessageReader"/> and <see cref="StunMessageWriter"/> instead.
/// <see cref="Parse"/> of what <see cref="WriteTo"/> wrote gives back an equal message.
/// </summary>
public sealed record StunMessage(ushort Method, StunClass Class, StunTransactionId TransactionId,
    IReadOnlyList<StunRawAttribute> Attributes)
{
    /// <summary>The counted attributes of a well-formed message, or null when it is not one.</summary>
    public static StunMessage? Parse(ReadOnlySpan<byte> data)
    {
        if (!StunMessageReader.TryParse(data, out var reader))
        {
            return null;
        }

        var attributes = new List<StunRawAttribute>();
        foreach (var a in reader.Attributes)
        {
            attributes.Add(new StunRawAttribute(a.Type, a.Value.ToArray()));
        }

        return new StunMessage(reader.Method, reader.Class, reader.TransactionId, attributes);
    }

    /// <summary>The encoded size.</summary>
    public int EncodedLength
    {
        get
        {
            var n = StunMessageReader.HeaderLength;
            foreach (var a in Attributes)
            {
                n += StunMessageReader.AttributeHeaderLength + ((a.Value.Length + 3) & ~3);
            }

            return n;
        }
    }

    /// <summary>Writes the message as is (attribute values verbatim); returns its length.</summary>
    public int WriteTo(Span<byte> destination)
    {
        var writer = new StunMessageWriter(destination, Method, Class, TransactionId);
        foreach (var a in Attributes)
        {
            writer.Add(a.Type, a.Value);
        }

        return writer.Length;
    }

    public byte[] ToArray()
    {
        var bytes = new byte[EncodedLength];
        WriteTo(bytes);
        return bytes;
    }

    public bool Equals(StunMessage? other) =>
        other is not null && Method == other.Method && Class == other.Class &&
        TransactionId == other.TransactionId && Attributes.SequenceEqual(other.Attributes);

    public override int GetHashCode() => HashCode.Combine(Method, Class, TransactionId, Attributes.Count);
}
