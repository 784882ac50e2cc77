using System.Buffers;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
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
/// The client end of the tunnel: a TUN device with the address the server assigns, the chosen routes through it,
/// and one WebSocket to the server (directly or through relays) that is reopened with backoff whenever it ends. A
/// reconnect presents the session id of the welcome, so the server gives back the same address and keeps its flows;
/// nothing queued on a link that ended is sent on the next one. Packets move between the TUN device and the link on a
/// <see cref="GatewayDataPlane"/> thread without a NAT (the server does the NAT).
/// </summary>
public sealed class TunnelClient : IAsyncDisposable
{
    private readonly TunnelClientOptions _options;
    private readonly TimeProvider _time;
    private readonly LinkPort _port = new();
    private TunDevice? _tun;
    private GatewayDataPlane? _dataPlane;
    private string? _serverRoute;
    private Guid _session;
    private Ipv4Address _address;

    public TunnelClient(TunnelClientOptions options, TimeProvider? time = null)
    {
        _options = options ?? throw new ArgumentNullException(nameof(options));
        _time = time ?? TimeProvider.System;
    }

    /// <summary>Called with each welcome (the first and every reconnect's).</summary>
    public Action<TunnelWelcome>? Connected { get; set; }

    /// <summary>Called when a link ends or a connection attempt fails, with one sentence.</summary>
    public Action<string>? Disconnected { get; set; }

    /// <summary>Connections made (the first one and the reconnects).</summary>
    public int Connections { get; private set; }

    /// <summary>The data plane's counters, once the first welcome set the TUN device up.</summary>
    public GatewayStats? Stats => _dataPlane?.Stats;

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
            socket = await TunnelSockets.ConnectAsync(_options.Server, _options.Insecure, null, cancellationToken)
                .ConfigureAwait(false);
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

        var link = new TunnelLink(socket, (welcome.Features & TunnelFeatures.Offloads) != 0, _time);
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

    /// <summary>The first welcome creates and configures the TUN device and starts the data plane; a later one with a
    /// new address (the old one's grace ran out) moves the device to it.</summary>
    private async Task SetUpAsync(TunnelWelcome welcome, CancellationToken cancellationToken)
    {
        var name = _options.TunName;
        if (_tun is null)
        {
            await KeepServerRouteAsync(cancellationToken).ConfigureAwait(false);
            _tun = TunDevice.Open(new TunOptions(name, _options.Offloads ? TunOffloads.All : TunOffloads.None));
            DisableIpv6(name);
            await Ip(cancellationToken, "link", "set", "dev", name, "mtu", welcome.Mtu.ToString(CultureInfo.InvariantCulture), "up").ConfigureAwait(false);
            await Ip(cancellationToken, "addr", "replace", welcome.AddressWithPrefix, "dev", name).ConfigureAwait(false);
            foreach (var route in _options.Routes ?? welcome.Routes)
            {
                if (route.Length == 0)
                {
                    await Ip(cancellationToken, "route", "replace", "0.0.0.0/1", "dev", name).ConfigureAwait(false);
                    await Ip(cancellationToken, "route", "replace", "128.0.0.0/1", "dev", name).ConfigureAwait(false);
                }
                else
                {
                    await Ip(cancellationToken, "route", "replace", route.ToString(), "dev", name).ConfigureAwait(false);
                }
            }

            _dataPlane = new GatewayDataPlane(null, new TunPort(_tun), _port);
            _dataPlane.Start();
            _address = welcome.Address;
            return;
        }

        if (welcome.Address != _address)
        {
            await Ip(cancellationToken, "addr", "flush", "dev", name).ConfigureAwait(false);
            await Ip(cancellationToken, "addr", "replace", welcome.AddressWithPrefix, "dev", name).ConfigureAwait(false);
            _address = welcome.Address;
        }
    }

    /// <summary>Pins the route to the server (as it is before the tunnel's routes go in) with a host route, so a default
    /// route through the tunnel does not swallow the tunnel's own connection.</summary>
    private async Task KeepServerRouteAsync(CancellationToken cancellationToken)
    {
        var wantsDefault = (_options.Routes ?? []).Any(r => r.Length == 0) || _options.Routes is null;
        if (!wantsDefault)
        {
            return;
        }

        var address = _options.Server.Address;
        if (address is null)
        {
            var addresses = await Dns.GetHostAddressesAsync(_options.Server.Host, AddressFamily.InterNetwork, cancellationToken).ConfigureAwait(false);
            address = addresses.FirstOrDefault();
        }

        if (address is null || IPAddress.IsLoopback(address) || address.AddressFamily != AddressFamily.InterNetwork)
        {
            return;
        }

        var (code, output, _) = await SystemCommand.TryRunAsync("ip", ["-o", "route", "get", address.ToString()], cancellationToken).ConfigureAwait(false);
        var words = output.Split([' ', '\t', '\\'], StringSplitOptions.RemoveEmptyEntries);
        var via = Array.IndexOf(words, "via");
        var dev = Array.IndexOf(words, "dev");
        if (code != 0 || via < 0 || dev < 0 || dev + 1 >= words.Length)
        {
            return; // on a connected network (or no route at all): nothing to keep
        }

        _serverRoute = $"{address}/32";
        await Ip(cancellationToken, "route", "replace", _serverRoute, "via", words[via + 1], "dev", words[dev + 1]).ConfigureAwait(false);
    }

    /// <summary>The tunnel carries IPv4 only: the device gets no IPv6 link-local address and sends no router
    /// solicitations (which the server would count as spoofed).</summary>
    private static void DisableIpv6(string device)
    {
        try
        {
            File.WriteAllText($"/proc/sys/net/ipv6/conf/{device}/disable_ipv6", "1");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // a kernel without IPv6: nothing to disable
        }
    }

    private static Task<string> Ip(CancellationToken cancellationToken, params string[] arguments) =>
        SystemCommand.RunAsync("ip", arguments, cancellationToken);

    public async ValueTask DisposeAsync()
    {
        if (_dataPlane is not null)
        {
            await _dataPlane.DisposeAsync().ConfigureAwait(false);
        }

        _tun?.Dispose(); // the device and its routes go with it
        if (_serverRoute is not null)
        {
            _ = await SystemCommand.TryRunAsync("ip", ["route", "del", _serverRoute], CancellationToken.None).ConfigureAwait(false);
        }
    }
}
