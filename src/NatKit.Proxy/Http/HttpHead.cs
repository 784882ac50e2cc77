namespace NatKit.Proxy.Http;

/// <summary>A byte range inside the buffer a head was parsed from.</summary>
internal readonly record struct Segment(int Start, int Length)
{
    public ReadOnlySpan<byte> Of(ReadOnlySpan<byte> head) => head.Slice(Start, Length);

    public bool IsEmpty => Length == 0;
}

/// <summary>The fields whose meaning the proxy acts on; everything else is <see cref="Other"/> and passes through.</summary>
internal enum FieldKind : byte
{
    Other,
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    ProxyConnection,
    KeepAlive,
    TE,
    Trailer,
    Upgrade,
    ProxyAuthorization,
    ProxyAuthenticate,
    Expect,
}

internal struct HeaderField
{
    public Segment Name;
    public Segment Value;
    public FieldKind Kind;
}

/// <summary>How a message body is delimited (RFC 9112 section 6.3).</summary>
internal enum BodyFraming : byte
{
    None,
    ContentLength,
    Chunked,
    UntilClose,
}

/// <summary>
/// One parsed request or response head: ranges into the bytes it came from, plus the facts the proxy needs
/// (framing, connection options, upgrade). Reused across requests on a connection, so parsing allocates nothing.
/// </summary>
internal sealed class HttpHead
{
    private const int MaxConnectionTokens = 16;

    private HeaderField[] _fields;
    private readonly Segment[] _connectionTokens = new Segment[MaxConnectionTokens];

    public HttpHead(int maxFields)
    {
        _fields = new HeaderField[Math.Min(maxFields, 32)];
        MaxFields = maxFields;
    }

    public int MaxFields { get; }

    public int FieldCount { get; private set; }

    public ReadOnlySpan<HeaderField> Fields => _fields.AsSpan(0, FieldCount);

    public ReadOnlySpan<Segment> ConnectionTokens => _connectionTokens.AsSpan(0, ConnectionTokenCount);

    public int ConnectionTokenCount { get; private set; }

    // Request line.
    public Segment Method;
    public Segment Target;

    // Response line.
    public int StatusCode;
    public Segment Reason;

    /// <summary>1 for HTTP/1.1, 0 for HTTP/1.0.</summary>
    public int VersionMinor;

    public long ContentLength;
    public bool HasContentLength;
    public bool Chunked;
    public bool HasTransferEncoding;
    public bool ConnectionClose;
    public bool ConnectionKeepAlive;
    public bool ConnectionUpgrade;
    public bool UpgradeWebSocket;
    public bool HasUpgrade;
    public bool ExpectContinue;
    public int HostCount;
    public Segment Host;
    public Segment ProxyAuthorization;
    public bool HasProxyAuthorization;

    /// <summary>Why parsing failed, for the error response and the log.</summary>
    public string? Error;

    public void Reset()
    {
        FieldCount = 0;
        ConnectionTokenCount = 0;
        Method = Target = Reason = Host = ProxyAuthorization = default;
        StatusCode = 0;
        VersionMinor = 1;
        ContentLength = 0;
        HasContentLength = Chunked = HasTransferEncoding = false;
        ConnectionClose = ConnectionKeepAlive = ConnectionUpgrade = UpgradeWebSocket = HasUpgrade = false;
        ExpectContinue = HasProxyAuthorization = false;
        HostCount = 0;
        Error = null;
    }

    internal bool AddField(in HeaderField field)
    {
        if (FieldCount == MaxFields)
        {
            return false;
        }

        if (FieldCount == _fields.Length)
        {
            Array.Resize(ref _fields, Math.Min(_fields.Length * 2, MaxFields));
        }

        _fields[FieldCount++] = field;
        return true;
    }

    internal bool AddConnectionToken(Segment token)
    {
        if (ConnectionTokenCount == MaxConnectionTokens)
        {
            return false;
        }

        _connectionTokens[ConnectionTokenCount++] = token;
        return true;
    }

    /// <summary>True when <paramref name="name"/> is listed in this head's Connection field (RFC 9110 7.6.1).</summary>
    public bool IsListedInConnection(ReadOnlySpan<byte> head, ReadOnlySpan<byte> name)
    {
        foreach (var t in ConnectionTokens)
        {
            if (System.Text.Ascii.EqualsIgnoreCase(t.Of(head), name))
            {
                return true;
            }
        }

        return false;
    }
}
