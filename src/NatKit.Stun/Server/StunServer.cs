using System.Net.Sockets;
using System.Buffers;
using System.Net;
using System.Net.Security;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using NatKit.Net;

namespace NatKit.Stun.Server;

/// <summary>
/// A STUN server (RFC 8489) over an <see cref="INetwork"/>, so it runs on real sockets and in the lab alike:
/// UDP (one socket, or four in RFC 5780 mode), TCP and, given a certificate, TLS. The per-request work is
/// <see cref="StunRequestHandler"/>; this class only moves bytes. The UDP receive/answer path reuses one buffer
/// pair per socket and the endpoint the network hands back, so it allocates nothing per request.
/// </summary>
public sealed partial class StunServer : IAsyncDisposable
{
    private const int ReceiveBufferLength = 2048;

    /// <summary>Requests a UDP thread takes from its socket's queue at once, and replies it sends at once.</summary>
    private const int MaxBatch = 32;

    /// <summary>Largest message accepted on a stream; a bigger frame closes the connection.</summary>
    private const int MaxStreamFrame = 4096;

    private readonly INetwork _network;
    private StunServerOptions _options;
    private IReadOnlyList<IPEndPoint> _advertised = [];
    private readonly ILogger _logger;
    private readonly IDatagramSocket[] _udp;
    private readonly List<IStreamListener> _listeners = [];
    private readonly List<Task> _loops = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly TcpConnectionLimits _tcpLimits;
    private StunRequestHandler _handler = null!;

    private StunServer(INetwork network, StunServerOptions options, ILogger logger, IDatagramSocket[] udp)
    {
        _network = network;
        _options = options;
        _logger = logger;
        _udp = udp;
        _tcpLimits = new TcpConnectionLimits(options.MaxTcpConnections, options.MaxTcpConnectionsPerAddress);
    }

    /// <summary>The users (name to password) requests are authenticated against now (see <see cref="Reload"/>).</summary>
    public IReadOnlyDictionary<string, string> Users => Volatile.Read(ref _options).Users;

    /// <summary>Requests per second allowed from one source address now (0: no limit; see <see cref="Reload"/>).</summary>
    public int RateLimitPerSecond => Volatile.Read(ref _options).RateLimitPerSecond;

    /// <summary>Replaces the users and the per-source rate limit while serving (an operator's SIGHUP): the next
    /// request is answered by a handler built from the new settings. Its nonces are new, so a long-term client is
    /// told 438 (Stale Nonce) once and retries with the new one; the rate limiter starts with full buckets. Sockets,
    /// listeners and TCP/TLS connections stay as they are.</summary>
    /// <exception cref="ArgumentException">The new settings are not valid together with the rest (the message names
    /// the field); the running ones stay.</exception>
    public void Reload(IReadOnlyDictionary<string, string> users, int rateLimitPerSecond)
    {
        ArgumentNullException.ThrowIfNull(users);
        var options = Volatile.Read(ref _options) with { Users = users, RateLimitPerSecond = rateLimitPerSecond };
        options.Validate();
        var handler = new StunRequestHandler(options, _advertised, _network.TimeProvider, Metrics);
        Volatile.Write(ref _options, options);
        Volatile.Write(ref _handler, handler);
        LogReloaded(_logger, users.Count, rateLimitPerSecond);
    }

    /// <summary>The UDP sockets' local endpoints by index (bit 0: alternate port, bit 1: alternate address).</summary>
    public IReadOnlyList<IPEndPoint> UdpEndPoints => _udp.Select(s => s.LocalEndPoint).ToArray();

    public IPEndPoint? TcpEndPoint { get; private set; }

    public IPEndPoint? TlsEndPoint { get; private set; }

    public StunServerMetrics Metrics { get; } = new();

    /// <summary>TCP and TLS connections held now (at most <see cref="StunServerOptions.MaxTcpConnections"/>).</summary>
    public int TcpConnectionCount => _tcpLimits.Count;

    /// <summary>Binds everything the options ask for and starts serving.</summary>
    /// <exception cref="ArgumentException">The options are invalid (the message names the field).</exception>
    /// <exception cref="NetworkException">An address is in use or not on this host.</exception>
    public static async Task<StunServer> StartAsync(INetwork network, StunServerOptions options,
        ILogger? logger = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(network);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();

        // Port 0 lets the kernel pick the UDP port, and the same number is then bound for TCP and on the alternate
        // address, where something else may hold it (the ephemeral ranges are shared): pick again a few times.
        var ephemeral = options.Primary.Port == 0;
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await StartOnceAsync(network, options, logger, cancellationToken).ConfigureAwait(false);
            }
            catch (NetworkException e) when (ephemeral && attempt < 8 && e.Error == SocketError.AddressAlreadyInUse)
            {
            }
        }
    }

    private static async Task<StunServer> StartOnceAsync(INetwork network, StunServerOptions options, ILogger? logger,
        CancellationToken cancellationToken)
    {
        var sockets = new List<IDatagramSocket>();
        var advertised = new List<IPEndPoint>();
        StunServer? server = null;
        try
        {
            var primary = options.Primary;
            if (options.EnableUdp || options.Rfc5780)
            {
                var pp = await network.BindUdpAsync(primary, cancellationToken);
                sockets.Add(pp);
                primary = pp.LocalEndPoint;
            }

            if (options.Rfc5780)
            {
                var apPort = options.AlternatePort != 0 ? options.AlternatePort
                    : options.Primary.Port == 0 ? 0 : options.Primary.Port + 1;
                var pa = await network.BindUdpAsync(new IPEndPoint(primary.Address, apPort), cancellationToken);
                sockets.Add(pa);
                apPort = pa.LocalEndPoint.Port;
                var alternate = options.AlternateAddress!;
                sockets.Add(await network.BindUdpAsync(new IPEndPoint(alternate, primary.Port), cancellationToken));
                sockets.Add(await network.BindUdpAsync(new IPEndPoint(alternate, apPort), cancellationToken));
                var pubPrimary = options.AdvertisedPrimaryAddress ?? primary.Address;
                var pubAlternate = options.AdvertisedAlternateAddress ?? alternate;
                advertised.Add(new IPEndPoint(pubPrimary, primary.Port));
                advertised.Add(new IPEndPoint(pubPrimary, apPort));
                advertised.Add(new IPEndPoint(pubAlternate, primary.Port));
                advertised.Add(new IPEndPoint(pubAlternate, apPort));
            }
            else
            {
                advertised.Add(new IPEndPoint(options.AdvertisedPrimaryAddress ?? primary.Address, primary.Port));
            }

            server = new StunServer(network, options, logger ?? NullLogger.Instance, sockets.ToArray());
            server.Metrics.DropLog = new DropLog(server._logger, network.TimeProvider, DropLog.DefaultInterval);
            server._advertised = advertised;
            server._handler = new StunRequestHandler(options, advertised, network.TimeProvider, server.Metrics);
            if (options.EnableTcp)
            {
                var listener = await network.ListenTcpAsync(primary, cancellationToken: cancellationToken);
                server._listeners.Add(listener);
                server.TcpEndPoint = listener.LocalEndPoint;
                server._loops.Add(server.AcceptLoopAsync(listener, StunTransport.Tcp));
            }

            if (options.TlsCertificate is not null)
            {
                var listener = await network.ListenTcpAsync(new IPEndPoint(primary.Address, options.TlsPort),
                    cancellationToken: cancellationToken);
                server._listeners.Add(listener);
                server.TlsEndPoint = listener.LocalEndPoint;
                server._loops.Add(server.AcceptLoopAsync(listener, StunTransport.Tls));
            }

            // Threads only when every socket offers blocking I/O: a reply may leave by any of them (RFC 5780).
            var blocking = Array.ConvertAll(server._udp, s => s as IBlockingDatagramSocket);
            var useThreads = Array.TrueForAll(blocking, b => b is not null);
            for (var i = 0; i < server._udp.Length; i++)
            {
                server._loops.Add(useThreads ? server.StartUdpThread(i, blocking!) : server.UdpLoopAsync(i));
            }

            LogStarted(server._logger, string.Join(", ", server._udp.Select(s => s.LocalEndPoint)),
                server.TcpEndPoint?.ToString() ?? "-", server.TlsEndPoint?.ToString() ?? "-", options.Rfc5780);
            return server;
        }
        catch
        {
            if (server is not null)
            {
                await server.DisposeAsync();
            }
            else
            {
                foreach (var s in sockets)
                {
                    await s.DisposeAsync();
                }
            }

            throw;
        }
    }

    private async Task UdpLoopAsync(int index)
    {
        var socket = _udp[index];
        var buffer = new byte[ReceiveBufferLength];
        var reply = new byte[StunRequestHandler.MaxReplyLength];
        var token = _stop.Token;
        while (!token.IsCancellationRequested)
        {
            ReceivedDatagram datagram;
            try
            {
                // No token: disposal ends the receive, and a cancellable receive would register on the token for
                // every datagram.
                datagram = await socket.ReceiveFromAsync(buffer, CancellationToken.None);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
#pragma warning disable CA1031 // No receive error may end the loop; a persistent one is logged and paced.
            catch (Exception e)
#pragma warning restore CA1031
            {
                LogReceiveFailed(_logger, socket.LocalEndPoint, e.Message);
                try
                {
                    await Task.Delay(TimeSpan.FromMilliseconds(10), _network.TimeProvider, token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                continue;
            }

            var route = HandleDatagram(buffer.AsSpan(0, datagram.Length), datagram.RemoteEndPoint, index, reply,
                out var target);
            if (route.Length == 0)
            {
                continue;
            }

            try
            {
                await _udp[route.SocketIndex].SendToAsync(reply.AsMemory(0, route.Length), target, CancellationToken.None);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
#pragma warning disable CA1031 // A send refused by the OS (a spoofed broadcast source, no route) only loses that reply.
            catch (Exception e)
#pragma warning restore CA1031
            {
                LogSendFailed(_logger, target, e.Message);
            }
        }
    }

    /// <summary>
    /// Where the network offers synchronous datagram I/O, a thread of its own serves the socket: a blocking
    /// receive, the handler, a send, with no thread-pool hop between them. On two cores this answers more requests
    /// per second than the asynchronous loop (docs/stun.md, Numbers). Disposing the socket ends the thread.
    /// </summary>
    private Task StartUdpThread(int index, IBlockingDatagramSocket?[] sockets)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            try
            {
                UdpThreadLoop(index, sockets!);
            }
            finally
            {
                done.SetResult();
            }
        })
        {
            IsBackground = true,
            Name = $"stun-udp-{index}",
        };
        thread.Start();
        return done.Task;
    }

    private void UdpThreadLoop(int index, IBlockingDatagramSocket[] sockets)
    {
        var socket = sockets[index];
        using var requests = new DatagramBatch(MaxBatch, ReceiveBufferLength);
        using var replies = new DatagramBatch(MaxBatch, StunRequestHandler.MaxReplyLength);
        var token = _stop.Token;
        while (!token.IsCancellationRequested)
        {
            // One wait for the first datagram takes the others already queued with it; their replies then leave
            // together, so a busy server makes two system calls per batch instead of two per request.
            int received;
            try
            {
                received = socket.ReceiveBatch(requests);
            }
            catch (ObjectDisposedException)
            {
                return;
            }
#pragma warning disable CA1031 // No receive error may end the loop; a persistent one is logged and paced.
            catch (Exception e)
#pragma warning restore CA1031
            {
                LogReceiveFailed(_logger, _udp[index].LocalEndPoint, e.Message);
                if (token.WaitHandle.WaitOne(TimeSpan.FromMilliseconds(10)))
                {
                    return;
                }

                continue;
            }

            var count = 0;
            for (var i = 0; i < received; i++)
            {
                var route = HandleDatagram(requests.Datagram(i), requests.RemoteEndPoint(i), index,
                    replies.Slot(count), out var target);
                if (route.Length == 0)
                {
                    continue;
                }

                if (route.SocketIndex == index)
                {
                    replies.Set(count++, route.Length, target);
                    continue;
                }

                // RFC 5780 CHANGE-REQUEST: this reply leaves by another socket.
                try
                {
                    sockets[route.SocketIndex].Send(replies.Slot(count)[..route.Length], target);
                }
                catch (ObjectDisposedException)
                {
                    return;
                }
                catch (NetworkException e)
                {
                    LogSendFailed(_logger, target, e.Message);
                }
            }

            try
            {
                // A reply the OS refuses (a spoofed broadcast source, no route) is skipped; the others still go.
                socket.SendBatch(replies, count);
            }
            catch (ObjectDisposedException)
            {
                return;
            }
        }
    }

    /// <summary>Runs the handler on one UDP datagram; a failure is logged and answers nothing.</summary>
    private StunReplyRoute HandleDatagram(ReadOnlySpan<byte> request, IPEndPoint source, int index, Span<byte> reply,
        out IPEndPoint target)
    {
        StunReplyRoute route;
        try
        {
            route = Volatile.Read(ref _handler).Handle(request, source, index, StunTransport.Udp, reply);
        }
#pragma warning disable CA1031 // A bug in handling one datagram must not stop the server; it is logged.
        catch (Exception e)
#pragma warning restore CA1031
        {
            LogHandlerFailed(_logger, e);
            target = source;
            return default;
        }

        target = route.Length == 0 || route.Port == 0 ? source : new IPEndPoint(source.Address, route.Port);
        return route;
    }

    private Task AcceptLoopAsync(IStreamListener listener, StunTransport transport) =>
        StreamAcceptLoop.RunAsync(listener, connection => AdmitAsync(connection, transport),
            e => _logger.LogDebug(e, "accept on {Listener} failed", listener.LocalEndPoint),
            (c, e) => _logger.LogWarning(e, "stream client {Remote} failed", c.RemoteEndPoint), _stop.Token);

    /// <summary>The connection caps first: one over them is closed at once.</summary>
    private Task AdmitAsync(IStreamConnection connection, StunTransport transport)
    {
        var admission = _tcpLimits.TryAdmit(connection.RemoteEndPoint.Address);
        if (admission != TcpAdmission.Admitted)
        {
            Metrics.Drop(DropReason.ConnectionLimit);
            Metrics.ConnectionRejected(admission);
            return CloseQuietlyAsync(connection).AsTask();
        }

        return ServeConnectionAsync(connection, transport);
    }

    private static async ValueTask CloseQuietlyAsync(IStreamConnection connection)
    {
        try
        {
            await connection.DisposeAsync();
        }
        catch (Exception e) when (e is IOException or NetworkException or ObjectDisposedException)
        {
            // it is gone either way
        }
    }

    /// <summary>One admitted TCP or TLS client: TLS handshake, then framed requests until the client closes, the
    /// framing breaks, or the watchdog ends it (the handshake window until the first whole, valid message, then
    /// the idle timeout between such messages: a trickle of bytes moves neither). Frees its slot when it ends.</summary>
    private async Task ServeConnectionAsync(IStreamConnection connection, StunTransport transport)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(MaxStreamFrame);
        var reply = ArrayPool<byte>.Shared.Rent(StunRequestHandler.MaxReplyLength);
        var watchdog = new TcpConnectionWatchdog(_network.TimeProvider, _options.TcpHandshakeTimeout,
            _options.TcpIdleTimeout, Metrics.ConnectionTimedOut, _stop.Token);
        var token = watchdog.Token;
        Stream? tls = null;
        try
        {
            var stream = connection.Stream;
            if (transport == StunTransport.Tls)
            {
                var ssl = new SslStream(connection.Stream, leaveInnerStreamOpen: true);
                tls = ssl;
                await ssl.AuthenticateAsServerAsync(
                    TlsSetup.ServerOptions(_options.TlsCertificate!), token);
                stream = ssl;
            }

            var filled = 0;
            while (true)
            {
                var n = await stream.ReadAsync(buffer.AsMemory(filled, MaxStreamFrame - filled), token);
                if (n == 0)
                {
                    return;
                }

                filled += n;
                var consumed = 0;
                while (true)
                {
                    if (!StunFraming.TryGetFrameLength(buffer.AsSpan(consumed, filled - consumed), out var frame) ||
                        frame > MaxStreamFrame)
                    {
                        Metrics.Drop(DropReason.Malformed);
                        return; // not STUN, or larger than we accept: RFC 8489 leaves closing to the server
                    }

                    if (frame == 0 || frame > filled - consumed)
                    {
                        break;
                    }

                    var message = buffer.AsSpan(consumed, frame);
                    if (StunMessageReader.TryParse(message, out _))
                    {
                        watchdog.MessageReceived(); // only whole, valid messages keep a connection open
                    }

                    var route = Volatile.Read(ref _handler).Handle(message, connection.RemoteEndPoint, 0, transport, reply);
                    consumed += frame;
                    if (route.Length > 0)
                    {
                        await stream.WriteAsync(reply.AsMemory(0, route.Length), token);
                    }
                }

                buffer.AsSpan(consumed, filled - consumed).CopyTo(buffer);
                filled -= consumed;
            }
        }
#pragma warning disable CA1031 // Whatever one connection does (reset, TLS failure, timeout), the server goes on.
        catch (Exception e)
#pragma warning restore CA1031
        {
            if (e is not (OperationCanceledException or IOException or ObjectDisposedException
                or System.Security.Authentication.AuthenticationException))
            {
                LogHandlerFailed(_logger, e);
            }
        }
        finally
        {
            // Whatever closing does: a watchdog left running would count a timeout for a closed connection.
            watchdog.Dispose();
            try
            {
                if (tls is not null)
                {
                    await tls.DisposeAsync();
                }
            }
#pragma warning disable CA1031 // the slot must be freed whatever closing TLS does
            catch (Exception e)
#pragma warning restore CA1031
            {
                LogSendFailed(_logger, connection.RemoteEndPoint, e.Message);
            }

            ArrayPool<byte>.Shared.Return(buffer);
            ArrayPool<byte>.Shared.Return(reply);
            _tcpLimits.Release(connection.RemoteEndPoint.Address); // before the close: a client that saw it may reconnect
            await CloseQuietlyAsync(connection);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_stop.IsCancellationRequested)
        {
            return;
        }

        // Cancel, not CancelAsync: the callbacks must run here, on the caller's thread (the lab's loop).
        _stop.Cancel();
        foreach (var l in _listeners)
        {
            await l.DisposeAsync();
        }

        foreach (var s in _udp)
        {
            await s.DisposeAsync();
        }

        try
        {
            await Task.WhenAll(_loops);
        }
        catch (OperationCanceledException)
        {
        }

        Metrics.Dispose();
        _stop.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "STUN server on UDP {Udp}, TCP {Tcp}, TLS {Tls} (RFC 5780: {Rfc5780})")]
    private static partial void LogStarted(ILogger logger, string udp, string tcp, string tls, bool rfc5780);

    [LoggerMessage(EventId = 201, Level = LogLevel.Information, Message = "reloaded: {Users} user(s), rate limit {Rate}/s per source (0: none)")]
    private static partial void LogReloaded(ILogger logger, int users, int rate);

    [LoggerMessage(Level = LogLevel.Warning, Message = "receive on {EndPoint} failed: {Reason}")]
    private static partial void LogReceiveFailed(ILogger logger, IPEndPoint endPoint, string reason);

    [LoggerMessage(Level = LogLevel.Debug, Message = "send to {EndPoint} failed: {Reason}")]
    private static partial void LogSendFailed(ILogger logger, IPEndPoint endPoint, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "STUN handler failed")]
    private static partial void LogHandlerFailed(ILogger logger, Exception exception);
}
