using System.Buffers;
using System.Globalization;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;

namespace NatKit.Tunnel.Transport;

/// <summary>An HTTP/1.1 request head as the handshake reads it: method, target and headers (names case-insensitive;
/// a repeated header keeps its values comma-joined).</summary>
internal sealed record HttpRequestHead(string Method, string Target, IReadOnlyDictionary<string, string> Headers)
{
    public string? Header(string name) => Headers.TryGetValue(name, out var v) ? v : null;

    /// <summary>True when the request asks to become a WebSocket (RFC 6455 section 4.2.1).</summary>
    public bool IsWebSocketUpgrade =>
        Method == "GET" &&
        Header("Upgrade")?.Equals("websocket", StringComparison.OrdinalIgnoreCase) == true &&
        Header("Connection")?.Split(',').Any(t => t.Trim().Equals("upgrade", StringComparison.OrdinalIgnoreCase)) == true;

    /// <summary>The path without the query.</summary>
    public string Path => Target.Split('?', 2)[0];
}

/// <summary>
/// The WebSocket opening handshake (RFC 6455 section 4) over any stream, both sides: NatKit's own, so the tunnel's
/// WebSockets run over NatKit.Net's streams (real sockets, TLS, and the in-memory lab alike); the server's public
/// endpoint is Kestrel. Heads are read one byte at a time up to <see cref="MaxHead"/> bytes, so no byte of the
/// WebSocket that follows is ever read into the head.
/// </summary>
internal static class WebSocketHandshake
{
    /// <summary>Largest request or response head accepted.</summary>
    public const int MaxHead = 8192;

    /// <summary>Most header lines in a head.</summary>
    public const int MaxHeaders = 64;

    private const string Magic = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

    /// <summary>Sec-WebSocket-Accept for a Sec-WebSocket-Key.</summary>
    public static string AcceptFor(string key) =>
        Convert.ToBase64String(SHA1.HashData(Encoding.ASCII.GetBytes(key + Magic)));

    /// <summary>Options for the WebSockets the tunnel makes: no automatic pings (the tunnel has its own keepalive,
    /// which crosses relays and browser pages), the tunnel's subprotocol.</summary>
    public static WebSocketCreationOptions Options(bool isServer) => new()
    {
        IsServer = isServer,
        SubProtocol = Framing.TunnelMessage.SubProtocol,
        KeepAliveInterval = TimeSpan.Zero,
    };

    /// <summary>
    /// The client side: sends the upgrade request for <paramref name="uri"/> on <paramref name="stream"/>, checks the
    /// 101 answer and its Sec-WebSocket-Accept, and returns the WebSocket. <paramref name="headers"/> go into the
    /// request as they are (X-Forwarded-For from a relay).
    /// </summary>
    /// <exception cref="WebSocketException">The server did not accept the upgrade (the message says what it said).</exception>
    public static async Task<WebSocket> ConnectAsync(Stream stream, TunnelUri uri,
        IEnumerable<KeyValuePair<string, string>>? headers = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(uri);
        var key = Convert.ToBase64String(RandomNumberGenerator.GetBytes(16));
        var request = new StringBuilder()
            .Append(CultureInfo.InvariantCulture, $"GET {uri.Path} HTTP/1.1\r\nHost: {uri.Authority}\r\n")
            .Append("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n")
            .Append(CultureInfo.InvariantCulture, $"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Protocol: {Framing.TunnelMessage.SubProtocol}\r\n");
        foreach (var (name, value) in headers ?? [])
        {
            request.Append(CultureInfo.InvariantCulture, $"{name}: {value}\r\n");
        }

        request.Append("\r\n");
        await stream.WriteAsync(Encoding.ASCII.GetBytes(request.ToString()), cancellationToken).ConfigureAwait(false);
        await stream.FlushAsync(cancellationToken).ConfigureAwait(false);

        var (statusLine, answer) = await ReadHeadAsync(stream, cancellationToken).ConfigureAwait(false)
            ?? throw new WebSocketException(WebSocketError.ConnectionClosedPrematurely,
                $"{uri} closed the connection before answering the upgrade");
        var parts = statusLine.Split(' ', 3);
        if (parts.Length < 2 || !parts[0].StartsWith("HTTP/1.", StringComparison.Ordinal) || parts[1] != "101")
        {
            throw new WebSocketException(WebSocketError.NotAWebSocket, $"{uri} answered the upgrade with '{statusLine}'");
        }

        if (!answer.TryGetValue("Sec-WebSocket-Accept", out var accept) || accept != AcceptFor(key))
        {
            throw new WebSocketException(WebSocketError.HeaderError, $"{uri} sent a wrong Sec-WebSocket-Accept");
        }

        return WebSocket.CreateFromStream(stream, Options(isServer: false));
    }

    /// <summary>Reads a request head; null when the connection closed before a whole head, or the head is not HTTP/1.1
    /// within the limits (the caller answers 400).</summary>
    public static async Task<HttpRequestHead?> ReadRequestAsync(Stream stream, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var head = await ReadHeadAsync(stream, cancellationToken).ConfigureAwait(false);
        if (head is not var (line, headers))
        {
            return null;
        }

        var parts = line.Split(' ');
        if (parts.Length != 3 || parts[2] is not ("HTTP/1.1" or "HTTP/1.0") || parts[1].Length == 0 || parts[1][0] != '/')
        {
            return null;
        }

        return new HttpRequestHead(parts[0], parts[1], headers);
    }

    /// <summary>
    /// The server side, after <see cref="ReadRequestAsync"/> returned an upgrade request: checks the version and key,
    /// answers 101 (with the tunnel's subprotocol when the client offered it) and returns the WebSocket. A bad request
    /// gets its 400 or 426 answer and null.
    /// </summary>
    public static async Task<WebSocket?> AcceptAsync(Stream stream, HttpRequestHead request,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(request);
        if (request.Header("Sec-WebSocket-Version") != "13")
        {
            await RespondAsync(stream, 426, "Upgrade Required", "text/plain", "WebSocket version 13 only\n"u8.ToArray(),
                cancellationToken, "Sec-WebSocket-Version: 13\r\n").ConfigureAwait(false);
            return null;
        }

        var key = request.Header("Sec-WebSocket-Key");
        Span<byte> decoded = stackalloc byte[24];
        if (key is null || !Convert.TryFromBase64String(key, decoded, out var n) || n != 16)
        {
            await RespondAsync(stream, 400, "Bad Request", "text/plain", "bad Sec-WebSocket-Key\n"u8.ToArray(),
                cancellationToken).ConfigureAwait(false);
            return null;
        }

        var offered = request.Header("Sec-WebSocket-Protocol")?.Split(',').Select(p => p.Trim()) ?? [];
        var protocol = offered.Contains(Framing.TunnelMessage.SubProtocol, StringComparer.Ordinal)
            ? $"Sec-WebSocket-Protocol: {Framing.TunnelMessage.SubProtocol}\r\n"
            : "";
        var answer = $"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {AcceptFor(key)}\r\n{protocol}\r\n";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(answer), cancellationToken).ConfigureAwait(false);
        await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
        var options = Options(isServer: true);
        options.SubProtocol = protocol.Length > 0 ? Framing.TunnelMessage.SubProtocol : null;
        return WebSocket.CreateFromStream(stream, options);
    }

    /// <summary>Writes a whole HTTP/1.1 response (Connection: close).</summary>
    public static async Task RespondAsync(Stream stream, int status, string reason, string contentType,
        ReadOnlyMemory<byte> body, CancellationToken cancellationToken = default, string extraHeaders = "")
    {
        ArgumentNullException.ThrowIfNull(stream);
        var head = string.Create(CultureInfo.InvariantCulture,
            $"HTTP/1.1 {status} {reason}\r\nContent-Type: {contentType}\r\nContent-Length: {body.Length}\r\nCache-Control: no-store\r\n{extraHeaders}Connection: close\r\n\r\n");
        await stream.WriteAsync(Encoding.ASCII.GetBytes(head), cancellationToken).ConfigureAwait(false);
        await stream.WriteAsync(body, cancellationToken).ConfigureAwait(false);
        await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Reads a head: the first line and the header fields, up to the empty line. Null for a connection
    /// closed early or a head over the limits or not in the grammar (bare CR/LF, obsolete line folding, no colon).</summary>
    private static async Task<(string Line, Dictionary<string, string> Headers)?> ReadHeadAsync(Stream stream,
        CancellationToken cancellationToken)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(MaxHead);
        try
        {
            var length = 0;
            while (true)
            {
                if (length == MaxHead)
                {
                    return null;
                }

                var n = await stream.ReadAsync(buffer.AsMemory(length, 1), cancellationToken).ConfigureAwait(false);
                if (n == 0)
                {
                    return null;
                }

                length++;
                if (length >= 4 && buffer[length - 1] == '\n' && buffer[length - 2] == '\r' && buffer[length - 3] == '\n' &&
                    buffer[length - 4] == '\r')
                {
                    break;
                }
            }

            var text = Encoding.Latin1.GetString(buffer, 0, length - 4);
            var lines = text.Split("\r\n");
            if (lines.Length - 1 > MaxHeaders)
            {
                return null;
            }

            var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
            for (var i = 1; i < lines.Length; i++)
            {
                var line = lines[i];
                var colon = line.IndexOf(':', StringComparison.Ordinal);
                if (colon <= 0 || line[0] is ' ' or '\t' || line.Contains('\r', StringComparison.Ordinal) ||
                    line.Contains('\n', StringComparison.Ordinal) || line.AsSpan(0, colon).ContainsAny(" \t"))
                {
                    return null;
                }

                var name = line[..colon];
                var value = line[(colon + 1)..].Trim(' ', '\t');
                headers[name] = headers.TryGetValue(name, out var earlier) ? earlier + ", " + value : value;
            }

            return lines[0].Contains('\n', StringComparison.Ordinal) ? null : (lines[0], headers);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
