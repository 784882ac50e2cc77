using System.Buffers;
using System.Net.WebSockets;
using NatKit.Linux;
using NatKit.Nat.Ports;
using NatKit.Packets;
using NatKit.Tunnel.Framing;
using NatKit.Tunnel.Link;
using NatKit.Tunnel.Transport;

namespace NatKit.Tunnel.Client;

/// <summary>A tunnel client's configuration.</summary>
public sealed record TunnelClientOptions
{
    /// <summary>The server's (or a relay's) WebSocket URL.</summary>
    public required TunnelUri Server { get; init; }

    /// <summary>The token the server expects.</summary>
    public required string Token { get; init; }

    /// <summary>The TUN device to create.</summary>
    public string TunName { get; init; } = "natkit0";

    /// <summary>The inner address the client asks to keep (the server must allow it); Any takes one from the pool.</summary>
    public Ipv4Address RequestedAddress { get; init; } = Ipv4Address.Any;

    /// <summary>The routes to install through the tunnel; null installs every route the server offers. A default
    /// route (0.0.0.0/0) goes in as two /1 routes, after a host route that keeps the server reachable the old way.</summary>
    public IReadOnlyList<Ipv4Prefix>? Routes { get; init; }

    /// <summary>Open the TUN device with virtio-net offloads and carry super-packets whole when the server agrees.</summary>
    public bool Offloads { get; init; } = true;

    /// <summary>Accept any server certificate (a test server's self-signed one).</summary>
    public bool Insecure { get; init; }

    /// <summary>The first wait before a reconnect; it doubles on each failure up to <see cref="MaxBackoff"/>.</summary>
    public TimeSpan MinBackoff { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <inheritdoc cref="MinBackoff"/>
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Reach the server through a browser page instead of dialing it: each link is a WebSocket the page
    /// opened to this client (see <see cref="BrowserHop"/>).</summary>
    public BrowserHop? Browser { get; init; }

    /// <summary>How long the server has to answer a hello.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);
}

/// <summary>The server refused the hello (a wrong token, a version it does not speak, no free address).</summary>
public sealed class TunnelRefusedException : Exception
{
    public TunnelRefusedException(TunnelNotice notice)
        : base($"the tunnel server refused: {notice.Reason} ({notice.Code})")
    {
        Notice = notice;
    }

    public TunnelRefusedException()
    {
        Notice = new TunnelNotice(true, TunnelCode.None, "");
    }

    public TunnelRefusedException(string message)
        : base(message)
    {
        Notice = new TunnelNotice(true, TunnelCode.None, message);
    }

    public TunnelRefusedException(string message, Exception innerException)
        : base(message, innerException)
    {
        Notice = new TunnelNotice(true, TunnelCode.None, message);
    }

    public TunnelNotice Notice { get; }

    /// <summary>Refusals a retry cannot fix: the client stops instead of reconnecting.</summary>
    public bool IsFinal => Notice.Code is TunnelCode.Unauthorized or TunnelCode.VersionUnsupported or TunnelCode.AddressRefused;
}

/// <summary>
/// Where a tunnel client's own packets come from and go to: a TUN device with routes on a Linux machine
/// (<see cref="TunClientInside"/>), a lab port in the in-memory lab. It brings itself up with the first welcome and
/// runs a pump (without a NAT) between itself and the client's link port.
/// </summary>
public interface ITunnelClientInside : IAsyncDisposable
{
    /// <summary>The first welcome: take the assigned address and routes, and start pumping packets between the inside
    /// and <paramref name="link"/> (the current link, or none between two connections).</summary>
    Task StartAsync(TunnelWelcome welcome, ISignalingPacketPort link, CancellationToken cancellationToken);

    /// <summary>A later welcome whose address differs (the old one's grace ran out): move to it.</summary>
    Task MoveAsync(TunnelWelcome welcome, CancellationToken cancellationToken);
}

/// <summary>
/// The client end of the tunnel: an inside (a TUN device with the address the server assigns and the chosen routes,
/// or a lab port) and one WebSocket to the server (directly or through relays) that is reopened with backoff whenever
/// it ends. A reconnect presents the session id of the welcome, so the server gives back the same address and keeps
/// its flows; nothing queued on a link that ended is sent on the next one. Packets move between the inside and the
/// link on a pump without a NAT (the server does the NAT).
/// </summary>
public sealed class TunnelClient : IAsyncDisposable
{
    private readonly TunnelClientOptions _options;
    private readonly TimeProvider _time;
    private readonly ITunnelClientInside _inside;
    private readonly TunnelDialer _dial;
    private readonly SynchronizationContext? _loop;
    private readonly LinkPort _port = new();
    private bool _started;
    private Guid _session;
    private Ipv4Address _address;

    /// <param name="options">What to connect to, and how.</param>
    /// <param name="time">The clock (the lab's virtual one in the lab).</param>
    /// <param name="inside">Where the client's packets live; a TUN device (<see cref="TunClientInside"/>) if null.</param>
    /// <param name="dial">How WebSockets to the server are opened; the real network if null
    /// (<see cref="TunnelSockets.Dialer"/>), <see cref="TunnelSockets.Over"/> in the lab.</param>
    /// <param name="loop">Where the link's loops resume when the pump wakes them: null (the thread pool) for a Linux
    /// data-plane thread, the lab's loop in the lab.</param>
    public TunnelClient(TunnelClientOptions options, TimeProvider? time = null, ITunnelClientInside? inside = null,
        TunnelDialer? dial = null, SynchronizationContext? loop = null)
    {
        _options = options ?? throw new ArgumentNullException(nameof(options));
        _time = time ?? TimeProvider.System;
        _inside = inside ?? new TunClientInside(options);
        _dial = dial ?? TunnelSockets.Dialer(options.Insecure);
        _loop = loop;
    }

    /// <summary>Called with each welcome (the first and every reconnect's).</summary>
    public Action<TunnelWelcome>? Connected { get; set; }

    /// <summary>Called when a link ends or a connection attempt fails, with one sentence.</summary>
    public Action<string>? Disconnected { get; set; }

    /// <summary>Connections made (the first one and the reconnects).</summary>
    public int Connections { get; private set; }

    /// <summary>The data plane's counters, once the first welcome set the TUN device up (null for another inside).</summary>
    public GatewayStats? Stats => (_inside as TunClientInside)?.Stats;

    /// <summary>
    /// Sends the hello on <paramref name="socket"/> and reads the server's answer: its welcome, or a
    /// <see cref="TunnelRefusedException"/> for a refusal.
    /// </summary>
    /// <exception cref="WebSocketException">The connection ended, or the answer was neither a welcome nor a refusal.</exception>
    public static async Task<TunnelWelcome> HandshakeAsync(WebSocket socket, TunnelHello hello, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(socket);
        ArgumentNullException.ThrowIfNull(hello);
        var buffer = ArrayPool<byte>.Shared.Rent(Math.Max(hello.Length, 2048));
        try
        {
            var length = hello.Write(buffer);
            await socket.SendAsync(buffer.AsMemory(0, length), WebSocketMessageType.Binary, endOfMessage: true,
                cancellationToken).ConfigureAwait(false);
            length = await TunnelSockets.ReceiveMessageAsync(socket, buffer, cancellationToken).ConfigureAwait(false);
            if (length < 0)
            {
                throw new WebSocketException(WebSocketError.ConnectionClosedPrematurely,
                    "the server closed the connection instead of answering the hello");
            }

            var answer = buffer.AsSpan(0, length);
            if (TunnelMessage.Classify(answer) == TunnelMessageKind.Refused && TunnelNotice.TryParse(answer, out var notice, out _))
            {
                throw new TunnelRefusedException(notice);
            }

            return TunnelWelcome.TryParse(answer, out var welcome, out var error)
                ? welcome
                : throw new WebSocketException(WebSocketError.InvalidMessageType, "the server's answer to the hello: " + error);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// Connects, and reconnects whenever the link ends, until <paramref name="cancellationToken"/> ends it. Throws
    /// <see cref="TunnelRefusedException"/> for a refusal a retry cannot fix (a wrong token).
    /// </summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var backoff = _options.MinBackoff;
        while (!cancellationToken.IsCancellationRequested)
        {
            string reason;
            try
            {
                reason = await ConnectOnceAsync(cancellationToken).ConfigureAwait(false);
                backoff = _options.MinBackoff; // it was up: the next failure starts over
            }
            catch (TunnelRefusedException e) when (!e.IsFinal)
            {
                reason = e.Message;
            }
            catch (WebSocketException e)
            {
                reason = e.Message;
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (OperationCanceledException)
            {
                reason = "the server did not answer the hello in time";
            }

            Disconnected?.Invoke(reason);
            try
            {
                await Task.Delay(backoff, _time, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, _options.MaxBackoff.Ticks));
        }
    }

    /// <summary>One connection: handshake, set up (or keep) the TUN device, carry packets until the link ends.
    /// Returns why it ended.</summary>
    private async Task<string> ConnectOnceAsync(CancellationToken cancellationToken)
    {
        WebSocket socket;
        Action? release = null;
        if (_options.Browser is { } browser)
        {
            (socket, release) = await browser.AcceptAsync(cancellationToken).ConfigureAwait(false);
        }
        else
        {
            socket = await _dial(_options.Server, null, cancellationToken).ConfigureAwait(false);
        }

        try
        {
            return await RunLinkAsync(socket, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            release?.Invoke();
        }
    }

    private async Task<string> RunLinkAsync(WebSocket socket, CancellationToken cancellationToken)
    {
        TunnelWelcome welcome;
        try
        {
            using var timeout = new CancellationTokenSource(_options.HandshakeTimeout, _time);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
            var hello = new TunnelHello(TunnelMessage.Version, _options.Offloads ? TunnelFeatures.Offloads : TunnelFeatures.None,
                _session, _options.RequestedAddress, _options.Token);
            welcome = await HandshakeAsync(socket, hello, linked.Token).ConfigureAwait(false);
        }
        catch
        {
            socket.Abort();
            socket.Dispose();
            throw;
        }

        var link = new TunnelLink(socket, (welcome.Features & TunnelFeatures.Offloads) != 0, _time, loop: _loop);
        await SetUpAsync(welcome, cancellationToken).ConfigureAwait(false);
        _session = welcome.SessionId;
        Connections++;
        _port.Attach(link);
        Connected?.Invoke(welcome);

        var interval = TimeSpan.FromSeconds(Math.Max(1, welcome.KeepaliveSeconds));
        var silence = (long)(3 * interval.TotalSeconds * _time.TimestampFrequency);
        await using var keepalive = _time.CreateTimer(_ =>
        {
            if (_time.GetTimestamp() - link.LastReceived > silence)
            {
                link.Stop(); // the server (or a relay) went silent: reconnect
                return;
            }

            Span<byte> ping = stackalloc byte[TunnelMessage.PingLength];
            _ = link.TrySendControl(ping[..TunnelMessage.WritePing(ping, (ulong)_time.GetTimestamp())]);
        }, null, interval, interval);
        try
        {
            await link.RunAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _port.Attach(null);
        }

        return link.Goodbye is { } bye ? $"the server said goodbye: {bye.Reason}" : "the connection ended";
    }

    /// <summary>The first welcome brings the inside up; a later one with a new address (the old one's grace ran out)
    /// moves it.</summary>
    private async Task SetUpAsync(TunnelWelcome welcome, CancellationToken cancellationToken)
    {
        if (!_started)
        {
            await _inside.StartAsync(welcome, _port, cancellationToken).ConfigureAwait(false);
            _started = true;
            _address = welcome.Address;
            return;
        }

        if (welcome.Address != _address)
        {
            await _inside.MoveAsync(welcome, cancellationToken).ConfigureAwait(false);
            _address = welcome.Address;
        }
    }

    public ValueTask DisposeAsync() => _inside.DisposeAsync();
}
