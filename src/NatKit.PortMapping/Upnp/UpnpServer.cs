using System.Globalization;
using System.Net;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using NatKit.Net;
using NatKit.Packets;

namespace NatKit.PortMapping.Upnp;

/// <summary>How a <see cref="UpnpServer"/> runs.</summary>
public sealed record UpnpServerOptions
{
    /// <summary>The HTTP port for the description and control (0: an ephemeral one; miniupnpd picks one too). The
    /// SSDP answers say which.</summary>
    public int HttpPort { get; init; }

    /// <summary>The SSDP port (1900; 0 picks an ephemeral one, for tests on a shared machine's loopback).</summary>
    public int SsdpPort { get; init; } = SsdpMessage.Port;

    /// <summary>The device's UDN; null makes one from the inside address, so it stays the same across restarts.</summary>
    public string? Udn { get; init; }

    /// <summary>The device's name for people.</summary>
    public string FriendlyName { get; init; } = "NatKit gateway";

    /// <summary>The SERVER header (UDA 2.0: "OS/version UPnP/2.0 product/version").</summary>
    public string Server { get; init; } = "Linux/6 UPnP/2.0 NatKit/1.0";

    /// <summary>How often ssdp:alive goes out again (well inside the 1800 s max-age).</summary>
    public TimeSpan AnnounceInterval { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>An HTTP connection that has not sent its whole request by then is closed.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Most HTTP connections served at once; more are closed at once.</summary>
    public int MaxConnections { get; init; } = 32;

    /// <summary>Draws the random wait before answering a multicast search (UDA 2.0 section 1.3.2); seed it for a
    /// lab run that repeats.</summary>
    public Random Random { get; init; } = Random.Shared;

    /// <summary>One sentence per invalid field, each starting with the field's name; empty when valid.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (HttpPort is < 0 or > 65535) errors.Add($"{nameof(HttpPort)}: {HttpPort} is not a port.");
        if (SsdpPort is < 0 or > 65535) errors.Add($"{nameof(SsdpPort)}: {SsdpPort} is not a port.");
        if (AnnounceInterval <= TimeSpan.Zero || AnnounceInterval > TimeSpan.FromSeconds(UpnpSsdpResponder.MaxAgeSeconds))
            errors.Add($"{nameof(AnnounceInterval)}: {AnnounceInterval} must be more than 0 and at most the 1800 s max-age.");
        if (RequestTimeout <= TimeSpan.Zero) errors.Add($"{nameof(RequestTimeout)}: must be more than 0.");
        if (MaxConnections < 1) errors.Add($"{nameof(MaxConnections)}: must be at least 1.");
        return errors;
    }
}

/// <summary>
/// Runs a function on the thread that drives the NAT engine, with the engine's current time (ms): how the UPnP
/// server reaches the mapping table. In the lab, on its loop: <c>f =&gt; ValueTask.FromResult(f(now))</c>; on a
/// gateway, through its data plane's InvokeAsync.
/// </summary>
public delegate ValueTask<byte[]> EngineCall(Func<long, byte[]> action);

/// <summary>
/// The UPnP IGD at the edge: SSDP on 239.255.255.250:1900 (joined on the inside address only) and a small HTTP
/// server on the inside address for the description and SOAP control. The sockets come from an
/// <see cref="INetwork"/> that is also an <see cref="IMulticastNetwork"/>: a lab router's
/// services host (LabRouter.Services), or the real network in the gateway's namespace. All decisions are the pure
/// handlers' (<see cref="UpnpSsdpResponder"/>, <see cref="UpnpHttpHandler"/>); this class only moves bytes.
/// </summary>
public sealed partial class UpnpServer : IAsyncDisposable
{
    private readonly INetwork _network;
    private readonly IMulticastDatagramSocket _ssdp;
    private readonly IStreamListener _http;
    private readonly UpnpHttpHandler _handler;
    private readonly UpnpSsdpResponder _responder;
    private readonly EngineCall _engine;
    private readonly UpnpServerOptions _options;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _ssdpLoop;
    private readonly Task _acceptLoop;
    private readonly ITimer _announcer;
    private int _connections;
    private int _pendingSearches;
    private long _searchesAnswered;
    private long _requestsServed;
    private int _disposed;

    private UpnpServer(INetwork network, IMulticastDatagramSocket ssdp, IStreamListener http, UpnpHttpHandler handler,
        UpnpSsdpResponder responder, EngineCall engine, UpnpServerOptions options, IPAddress inside, ILogger logger)
    {
        _network = network;
        _ssdp = ssdp;
        _http = http;
        _handler = handler;
        _responder = responder;
        _engine = engine;
        _options = options;
        _logger = logger;
        DescriptionUrl = new Uri($"http://{inside}:{http.LocalEndPoint.Port.ToString(CultureInfo.InvariantCulture)}{UpnpPaths.Description}");
        _ssdpLoop = SsdpLoopAsync();
        _acceptLoop = AcceptLoopAsync();
        _announcer = network.TimeProvider.CreateTimer(static s => ((UpnpServer)s!).Announce(alive: true), this,
            TimeSpan.Zero, options.AnnounceInterval);
    }

    /// <summary>Where the device description is.</summary>
    public Uri DescriptionUrl { get; }

    /// <summary>The SSDP socket's endpoint (port 1900 unless the options chose another).</summary>
    public IPEndPoint SsdpEndPoint => _ssdp.LocalEndPoint;

    /// <summary>The HTTP listener's endpoint.</summary>
    public IPEndPoint HttpEndPoint => _http.LocalEndPoint;

    /// <summary>The control core (its counters and table).</summary>
    public UpnpControlHandler Control => _handler.Control;

    /// <summary>Searches answered (each with one datagram per matching target).</summary>
    public long SearchesAnswered => Interlocked.Read(ref _searchesAnswered);

    /// <summary>HTTP requests answered.</summary>
    public long RequestsServed => Interlocked.Read(ref _requestsServed);

    /// <summary>
    /// Starts the IGD on <paramref name="insideAddress"/> (an address of <paramref name="network"/>, on the NAT's
    /// inside). <paramref name="control"/>'s table is only read for its inside prefixes here; every change goes through
    /// <paramref name="engine"/>, on the engine's thread.
    /// </summary>
    /// <exception cref="ArgumentException">A bad option, or a network without multicast.</exception>
    /// <exception cref="NetworkException">A port is taken or the address is not the network's.</exception>
    public static async Task<UpnpServer> StartAsync(INetwork network, IPAddress insideAddress,
        UpnpControlHandler control, EngineCall engine, UpnpServerOptions? options = null, ILogger? logger = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(network);
        ArgumentNullException.ThrowIfNull(insideAddress);
        ArgumentNullException.ThrowIfNull(control);
        ArgumentNullException.ThrowIfNull(engine);
        options ??= new UpnpServerOptions();
        var errors = options.Validate();
        if (errors.Count > 0)
        {
            throw new ArgumentException(errors[0], nameof(options));
        }

        if (network is not IMulticastNetwork multicast)
        {
            throw new ArgumentException("UPnP's SSDP needs a network with multicast (IMulticastNetwork)", nameof(network));
        }

        var udn = options.Udn ?? UdnFor(insideAddress);
        var handler = new UpnpHttpHandler(control, udn, options.FriendlyName, options.Server);
        var responder = new UpnpSsdpResponder(udn, options.Server);
        var http = await network.ListenTcpAsync(new IPEndPoint(insideAddress, options.HttpPort), 64, cancellationToken);
        IMulticastDatagramSocket? ssdp = null;
        try
        {
            ssdp = await multicast.BindMulticastUdpAsync(new IPEndPoint(IPAddress.Any, options.SsdpPort), cancellationToken);
            ssdp.JoinGroup(SsdpMessage.Group, insideAddress);
            ssdp.SetMulticastSend(insideAddress, timeToLive: 2); // UDA 2.0 section 1.1.2: TTL 2 by default
        }
        catch
        {
            if (ssdp is not null)
            {
                await ssdp.DisposeAsync();
            }

            await http.DisposeAsync();
            throw;
        }

        var server = new UpnpServer(network, ssdp, http, handler, responder, engine, options, insideAddress,
            logger ?? NullLogger.Instance);
        LogStarted(server._logger, server.DescriptionUrl);
        return server;
    }

    /// <summary>A UDN that names this inside address, the same on every start (UDA wants it stable).</summary>
    public static string UdnFor(IPAddress insideAddress)
    {
        ArgumentNullException.ThrowIfNull(insideAddress);
        var b = insideAddress.MapToIPv4().GetAddressBytes();
        return string.Create(CultureInfo.InvariantCulture,
            $"uuid:6e61746b-6974-4947-4400-{b[0]:x2}{b[1]:x2}{b[2]:x2}{b[3]:x2}0000");
    }

    private async Task SsdpLoopAsync()
    {
        var buffer = new byte[2048];
        var location = DescriptionUrl.ToString();
        var token = _stop.Token;
        while (!token.IsCancellationRequested)
        {
            ReceivedMessage m;
            try
            {
                m = await _ssdp.ReceiveMessageFromAsync(buffer, token);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (NetworkException e)
            {
                LogReceiveFailed(_logger, e.Message);
                continue;
            }

            // Only the inside may discover the IGD (its own looped-back announcements are NOTIFYs, not searches).
            if (!Ipv4Address.TryFromIPAddress(m.RemoteEndPoint.Address, out var source) ||
                !_handler.Control.Table.IsInside(source) ||
                !SsdpMessage.TryParse(buffer.AsSpan(0, m.Length), out var message) || message.Kind != SsdpKind.Search)
            {
                continue;
            }

            var answers = _responder.Answer(message, location, m.IsMulticast);
            if (answers.Count == 0)
            {
                continue;
            }

            var delay = UpnpSsdpResponder.AnswerDelay(message, m.IsMulticast, _options.Random);
            if (delay == TimeSpan.Zero)
            {
                await AnswerAsync(answers, m.RemoteEndPoint, token);
            }
            else if (Interlocked.Increment(ref _pendingSearches) <= MaxPendingSearches)
            {
                _ = AnswerLaterAsync(answers, m.RemoteEndPoint, delay, token);
            }
            else
            {
                Interlocked.Decrement(ref _pendingSearches); // a flood of searches: the rest wait for the next one
            }
        }
    }

    /// <summary>Multicast searches waiting out their random delay at most (each holds its answers until then).</summary>
    private const int MaxPendingSearches = 64;

    private async Task AnswerLaterAsync(IReadOnlyList<byte[]> answers, IPEndPoint to, TimeSpan delay, CancellationToken token)
    {
        try
        {
            await Task.Delay(delay, _network.TimeProvider, token);
            await AnswerAsync(answers, to, token);
        }
        catch (OperationCanceledException)
        {
        }
        finally
        {
            Interlocked.Decrement(ref _pendingSearches);
        }
    }

    private async Task AnswerAsync(IReadOnlyList<byte[]> answers, IPEndPoint to, CancellationToken token)
    {
        Interlocked.Increment(ref _searchesAnswered);
        foreach (var answer in answers)
        {
            try
            {
                await _ssdp.SendToAsync(answer, to, token);
            }
            catch (Exception e) when (e is NetworkException or OperationCanceledException or ObjectDisposedException)
            {
                break;
            }
        }
    }

    private void Announce(bool alive)
    {
        foreach (var notify in _responder.Announcements(alive ? DescriptionUrl.ToString() : null))
        {
            try
            {
                _ = _ssdp.SendToAsync(notify, new IPEndPoint(SsdpMessage.Group, _ssdp.LocalEndPoint.Port));
            }
            catch (Exception e) when (e is NetworkException or ObjectDisposedException)
            {
                return;
            }
        }
    }

    private async Task AcceptLoopAsync()
    {
        var token = _stop.Token;
        while (!token.IsCancellationRequested)
        {
            IStreamConnection connection;
            try
            {
                connection = await _http.AcceptAsync(token);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (NetworkException)
            {
                continue;
            }

            if (Interlocked.Increment(ref _connections) > _options.MaxConnections)
            {
                Interlocked.Decrement(ref _connections);
                await CloseQuietlyAsync(connection);
                continue;
            }

            _ = ServeAsync(connection);
        }
    }

    /// <summary>One request per connection (the answer says Connection: close), read within the request timeout.</summary>
    private async Task ServeAsync(IStreamConnection connection)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        using var timer = _network.TimeProvider.CreateTimer(static s => ((CancellationTokenSource)s!).Cancel(), deadline,
            _options.RequestTimeout, Timeout.InfiniteTimeSpan); // the network's clock: virtual time in the lab
        var token = deadline.Token;
        var buffer = new byte[UpnpHttpHead.MaxHeadBytes + UpnpHttpHandler.MaxBodyBytes];
        try
        {
            var stream = connection.Stream;
            var filled = 0;
            int end;
            while ((end = UpnpHttpHead.FindEnd(buffer.AsSpan(0, filled))) == -1)
            {
                var n = await stream.ReadAsync(buffer.AsMemory(filled, UpnpHttpHead.MaxHeadBytes - filled), token);
                if (n == 0)
                {
                    return;
                }

                filled += n;
            }

            byte[] answer;
            if (end < 0 || !UpnpHttpHead.TryParse(buffer.AsSpan(0, filled), out var head))
            {
                answer = _handler.Status(end == -2 ? 431 : 400, end == -2 ? "Request Header Fields Too Large" : "Bad Request");
            }
            else if (head.ContentLength > UpnpHttpHandler.MaxBodyBytes)
            {
                answer = _handler.Status(413, "Content Too Large");
            }
            else
            {
                var total = head.Length + (int)Math.Max(0, head.ContentLength);
                while (filled < total)
                {
                    var n = await stream.ReadAsync(buffer.AsMemory(filled, total - filled), token);
                    if (n == 0)
                    {
                        return;
                    }

                    filled += n;
                }

                Ipv4Address.TryFromIPAddress(connection.RemoteEndPoint.Address, out var source);
                var length = (int)Math.Max(0, head.ContentLength);
                var body = buffer.AsMemory(head.Length, length);
                answer = await _engine(now => _handler.Handle(head, body.Span, source, now));
            }

            await stream.WriteAsync(answer, token);
            await stream.FlushAsync(token);
            Interlocked.Increment(ref _requestsServed);
        }
        catch (Exception e) when (e is IOException or NetworkException or OperationCanceledException or ObjectDisposedException)
        {
            // The client went away or was too slow: nothing to answer.
        }
        finally
        {
            Interlocked.Decrement(ref _connections);
            await CloseQuietlyAsync(connection);
        }
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

    /// <summary>Says ssdp:byebye, stops answering and closes the sockets.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        await _announcer.DisposeAsync();
        Announce(alive: false);
        _stop.Cancel(); // synchronously: in the lab, callbacks must stay on its loop
        await _http.DisposeAsync();
        await _ssdp.DisposeAsync();
        try
        {
            await Task.WhenAll(_ssdpLoop, _acceptLoop);
        }
        catch (OperationCanceledException)
        {
        }

        _stop.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "UPnP IGD: description at {Url}, SSDP on 239.255.255.250:1900")]
    private static partial void LogStarted(ILogger logger, Uri url);

    [LoggerMessage(Level = LogLevel.Warning, Message = "SSDP receive failed: {Reason}")]
    private static partial void LogReceiveFailed(ILogger logger, string reason);
}
