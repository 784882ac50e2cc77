using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using NatKit.Net;
using NatKit.Proxy.Http;
using NatKit.Proxy.Socks;

namespace NatKit.Proxy;

/// <summary>Why a connection to an upstream could not be made.</summary>
internal enum DialFailure
{
    None,
    Forbidden,
    NotResolved,
    Refused,
    Unreachable,
    TimedOut,
}

internal readonly record struct DialResult(IStreamConnection? Connection, DialFailure Failure, string? Reason);

/// <summary>
/// The application-layer gateway: an HTTP/1.1 forward proxy (and optionally SOCKS5) over an <see cref="INetwork"/>.
/// Accepts clients from the allowed networks only, bounds what each may hold, and keeps every live flow in
/// <see cref="Connections"/>.
/// </summary>
public sealed partial class ProxyServer : IAsyncDisposable
{
    private readonly IStreamListener _http;
    private readonly IStreamListener? _socks;
    private readonly CancellationTokenSource _stop = new();
    private readonly CancellationTokenSource _draining = new();
    private readonly List<Task> _acceptLoops = [];
    private readonly TaskCompletionSource _drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _active;
    private long _responseRateViolations;
    private IReadOnlyList<IPNetwork> _allowedClients;
    private byte[]? _credentialBytes;

    private ProxyServer(ProxyOptions options, INetwork network, ILogger logger, IStreamListener http,
        IStreamListener? socks)
    {
        Options = options;
        Network = network;
        Logger = logger;
        _http = http;
        _socks = socks;
        _allowedClients = options.AllowedClients;
        Connections = new ConnectionTable(network.TimeProvider);
        Pool = new UpstreamPool(network.TimeProvider, options.MaxIdleUpstreamPerHost, options.MaxIdleUpstreamTotal,
            options.UpstreamIdleTimeout);
        _credentialBytes = options.Credentials is null ? null : Encoding.UTF8.GetBytes(options.Credentials);

        if (options.ParentCredentials is { } pc)
        {
            ParentAuthorization = Encoding.ASCII.GetBytes("Proxy-Authorization: Basic " +
                Convert.ToBase64String(Encoding.UTF8.GetBytes(pc.UserName + ":" + pc.Password)) + "\r\n");
        }

        Via11 = Encoding.ASCII.GetBytes($"Via: 1.1 {options.ViaName}\r\n");
        Via10 = Encoding.ASCII.GetBytes($"Via: 1.0 {options.ViaName}\r\n");
        StatusPathBytes = Encoding.ASCII.GetBytes(options.StatusPath);
    }

    public ProxyOptions Options { get; }

    /// <summary>Where the HTTP proxy listens (the chosen port when 0 was asked for).</summary>
    public IPEndPoint HttpEndPoint => _http.LocalEndPoint;

    public IPEndPoint? SocksEndPoint => _socks?.LocalEndPoint;

    /// <summary>Every live flow.</summary>
    public ConnectionTable Connections { get; }

    /// <summary>Client connections open now.</summary>
    public int ActiveConnections => Volatile.Read(ref _active);

    /// <summary>Client connections aborted because they took a response slower than
    /// <see cref="ProxyOptions.MinResponseDataRate"/>.</summary>
    public long ResponseRateViolations => Interlocked.Read(ref _responseRateViolations);

    internal INetwork Network { get; }

    internal ILogger Logger { get; }

    internal UpstreamPool Pool { get; }

    /// <summary>The credentials in force (<see cref="ProxyOptions.Credentials"/> until a <see cref="Reload"/>).</summary>
    internal byte[]? CredentialBytes => Volatile.Read(ref _credentialBytes);

    /// <summary>The client networks in force: <see cref="ProxyOptions.AllowedClients"/> until a
    /// <see cref="Reload"/>.</summary>
    public IReadOnlyList<IPNetwork> AllowedClients => Volatile.Read(ref _allowedClients);

    /// <summary>Cancelled when <see cref="DrainAsync"/> begins: idle keep-alive connections close on it.</summary>
    internal CancellationToken Draining => _draining.Token;

    /// <summary>The Proxy-Authorization field line sent to the parent proxy; empty without credentials.</summary>
    internal byte[] ParentAuthorization { get; } = [];

    internal byte[] Via11 { get; }

    internal byte[] Via10 { get; }

    internal byte[] StatusPathBytes { get; }

    internal TimeProvider Time => Network.TimeProvider;

    /// <summary>Starts listening. Throws <see cref="ArgumentException"/> for bad options and
    /// <see cref="NetworkException"/> when a port cannot be bound.</summary>
    public static async Task<ProxyServer> StartAsync(ProxyOptions options, INetwork network, ILogger? logger = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(network);
        options.Validate();
        var http = await network.ListenTcpAsync(options.HttpListen, 512, cancellationToken).ConfigureAwait(false);
        IStreamListener? socks = null;
        try
        {
            if (options.SocksListen is not null)
            {
                socks = await network.ListenTcpAsync(options.SocksListen, 512, cancellationToken).ConfigureAwait(false);
            }
        }
        catch
        {
            await http.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        try
        {
            ChooseCongestionControl(options, network, http);
            if (socks is not null)
            {
                ChooseCongestionControl(options, network, socks);
            }
        }
        catch
        {
            await http.DisposeAsync().ConfigureAwait(false);
            if (socks is not null)
            {
                await socks.DisposeAsync().ConfigureAwait(false);
            }

            throw;
        }

        var server = new ProxyServer(options, network, logger ?? NullLogger.Instance, http, socks);
        server._acceptLoops.Add(Task.Run(() => server.AcceptLoopAsync(http, socks: false), CancellationToken.None));
        if (socks is not null)
        {
            server._acceptLoops.Add(Task.Run(() => server.AcceptLoopAsync(socks, socks: true), CancellationToken.None));
        }

        return server;
    }

    /// <summary>Sets the configured congestion control on a listener, which passes it on to the connections it
    /// accepts; one sentence naming the option when the network or the kernel cannot.</summary>
    private static void ChooseCongestionControl(ProxyOptions options, INetwork network, IStreamListener listener)
    {
        if (options.CongestionControl is not { } algorithm)
        {
            return;
        }

        if (listener is not ITcpCongestionControl cc || network is not ITcpCongestionControlNetwork)
        {
            throw new ArgumentException("CongestionControl needs a network whose TCP sockets can choose it (the real network on Linux).",
                nameof(ProxyOptions.CongestionControl));
        }

        try
        {
            cc.SetCongestionControl(algorithm);
        }
        catch (NetworkException e)
        {
            throw new ArgumentException($"{e.Message}.", nameof(ProxyOptions.CongestionControl), e);
        }
    }

    /// <summary>Replaces the client networks and the credentials while serving (an operator's SIGHUP). Open
    /// connections and tunnels stay; the next connection is checked against the new networks, the next request
    /// (and the next SOCKS5 handshake) against the new credentials.</summary>
    /// <exception cref="ArgumentException">No client network is given, or the credentials are not user:password.</exception>
    public void Reload(IReadOnlyList<IPNetwork> allowedClients, string? credentials)
    {
        ArgumentNullException.ThrowIfNull(allowedClients);
        (Options with { AllowedClients = allowedClients, Credentials = credentials }).Validate();
        Volatile.Write(ref _allowedClients, allowedClients);
        Volatile.Write(ref _credentialBytes, credentials is null ? null : Encoding.UTF8.GetBytes(credentials));
        LogReloaded(Logger, string.Join(", ", allowedClients), credentials is null ? "none" : "set");
    }

    /// <summary>Stops accepting and lets the open connections finish, closing idle keep-alive ones at once, until
    /// none is left or <paramref name="timeout"/> passes on the server's clock. Returns how many were still open
    /// (<see cref="DisposeAsync"/> then cuts them).</summary>
    public async Task<int> DrainAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        await StopAcceptingAsync().ConfigureAwait(false);
        if (Volatile.Read(ref _active) > 0 && timeout > TimeSpan.Zero)
        {
            try
            {
                await _drained.Task.WaitAsync(timeout, Time, cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
            }
        }

        return Volatile.Read(ref _active);
    }

    /// <summary>Closes the listeners (the first step of <see cref="DrainAsync"/>): a new client is refused by the
    /// kernel from when this returns. Idempotent.</summary>
    public async Task StopAcceptingAsync()
    {
        if (_draining.IsCancellationRequested)
        {
            await Task.WhenAll(_acceptLoops).ConfigureAwait(false);
            return;
        }

        await _draining.CancelAsync().ConfigureAwait(false);
        await _http.DisposeAsync().ConfigureAwait(false);
        if (_socks is not null)
        {
            await _socks.DisposeAsync().ConfigureAwait(false);
        }

        await Task.WhenAll(_acceptLoops).ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        await StopAcceptingAsync().ConfigureAwait(false);
        await _stop.CancelAsync().ConfigureAwait(false);
        if (Volatile.Read(ref _active) > 0)
        {
            await _drained.Task.ConfigureAwait(false);
        }

        await Pool.DisposeAsync().ConfigureAwait(false);
        _stop.Dispose();
        _draining.Dispose();
    }

    internal void CountResponseRateViolation() => Interlocked.Increment(ref _responseRateViolations);

    /// <summary>The errors a connection can end with that are not bugs: resets, timeouts, shutdown.</summary>
    internal static bool IsConnectionError(Exception e) =>
        e is IOException or OperationCanceledException or ObjectDisposedException;

    internal bool IsAllowedClient(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }

        foreach (var network in AllowedClients)
        {
            if (network.Contains(address))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Destinations refused unless <see cref="ProxyOptions.AllowLoopbackDestinations"/>: loopback,
    /// unspecified, link-local, multicast and broadcast addresses.</summary>
    internal bool IsForbiddenDestination(IPAddress address)
    {
        if (Options.AllowLoopbackDestinations)
        {
            return false;
        }

        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }

        if (IPAddress.IsLoopback(address) || address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any) ||
            address.Equals(IPAddress.Broadcast))
        {
            return true;
        }

        if (address.AddressFamily == AddressFamily.InterNetwork)
        {
            Span<byte> b = stackalloc byte[4];
            address.TryWriteBytes(b, out _);
            return b[0] == 0 || (b[0] == 169 && b[1] == 254) || b[0] >= 224;
        }

        return address.IsIPv6LinkLocal || address.IsIPv6Multicast || address.IsIPv6SiteLocal;
    }

    /// <summary>Whether a SOCKS5 CONNECT or UDP datagram may go to <paramref name="port"/>:
    /// <see cref="ProxyOptions.SocksPorts"/>, or <see cref="ProxyOptions.ConnectPorts"/> when that is not set.</summary>
    internal bool SocksPortAllowed(int port) => (Options.SocksPorts ?? Options.ConnectPorts).Contains(port);

    /// <summary>True when <paramref name="address"/>:<paramref name="port"/> is this proxy: one of its listen
    /// ports on any address of this host (loopback, unspecified, a listen address, an interface's address). A
    /// tunnel to itself would nest without end, each level holding two connection slots.</summary>
    internal bool IsSelf(IPAddress address, int port)
    {
        if (port != _http.LocalEndPoint.Port && port != _socks?.LocalEndPoint.Port)
        {
            return false; // the common case: no interface list is read
        }

        address = Unscoped(address);
        if (IPAddress.IsLoopback(address) || address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any) ||
            address.Equals(Unscoped(_http.LocalEndPoint.Address)) ||
            (_socks is not null && address.Equals(Unscoped(_socks.LocalEndPoint.Address))))
        {
            return true;
        }

        foreach (var local in Network.LocalAddresses)
        {
            if (address.Equals(Unscoped(local)))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>The address without an IPv4-mapped form or an IPv6 scope, for comparing hosts.</summary>
    private static IPAddress Unscoped(IPAddress address) => address.IsIPv4MappedToIPv6 ? address.MapToIPv4()
        : address.AddressFamily == AddressFamily.InterNetworkV6 && address.ScopeId != 0
            ? new IPAddress(address.GetAddressBytes())
            : address;

    /// <summary>Resolves <paramref name="host"/> and connects to the first allowed address that answers,
    /// within the connect timeout. Never this proxy itself (<see cref="IsSelf"/>).</summary>
    internal async Task<DialResult> DialAsync(string host, int port, CancellationToken cancellationToken)
    {
        IPAddress[] addresses;
        if (IPAddress.TryParse(host, out var literal))
        {
            addresses = [literal];
        }
        else
        {
            try
            {
                addresses = await Options.Resolve(host, cancellationToken).ConfigureAwait(false);
            }
            catch (NetworkException e)
            {
                return new(null, DialFailure.NotResolved, $"cannot resolve {host}: {e.Error}");
            }
            catch (ArgumentException)
            {
                return new(null, DialFailure.NotResolved, $"cannot resolve {host}");
            }
        }

        using var timeout = new CancellationTokenSource(Options.ConnectTimeout, Time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, cancellationToken);
        var failure = DialFailure.Forbidden;
        string? reason = $"destination {host} is not allowed";
        foreach (var address in addresses)
        {
            if (IsForbiddenDestination(address))
            {
                continue;
            }

            if (IsSelf(address, port))
            {
                if (failure == DialFailure.Forbidden)
                {
                    reason = $"destination {host}:{port} is this proxy";
                }

                continue;
            }

            try
            {
                var remote = new IPEndPoint(address, port);
                var connection = Options.CongestionControl is { } algorithm
                    ? await ((ITcpCongestionControlNetwork)Network).ConnectTcpAsync(remote, null, algorithm, linked.Token)
                        .ConfigureAwait(false) // checked at start; chosen before the SYN so no BBR pacing lingers
                    : await Network.ConnectTcpAsync(remote, null, linked.Token).ConfigureAwait(false);
                return new(connection, DialFailure.None, null);
            }
            catch (OperationCanceledException) when (timeout.IsCancellationRequested)
            {
                return new(null, DialFailure.TimedOut, $"connecting to {host}:{port} timed out");
            }
            catch (NetworkException e)
            {
                failure = e.Error == SocketError.ConnectionRefused ? DialFailure.Refused : DialFailure.Unreachable;
                reason = $"cannot connect to {host}:{port}: {e.Error}";
            }
        }

        if (addresses.Length == 0)
        {
            return new(null, DialFailure.NotResolved, $"cannot resolve {host}");
        }

        return new(null, failure, reason);
    }

    private Task AcceptLoopAsync(IStreamListener listener, bool socks) =>
        StreamAcceptLoop.RunAsync(listener,
            connection => RunSessionAsync(connection, socks, Interlocked.Increment(ref _active)),
            serveFailed: (c, e) => LogSessionFailed(Logger, e, c.RemoteEndPoint), stop: _draining.Token);

    private async Task RunSessionAsync(IStreamConnection connection, bool socks, int active)
    {
        await Task.Yield();
        try
        {
            if (!IsAllowedClient(connection.RemoteEndPoint.Address))
            {
                LogRefusedClient(Logger, connection.RemoteEndPoint);
                if (!socks)
                {
                    await HttpProxySession.SendRefusalAsync(connection, 403, "client not allowed", Time)
                        .ConfigureAwait(false);
                }

                return;
            }

            if (active > Options.MaxConnections)
            {
                if (!socks)
                {
                    await HttpProxySession.SendRefusalAsync(connection, 503, "too many connections", Time)
                        .ConfigureAwait(false);
                }

                return;
            }

            if (socks)
            {
                await new Socks5Session(this, connection, _stop.Token).RunAsync().ConfigureAwait(false);
            }
            else
            {
                await new HttpProxySession(this, connection, _stop.Token).RunAsync().ConfigureAwait(false);
            }
        }
        catch (Exception e) when (IsConnectionError(e))
        {
        }
#pragma warning disable CA1031 // a bug in one session must not take the server down; it is logged
        catch (Exception e)
#pragma warning restore CA1031
        {
            LogSessionFailed(Logger, e, connection.RemoteEndPoint);
        }
        finally
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            if (Interlocked.Decrement(ref _active) == 0 && _draining.IsCancellationRequested)
            {
                _drained.TrySetResult();
            }
        }
    }

    [LoggerMessage(EventId = 1, Level = LogLevel.Information,
        Message = "{Client} {Method} {Target} {Status} up={BytesUp} down={BytesDown} {Milliseconds}ms")]
    internal static partial void LogAccess(ILogger logger, IPEndPoint client, string method, string target,
        int status, long bytesUp, long bytesDown, long milliseconds);

    [LoggerMessage(EventId = 2, Level = LogLevel.Warning, Message = "refused client {Client}: not in the allowed networks")]
    private static partial void LogRefusedClient(ILogger logger, IPEndPoint client);

    [LoggerMessage(EventId = 3, Level = LogLevel.Error, Message = "session with {Client} failed")]
    private static partial void LogSessionFailed(ILogger logger, Exception e, IPEndPoint client);

    [LoggerMessage(EventId = 4, Level = LogLevel.Information, Message = "{Client} refused: {Status} {Reason}")]
    internal static partial void LogRefusedRequest(ILogger logger, IPEndPoint client, int status, string reason);

    [LoggerMessage(EventId = 6, Level = LogLevel.Information,
        Message = "reloaded: clients allowed from [{Networks}]; credentials {Credentials}")]
    private static partial void LogReloaded(ILogger logger, string networks, string credentials);

    [LoggerMessage(EventId = 5, Level = LogLevel.Warning,
        Message = "{Client} {Method} {Target}: the response was read slower than {BytesPerSecond} bytes/s; connection aborted")]
    internal static partial void LogSlowResponseReader(ILogger logger, IPEndPoint client, string method, string target,
        double bytesPerSecond);

}
