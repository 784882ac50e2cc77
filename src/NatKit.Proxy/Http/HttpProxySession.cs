using System.Buffers;
using System.Globalization;
using System.Net;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using NatKit.Net;

namespace NatKit.Proxy.Http;

/// <summary>
/// One client connection to the HTTP proxy: reads requests in turn (persistent connections, RFC 9112 9.3),
/// forwards each through a pooled upstream connection or opens a CONNECT tunnel, and answers with the
/// protocol's own errors (400, 403, 407, 408, 431, 501, 502, 504, 505) when it cannot.
/// </summary>
internal sealed class HttpProxySession
{
    private const int ReadBufferMinimum = 16 * 1024;
    private const int TunnelBufferSize = 256 * 1024;

    private readonly ProxyServer _server;
    private readonly ProxyOptions _options;
    private readonly IStreamConnection _client;
    private readonly PooledReader _reader;
    private readonly HttpHead _request;
    private readonly HttpHead _response;
    private readonly Deadline _deadline;
    private readonly Flow _flow;
    private readonly bool _clientIsLoopback;
    private readonly byte[] _upScratch = new byte[32];
    private readonly byte[] _downScratch = new byte[32];
    private byte[]? _out;
    private MinDataRate? _bodyRate; // made on the first request body, when a minimum rate is configured
    private MinDataRate? _responseRate; // made on the first response, when a minimum rate is configured

    // The last destination, so a keep-alive client talking to one host does not allocate its name per request.
    private byte[] _lastAuthority = [];
    private string _lastHost = "";
    private string _lastTarget = "";
    private int _lastDialStatus;
    private string _logPath = ""; // the path of the request being logged (only when the access log is on)
    private readonly CancellationTokenRegistration _onDrain;
    private int _betweenRequests; // 1 while waiting for a keep-alive client's next request: a drain closes it

    public HttpProxySession(ProxyServer server, IStreamConnection client, CancellationToken shutdown)
    {
        _server = server;
        _options = server.Options;
        _client = client;
        _reader = new PooledReader(client.Stream, Math.Max(ReadBufferMinimum, _options.MaxHeaderBytes));
        _request = new HttpHead(_options.MaxHeaderCount);
        _response = new HttpHead(_options.MaxHeaderCount);
        _deadline = new Deadline(server.Time, _options.IdleTimeout, shutdown);
        _flow = server.Connections.Add("http", client.RemoteEndPoint);
        _clientIsLoopback = IPAddress.IsLoopback(client.RemoteEndPoint.Address);
        _onDrain = server.Draining.Register(static s =>
        {
            var session = (HttpProxySession)s!;
            if (Volatile.Read(ref session._betweenRequests) == 1)
            {
                session._deadline.Cancel();
            }
        }, this);
    }

    private byte[] Out => _out ??= ArrayPool<byte>.Shared.Rent((_options.MaxHeaderBytes * 2) + 1024);

    /// <summary>Answers a connection the server will not serve (not allowed, too many) and closes it.</summary>
    public static async Task SendRefusalAsync(IStreamConnection connection, int status, string reason, TimeProvider time)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2), time);
        try
        {
            await connection.Stream.WriteAsync(ErrorResponse(status, reason, authenticate: false), timeout.Token)
                .ConfigureAwait(false);
        }
        catch (Exception e) when (ProxyServer.IsConnectionError(e))
        {
        }
    }

    public async Task RunAsync()
    {
        try
        {
            _deadline.Arm(_options.HeaderTimeout); // the first head is timed from accept
            var first = true;
            while (true)
            {
                if (!first)
                {
                    // a draining server lets the request in progress finish, then closes an idle keep-alive
                    // connection instead of waiting for its next request
                    Interlocked.Exchange(ref _betweenRequests, 1);
                    if (_server.Draining.IsCancellationRequested && _reader.Available == 0)
                    {
                        return;
                    }

                    _deadline.Arm();
                    await _reader.WaitForDataAsync(_deadline.Token).ConfigureAwait(false);
                    Interlocked.Exchange(ref _betweenRequests, 0);
                    if (_reader.Available == 0 && await _reader.FillAsync(_deadline.Token).ConfigureAwait(false) <= 0)
                    {
                        return;
                    }

                    _deadline.Arm(_options.HeaderTimeout);
                }

                first = false;
                var headLength = await ReadHeadAsync().ConfigureAwait(false);
                if (headLength <= 0)
                {
                    return;
                }

                if (!await HandleRequestAsync(headLength).ConfigureAwait(false))
                {
                    return;
                }
            }
        }
        catch (Exception e) when (ProxyServer.IsConnectionError(e))
        {
        }
        finally
        {
            _onDrain.Dispose();
            _server.Connections.Remove(_flow);
            _bodyRate?.Dispose();
            _responseRate?.Dispose();
            _deadline.Dispose();
            _reader.Dispose();
            if (_out is not null)
            {
                ArrayPool<byte>.Shared.Return(_out);
            }
        }
    }

    /// <summary>Reads until a whole head is buffered. Returns its length, 0 when the client went away, -1 after
    /// answering an error.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<int> ReadHeadAsync()
    {
        var scanned = 0;
        try
        {
            while (true)
            {
                _reader.SkipLeadingEmptyLines();
                var length = HttpHeadParser.FindHeadEnd(_reader.Span, ref scanned);
                if (length > 0 && length <= _options.MaxHeaderBytes)
                {
                    return length;
                }

                if (length > 0 || _reader.Available >= _options.MaxHeaderBytes)
                {
                    await SendErrorAsync(431, "request head too large").ConfigureAwait(false);
                    return -1;
                }

                var n = await _reader.FillAsync(_deadline.Token).ConfigureAwait(false);
                if (n == 0)
                {
                    return 0;
                }

                if (n < 0)
                {
                    await SendErrorAsync(431, "request head too large").ConfigureAwait(false);
                    return -1;
                }
            }
        }
        catch (OperationCanceledException) when (_deadline.Expired)
        {
            await SendErrorAsync(408, "request head not received in time").ConfigureAwait(false);
            return -1;
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> HandleRequestAsync(int headLength)
    {
        var started = _server.Time.GetTimestamp();
        _flow.AddRequest();
        var result = Classify(headLength, out var kind, out var target, out var error);
        switch (kind)
        {
            case RequestKind.Error:
                await SendErrorAsync(result, error!).ConfigureAwait(false);
                return false;
            case RequestKind.Status:
                var isHead = _request.Method.Of(_reader.Span).SequenceEqual("HEAD"u8);
                _reader.Consume(headLength);
                return await SendStatusAsync(isHead).ConfigureAwait(false);
            case RequestKind.Connect:
                await ConnectAsync(headLength, target, started).ConfigureAwait(false);
                return false;
            default:
                return await ForwardAsync(headLength, target, started).ConfigureAwait(false);
        }
    }

    private enum RequestKind
    {
        Error,
        Status,
        Connect,
        Forward,
    }

    /// <summary>Parses and checks a request head: syntax, target form, authentication, policy.</summary>
    private int Classify(int headLength, out RequestKind kind, out RequestTarget target, out string? error)
    {
        var head = _reader.Span[..headLength];
        kind = RequestKind.Error;
        target = default;
        var r = HttpHeadParser.ParseRequest(head, _request);
        if (r != HeadResult.Ok)
        {
            error = _request.Error ?? "bad request";
            return (int)r;
        }

        var method = _request.Method.Of(head);
        var isConnect = method.SequenceEqual("CONNECT"u8);
        if (!RequestTarget.TryParse(_request.Target.Of(head), isConnect, out target, out error))
        {
            return 400;
        }

        if (target.Form == TargetForm.Origin)
        {
            var path = target.PathAndQuery.Of(_request.Target.Of(head));
            if (path.SequenceEqual(_server.StatusPathBytes) && (method.SequenceEqual("GET"u8) ||
                method.SequenceEqual("HEAD"u8)) && !_request.HasContentLength && !_request.HasTransferEncoding)
            {
                if (!_clientIsLoopback)
                {
                    error = "the status endpoint answers loopback clients only";
                    return 403;
                }

                if (_server.CredentialBytes is { } statusCredentials && !IsAuthorized(head, statusCredentials))
                {
                    error = "the status endpoint needs the proxy's credentials (--auth)";
                    return 407;
                }

                kind = RequestKind.Status;
                return 200;
            }

            error = "this is a proxy: send an absolute-form request (http://host/path) or CONNECT";
            return 400;
        }

        if (target.Form != TargetForm.Absolute && target.Form != TargetForm.Authority)
        {
            error = "unsupported request target";
            return 400;
        }

        if (_server.CredentialBytes is { } expected && !IsAuthorized(head, expected))
        {
            error = "proxy authentication required";
            return 407;
        }

        if (isConnect)
        {
            if (!_options.ConnectPorts.Contains(target.Port))
            {
                error = $"CONNECT to port {target.Port} is not allowed";
                return 403;
            }

            if (_request.HasTransferEncoding || _request.ContentLength > 0)
            {
                error = "CONNECT with a body";
                return 400;
            }

            kind = RequestKind.Connect;
        }
        else
        {
            kind = RequestKind.Forward;
        }

        RememberDestination(_request.Target.Of(head), target);
        error = null;
        return 200;
    }

    private bool IsAuthorized(ReadOnlySpan<byte> head, byte[] expected)
    {
        if (!_request.HasProxyAuthorization)
        {
            return false;
        }

        var value = _request.ProxyAuthorization.Of(head);
        if (value.Length < 7 || !Ascii.EqualsIgnoreCase(value[..6], "Basic "u8))
        {
            return false;
        }

        var encoded = value[6..].TrimStart((byte)' ');
        Span<byte> decoded = stackalloc byte[512];
        if (encoded.Length > 680 ||
            System.Buffers.Text.Base64.DecodeFromUtf8(encoded, decoded, out _, out var written) !=
            OperationStatus.Done)
        {
            return false;
        }

        return CryptographicOperations.FixedTimeEquals(decoded[..written], expected);
    }

    private void RememberDestination(ReadOnlySpan<byte> targetBytes, in RequestTarget target)
    {
        var authority = target.Authority.Of(targetBytes);
        if (authority.SequenceEqual(_lastAuthority))
        {
            return;
        }

        _lastAuthority = authority.ToArray();
        _lastHost = Encoding.ASCII.GetString(target.Host.Of(targetBytes)).ToLowerInvariant();
        _lastTarget = Encoding.ASCII.GetString(authority);
    }

    private async Task ConnectAsync(int headLength, RequestTarget target, long started)
    {
        _flow.Kind = "connect";
        _logPath = "";
        IStreamConnection? upstream;
        if (_options.Parent is { } parent)
        {
            upstream = await ConnectViaParentAsync(parent, target.Port).ConfigureAwait(false);
        }
        else
        {
            upstream = await DialOrAnswerAsync(_lastHost, target.Port).ConfigureAwait(false);
        }

        if (upstream is null)
        {
            LogAccess("CONNECT", _lastDialStatus, started);
            return;
        }

        await using (upstream.ConfigureAwait(false))
        {
            using var upstreamReader = new PooledReader(upstream.Stream, TunnelBufferSize);
            _reader.Consume(headLength);
            _reader.Grow(TunnelBufferSize);
            _flow.SetUpstream(upstream.RemoteEndPoint, upstream.LocalEndPoint.Port, _lastTarget);
            _deadline.Arm();
            await _client.Stream.WriteAsync(ConnectEstablished, _deadline.Token).ConfigureAwait(false);
            try
            {
                await Tunnel.RunAsync(_client, _reader, upstream, upstreamReader, _flow, _deadline).ConfigureAwait(false);
            }
            finally
            {
                LogAccess("CONNECT", 200, started); // when the tunnel ends, with the bytes it moved
            }
        }
    }

    private static readonly byte[] ConnectEstablished = "HTTP/1.1 200 Connection established\r\n\r\n"u8.ToArray();

    /// <summary>Opens a tunnel through the parent proxy with its own CONNECT (carrying the parent credentials).
    /// Anything but a bare 2xx is answered 502 with the parent's status in the reason.</summary>
    private async Task<IStreamConnection?> ConnectViaParentAsync(DnsEndPoint parent, int port)
    {
        var upstream = await DialOrAnswerAsync(parent.Host, parent.Port).ConfigureAwait(false);
        if (upstream is null)
        {
            return null;
        }

        byte[] line = [.. Encoding.ASCII.GetBytes($"CONNECT {_lastTarget} HTTP/1.1\r\nHost: {_lastTarget}\r\n"),
            .. _server.ParentAuthorization, .. "\r\n"u8];
        using var reader = new PooledReader(upstream.Stream, _options.MaxHeaderBytes + 1);
        var status = 0;
        try
        {
            _deadline.Arm();
            await upstream.Stream.WriteAsync(line, _deadline.Token).ConfigureAwait(false);
            var length = await ReadUpstreamHeadAsync(reader).ConfigureAwait(false);
            if (length > 0 && HttpHeadParser.ParseResponse(reader.Span[..length], _response) == HeadResult.Ok)
            {
                status = _response.StatusCode;
                if (status is >= 200 and < 300 && reader.Available == length)
                {
                    return upstream;
                }
            }
        }
        catch (Exception e) when (ProxyServer.IsConnectionError(e) && !_deadline.Token.IsCancellationRequested)
        {
        }

        await upstream.DisposeAsync().ConfigureAwait(false);
        _lastDialStatus = 502;
        await SendErrorAsync(502, status switch
        {
            407 => ParentWantsAuthentication(),
            0 => $"the parent proxy gave no valid answer to CONNECT {port}",
            _ => $"the parent proxy answered {status} to CONNECT {port}",
        }).ConfigureAwait(false);
        return null;
    }

    /// <summary>Why a 407 from the parent becomes a 502: the client cannot answer a challenge meant for this
    /// proxy's own credentials (passing it on would make curl retry with credentials this proxy strips).</summary>
    private string ParentWantsAuthentication() => _options.ParentCredentials is null
        ? "the parent proxy requires authentication (407) and no parent credentials are configured"
        : "the parent proxy refused the configured parent credentials (407)";

    private async Task<IStreamConnection?> DialOrAnswerAsync(string host, int port)
    {
        var dial = await _server.DialAsync(host, port, _deadline.Token).ConfigureAwait(false);
        if (dial.Connection is not null)
        {
            return dial.Connection;
        }

        _lastDialStatus = dial.Failure switch
        {
            DialFailure.Forbidden => 403,
            DialFailure.TimedOut => 504,
            _ => 502,
        };
        await SendErrorAsync(_lastDialStatus, dial.Reason ?? "upstream failed").ConfigureAwait(false);
        return null;
    }

    /// <summary>Forwards one request and its response. Returns whether the client connection stays open.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> ForwardAsync(int headLength, RequestTarget target, long started)
    {
        _flow.Kind = "http";
        var method = MethodName(_request.Method.Of(_reader.Span));
        var isHead = method == "HEAD";
        var requestFraming = _request.Chunked ? BodyFraming.Chunked
            : _request.ContentLength > 0 ? BodyFraming.ContentLength : BodyFraming.None;
        var webSocket = HeadRewriter.IsWebSocketUpgrade(_request);
        var clientVersion = _request.VersionMinor;
        var clientWantsKeep = clientVersion == 1 ? !_request.ConnectionClose : _request.ConnectionKeepAlive;
        _logPath = _server.Logger.IsEnabled(Microsoft.Extensions.Logging.LogLevel.Information)
            ? Encoding.ASCII.GetString(target.PathAndQuery.Of(_request.Target.Of(_reader.Span)))
            : "";

        // The upstream head, with as much of a Content-Length body as is already buffered behind it.
        var headOut = WriteRequestHead(headLength, target, requestFraming);
        if (headOut < 0)
        {
            await SendErrorAsync(431, "request head too large to forward").ConfigureAwait(false);
            return false;
        }

        _reader.Consume(headLength);
        var bodyLeft = requestFraming == BodyFraming.ContentLength ? _request.ContentLength : 0;
        headOut = AppendBufferedBody(_reader, headOut, ref bodyLeft, up: true);

        var key = _options.Parent is { } p ? new UpstreamKey(p.Host, p.Port) : new UpstreamKey(_lastHost, target.Port);
        // RFC 9110 9.2.2 / RFC 9112 9.3.1: a request that met a pooled connection the server had already closed
        // (end of stream or reset before any response byte) is sent once more on a fresh connection when its
        // method is idempotent and its body can be replayed: none, all of it still in the head's buffer, or
        // none of it sent yet. A proxy never retries a non-idempotent request.
        var canRetry = IsIdempotent(method);
        var bodyBuffered = requestFraming == BodyFraming.None || bodyLeft == 0;
        var upstream = _server.Pool.TryRent(key);
        int responseHead;
        Task<bool> bodyTask;
        while (true)
        {
            if (upstream is null)
            {
                var connection = await DialOrAnswerAsync(key.Host, key.Port).ConfigureAwait(false);
                if (connection is null)
                {
                    LogAccess(method, _lastDialStatus, started);
                    return false;
                }

                upstream = new UpstreamConnection(key, connection, Math.Max(ReadBufferMinimum, _options.MaxHeaderBytes));
            }

            _flow.SetUpstream(upstream.Connection.RemoteEndPoint, upstream.Connection.LocalEndPoint.Port, _lastTarget);
            bodyTask = Task.FromResult(true);
            var bodyStarted = false;
            try
            {
                _deadline.Arm();
                await upstream.Connection.Stream.WriteAsync(Out.AsMemory(0, headOut), _deadline.Token)
                    .ConfigureAwait(false);
                if (requestFraming != BodyFraming.None)
                {
                    bodyStarted = !bodyBuffered;
                    bodyTask = SendRequestBodyAsync(upstream, requestFraming, bodyLeft);
                }

                responseHead = await ReadUpstreamHeadAsync(upstream.Reader).ConfigureAwait(false);
            }
            catch (Exception e) when (ProxyServer.IsConnectionError(e) && upstream.Reused &&
                                      upstream.Reader.Available == 0 && !_deadline.Token.IsCancellationRequested)
            {
                responseHead = 0; // reset before any response byte: the same as an early end of stream
            }
            catch (OperationCanceledException) when (_bodyRate?.Violated == true)
            {
                await upstream.DisposeAsync().ConfigureAwait(false);
                await SendErrorAsync(408, string.Create(CultureInfo.InvariantCulture,
                    $"the request body arrived slower than {_bodyRate.BytesPerSecond} bytes/s")).ConfigureAwait(false);
                await bodyTask.ConfigureAwait(false);
                LogAccess(method, 408, started);
                return false;
            }
            catch (OperationCanceledException) when (_deadline.Expired)
            {
                await upstream.DisposeAsync().ConfigureAwait(false);
                await SendErrorAsync(504, "upstream did not answer in time").ConfigureAwait(false);
                await AbandonBodyAsync(bodyTask).ConfigureAwait(false);
                LogAccess(method, 504, started);
                return false;
            }
            catch (Exception e) when (ProxyServer.IsConnectionError(e) && !_deadline.Token.IsCancellationRequested)
            {
                await upstream.DisposeAsync().ConfigureAwait(false);
                await SendErrorAsync(502, "upstream connection failed: " + e.Message).ConfigureAwait(false);
                await AbandonBodyAsync(bodyTask).ConfigureAwait(false);
                LogAccess(method, 502, started);
                return false;
            }

            if (responseHead == 0 && upstream.Reused)
            {
                // a pooled connection the server had closed
                await upstream.DisposeAsync().ConfigureAwait(false);
                upstream = null;
                if (canRetry && (bodyBuffered || !bodyStarted))
                {
                    canRetry = false;
                    _server.Pool.CountRetry();
                    continue;
                }

                await SendErrorAsync(502, "the upstream closed a reused connection before answering, and the " +
                    (canRetry ? "request body was already streaming, so it cannot be replayed"
                        : $"request is not retried: {method} is not idempotent (RFC 9110 9.2.2)")).ConfigureAwait(false);
                await AbandonBodyAsync(bodyTask).ConfigureAwait(false);
                LogAccess(method, 502, started);
                return false;
            }

            break;
        }

        var upstreamReusable = false;
        var keepClient = false;
        var status = 502;
        try
        {
            (status, keepClient, upstreamReusable) = await RelayResponseAsync(upstream, responseHead, isHead, webSocket,
                clientVersion, clientWantsKeep, bodyTask).ConfigureAwait(false);
            return keepClient;
        }
        catch (Exception e) when (ProxyServer.IsConnectionError(e) && _responseRate?.Violated == true)
        {
            // The response has begun, so no status can be sent: reset the client's connection (its unsent bytes
            // are dropped, not held by the kernel for a reader that will not read) and close the origin's.
            status = _response.StatusCode;
            _server.CountResponseRateViolation();
            ProxyServer.LogSlowResponseReader(_server.Logger, _client.RemoteEndPoint, method, _lastTarget + _logPath,
                _responseRate.BytesPerSecond);
            if (_client is IStreamAbort abort)
            {
                abort.Abort();
            }

            await AbandonBodyAsync(bodyTask).ConfigureAwait(false);
            return false;
        }
        finally
        {
            if (upstreamReusable)
            {
                _server.Pool.Return(upstream);
            }
            else
            {
                await upstream.DisposeAsync().ConfigureAwait(false);
            }

            LogAccess(method, status, started);
        }
    }

    /// <summary>Reads response heads until a final one, relaying 1xx; then relays the final response and its
    /// body. Returns the status, whether the client connection stays, and whether the upstream one can be pooled.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<(int Status, bool KeepClient, bool UpstreamReusable)> RelayResponseAsync(
        UpstreamConnection upstream, int headLength, bool isHead, bool webSocket, int clientVersion,
        bool clientWantsKeep, Task<bool> bodyTask)
    {
        var reader = upstream.Reader;
        while (true)
        {
            if (headLength <= 0)
            {
                await SendErrorAsync(502, headLength == 0 ? "upstream closed the connection"
                    : "upstream response head too large").ConfigureAwait(false);
                return (502, false, false);
            }

            if (HttpHeadParser.ParseResponse(reader.Span[..headLength], _response) != HeadResult.Ok)
            {
                await SendErrorAsync(502, "bad response from upstream: " + _response.Error).ConfigureAwait(false);
                return (502, false, false);
            }

            if (_response.StatusCode is >= 100 and < 200)
            {
                if (_response.StatusCode == 101)
                {
                    return await SwitchProtocolsAsync(upstream, headLength, webSocket, bodyTask).ConfigureAwait(false);
                }

                if (clientVersion == 1)
                {
                    var n = WriteResponseHead(reader.Span[..headLength], BodyFraming.None, ConnectionDirective.None);
                    _deadline.Arm();
                    await _client.Stream.WriteAsync(Out.AsMemory(0, n), _deadline.Token).ConfigureAwait(false);
                }

                reader.Consume(headLength);
                headLength = await ReadUpstreamHeadAsync(reader).ConfigureAwait(false);
                continue;
            }

            break;
        }

        var status = _response.StatusCode;
        if (status == 407 && _options.Parent is not null)
        {
            await SendErrorAsync(502, ParentWantsAuthentication()).ConfigureAwait(false);
            return (502, false, false);
        }

        var inFraming = isHead || status is 204 or 304 ? BodyFraming.None
            : _response.Chunked ? BodyFraming.Chunked
            : _response.HasContentLength ? BodyFraming.ContentLength
            : BodyFraming.UntilClose;
        var outFraming = inFraming;
        var keepClient = clientWantsKeep;
        if (inFraming is BodyFraming.Chunked or BodyFraming.UntilClose)
        {
            if (clientVersion == 1)
            {
                outFraming = BodyFraming.Chunked;
            }
            else
            {
                outFraming = BodyFraming.UntilClose;
                keepClient = false;
            }
        }

        var directive = !keepClient ? ConnectionDirective.Close
            : clientVersion == 0 ? ConnectionDirective.KeepAlive : ConnectionDirective.None;
        var headOut = WriteResponseHead(reader.Span[..headLength], outFraming, directive);
        var upstreamClose = _response.ConnectionClose || _response.VersionMinor == 0 ||
                            (_response.HasContentLength && _response.HasTransferEncoding);
        var bodyLeft = inFraming == BodyFraming.ContentLength ? _response.ContentLength : 0;
        reader.Consume(headLength);
        headOut = AppendBufferedBody(reader, headOut, ref bodyLeft, up: false);

        // From the final head on, every write to the client is timed against the minimum response data rate
        // (1xx heads before it are not, nor a 101's tunnel).
        var rate = StartRate(ref _responseRate, _options.MinResponseDataRate, _options.MinResponseDataRateGracePeriod,
            fromFirstByte: false);
        await BodyCopier.WriteAsync(_client.Stream, Out.AsMemory(0, headOut), _deadline, rate).ConfigureAwait(false);
        switch (inFraming)
        {
            case BodyFraming.ContentLength:
                await BodyCopier.CopyExactAsync(reader, _client.Stream, bodyLeft, _flow, up: false, _deadline,
                    writeRate: rate).ConfigureAwait(false);
                break;
            case BodyFraming.Chunked:
                if (!await BodyCopier.CopyChunkedAsync(reader, _client.Stream, outFraming == BodyFraming.Chunked,
                        _downScratch, _options.MaxHeaderBytes, _flow, up: false, _deadline, writeRate: rate)
                        .ConfigureAwait(false))
                {
                    return (status, false, false); // truncated or malformed: the client sees the connection close
                }

                break;
            case BodyFraming.UntilClose:
                await BodyCopier.CopyUntilCloseAsync(reader, _client.Stream, outFraming == BodyFraming.Chunked,
                    _downScratch, _flow, up: false, _deadline, rate).ConfigureAwait(false);
                upstreamClose = true;
                break;
            default:
                break;
        }

        // A server may answer before it has read the whole request body; the body still goes on until its end
        // (or until the server closes, or the idle deadline), so the connection's next message starts cleanly.
        var bodySent = await bodyTask.ConfigureAwait(false);
        var reusable = !upstreamClose && bodySent && reader.Available == 0;
        return (status, keepClient && bodySent, reusable);
    }

    private async ValueTask<(int Status, bool KeepClient, bool UpstreamReusable)> SwitchProtocolsAsync(
        UpstreamConnection upstream, int headLength, bool webSocket, Task<bool> bodyTask)
    {
        if (!webSocket || !_response.UpgradeWebSocket)
        {
            await SendErrorAsync(502, "upstream switched protocols without a WebSocket upgrade").ConfigureAwait(false);
            return (502, false, false);
        }

        var n = WriteResponseHead(upstream.Reader.Span[..headLength], BodyFraming.None, ConnectionDirective.Upgrade);
        upstream.Reader.Consume(headLength);
        _deadline.Arm();
        await _client.Stream.WriteAsync(Out.AsMemory(0, n), _deadline.Token).ConfigureAwait(false);
        await bodyTask.ConfigureAwait(false);
        _flow.Kind = "websocket";
        await Tunnel.RunAsync(_client, _reader, upstream.Connection, upstream.Reader, _flow, _deadline)
            .ConfigureAwait(false);
        return (101, false, false);
    }

    /// <summary>RFC 9110 9.2.2: the methods whose intended effect is the same however often they are sent.</summary>
    private static bool IsIdempotent(string method) =>
        method is "GET" or "HEAD" or "PUT" or "DELETE" or "OPTIONS" or "TRACE";

    /// <summary>Ends a request body still streaming when the exchange failed (the client connection is closing),
    /// so nothing reads into the session's buffer after the session gave it back.</summary>
    private async Task AbandonBodyAsync(Task<bool> bodyTask)
    {
        if (!bodyTask.IsCompleted)
        {
            _deadline.Cancel();
            await bodyTask.ConfigureAwait(false);
        }
    }

    /// <summary>Streams the rest of the request body upstream. False when its framing was malformed (then the
    /// upstream connection is closed so the origin never sees a half message as complete).</summary>
    private async Task<bool> SendRequestBodyAsync(UpstreamConnection upstream, BodyFraming framing, long left)
    {
        var rate = StartRate(ref _bodyRate, _options.MinRequestBodyDataRate, _options.MinRequestBodyDataRateGracePeriod,
            fromFirstByte: true);
        try
        {
            if (framing == BodyFraming.ContentLength)
            {
                await BodyCopier.CopyExactAsync(_reader, upstream.Connection.Stream, left, _flow, up: true, _deadline,
                    rate).ConfigureAwait(false);
                return true;
            }

            if (await BodyCopier.CopyChunkedAsync(_reader, upstream.Connection.Stream, reChunk: true, _upScratch,
                    _options.MaxHeaderBytes, _flow, up: true, _deadline, rate).ConfigureAwait(false))
            {
                return true;
            }
        }
        catch (Exception e) when (ProxyServer.IsConnectionError(e))
        {
        }

        await upstream.DisposeAsync().ConfigureAwait(false);
        return false;
    }

    /// <summary>The connection's minimum data rate for one direction, reset for a new message; made on first use,
    /// null when the configured rate is 0 (off).</summary>
    private MinDataRate? StartRate(ref MinDataRate? rate, double bytesPerSecond, TimeSpan grace, bool fromFirstByte)
    {
        if (bytesPerSecond <= 0)
        {
            return null;
        }

        rate ??= new MinDataRate(_server.Time, bytesPerSecond, grace, _deadline, fromFirstByte);
        rate.Reset();
        return rate;
    }

    /// <summary>Reads a response head; returns its length, 0 when the upstream closed first, -1 when too large.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<int> ReadUpstreamHeadAsync(PooledReader reader)
    {
        var scanned = 0;
        while (true)
        {
            var length = HttpHeadParser.FindHeadEnd(reader.Span, ref scanned);
            if (length > 0)
            {
                return length <= _options.MaxHeaderBytes ? length : -1;
            }

            if (reader.Available >= _options.MaxHeaderBytes)
            {
                return -1;
            }

            _deadline.Arm();
            var n = await reader.FillAsync(_deadline.Token).ConfigureAwait(false);
            if (n == 0)
            {
                return reader.Available == 0 ? 0 : -1;
            }

            if (n < 0)
            {
                return -1;
            }
        }
    }

    /// <summary>Moves as much of a Content-Length body as <paramref name="source"/> already holds (and
    /// <see cref="Out"/> has room for) behind the head written there, so head and body start in one write.
    /// Returns the new end of <see cref="Out"/>.</summary>
    private int AppendBufferedBody(PooledReader source, int headOut, ref long bodyLeft, bool up)
    {
        if (bodyLeft <= 0)
        {
            return headOut;
        }

        var take = (int)Math.Min(Math.Min(bodyLeft, source.Available), Out.Length - headOut);
        source.Span[..take].CopyTo(Out.AsSpan(headOut));
        source.Consume(take);
        bodyLeft -= take;
        _flow.Add(up, take);
        return headOut + take;
    }

    private int WriteRequestHead(int headLength, in RequestTarget target, BodyFraming framing)
    {
        var head = _reader.Span[..headLength];
        var w = new HeadWriter(Out);
        var via = _request.VersionMinor == 0 ? _server.Via10 : _server.Via11;
        return HeadRewriter.WriteRequest(head, _request, target, _options.Parent is not null, framing, via, ref w,
                _server.ParentAuthorization)
            ? w.Length
            : -1;
    }

    private int WriteResponseHead(ReadOnlySpan<byte> head, BodyFraming framing, ConnectionDirective directive)
    {
        var w = new HeadWriter(Out);
        var via = _response.VersionMinor == 0 ? _server.Via10 : _server.Via11;
        if (!HeadRewriter.WriteResponse(head, _response, framing, directive, via, ref w))
        {
            // cannot happen: the output buffer is twice the largest head accepted
            throw new InvalidDataException("response head does not fit the output buffer");
        }

        return w.Length;
    }

    private async Task<bool> SendStatusAsync(bool isHead)
    {
        var body = new ArrayBufferWriter<byte>(4096);
        await using (var json = new Utf8JsonWriter(body))
        {
            _server.Connections.WriteJson(json);
        }

        var head = Encoding.ASCII.GetBytes(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nContent-Length: " +
            body.WrittenCount + "\r\n\r\n");
        _deadline.Arm();
        await _client.Stream.WriteAsync(head, _deadline.Token).ConfigureAwait(false);
        if (!isHead)
        {
            await _client.Stream.WriteAsync(body.WrittenMemory, _deadline.Token).ConfigureAwait(false);
        }

        return !_request.ConnectionClose && _request.VersionMinor == 1;
    }

    private async Task SendErrorAsync(int status, string reason)
    {
        ProxyServer.LogRefusedRequest(_server.Logger, _client.RemoteEndPoint, status, reason);
        var response = ErrorResponse(status, reason, authenticate: status == 407);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2), _server.Time);
        try
        {
            await _client.Stream.WriteAsync(response, timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (ProxyServer.IsConnectionError(e))
        {
        }
    }

    private static byte[] ErrorResponse(int status, string reason, bool authenticate)
    {
        var body = reason + "\n";
        var sb = new StringBuilder(160);
        sb.Append("HTTP/1.1 ").Append(status).Append(' ').Append(ReasonPhrase(status)).Append("\r\n");
        sb.Append("Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n");
        if (authenticate)
        {
            sb.Append("Proxy-Authenticate: Basic realm=\"natkit\"\r\n");
        }

        sb.Append("Content-Length: ").Append(Encoding.UTF8.GetByteCount(body)).Append("\r\n\r\n").Append(body);
        return Encoding.UTF8.GetBytes(sb.ToString());
    }

    private static string ReasonPhrase(int status) => status switch
    {
        400 => "Bad Request",
        403 => "Forbidden",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    };

    private static string MethodName(ReadOnlySpan<byte> method) => method switch
    {
        _ when method.SequenceEqual("GET"u8) => "GET",
        _ when method.SequenceEqual("HEAD"u8) => "HEAD",
        _ when method.SequenceEqual("POST"u8) => "POST",
        _ when method.SequenceEqual("PUT"u8) => "PUT",
        _ when method.SequenceEqual("DELETE"u8) => "DELETE",
        _ when method.SequenceEqual("OPTIONS"u8) => "OPTIONS",
        _ when method.SequenceEqual("PATCH"u8) => "PATCH",
        _ => Encoding.ASCII.GetString(method),
    };

    private void LogAccess(string method, int status, long started)
    {
        if (_server.Logger.IsEnabled(Microsoft.Extensions.Logging.LogLevel.Information))
        {
            ProxyServer.LogAccess(_server.Logger, _client.RemoteEndPoint, method, _lastTarget + _logPath, status, _flow.BytesUp,
                _flow.BytesDown, (long)_server.Time.GetElapsedTime(started).TotalMilliseconds);
        }
    }
}
