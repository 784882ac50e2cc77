using System.Net;
using System.Net.WebSockets;
using NatKit.Net;
using NatKit.Tunnel.Server;

namespace NatKit.Tunnel.Transport;

/// <summary>
/// A tunnel server's or relay's endpoint on any <see cref="INetwork"/>'s TCP listener with NatKit's own WebSocket
/// handshake (<see cref="WebSocketHandshake"/>), so the whole chain runs in the in-memory lab, where Kestrel cannot:
/// upgrades on the path go to the serving function, <c>/relay.html</c> is the browser page, anything else gets its
/// HTTP error. Plain ws:// only; the public endpoint on a real machine is <see cref="TunnelEndpoint"/> (Kestrel, TLS).
/// </summary>
internal sealed class TunnelStreamEndpoint : IAsyncDisposable
{
    private readonly IStreamListener _listener;
    private readonly Func<WebSocket, IPEndPoint?, CancellationToken, Task> _serve;
    private readonly string _path;
    private readonly TimeSpan _headTimeout;
    private readonly TimeProvider _time;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;

    private TunnelStreamEndpoint(IStreamListener listener, Func<WebSocket, IPEndPoint?, CancellationToken, Task> serve,
        string path, TimeSpan headTimeout, TimeProvider time)
    {
        _listener = listener;
        _serve = serve;
        _path = path;
        _headTimeout = headTimeout;
        _time = time;
        _accepting = AcceptLoopAsync();
    }

    /// <summary>Where it listens.</summary>
    public IPEndPoint LocalEndPoint => _listener.LocalEndPoint;

    /// <summary>Its WebSocket URL.</summary>
    public TunnelUri Uri => new(false, LocalEndPoint.Address.ToString(), LocalEndPoint.Port, _path);

    /// <summary>Serves <paramref name="server"/>'s sessions on <paramref name="listen"/> of <paramref name="network"/>.</summary>
    public static ValueTask<TunnelStreamEndpoint> StartAsync(INetwork network, IPEndPoint listen, TunnelServer server,
        string path = "/tunnel", CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(server);
        return StartAsync(network, listen, server.ServeAsync, server.Options.HelloTimeout, path, cancellationToken);
    }

    /// <summary>Serves every WebSocket upgrade on <paramref name="path"/> with <paramref name="serve"/> (a relay's
    /// hop); a request head must arrive within <paramref name="headTimeout"/>.</summary>
    public static async ValueTask<TunnelStreamEndpoint> StartAsync(INetwork network, IPEndPoint listen,
        Func<WebSocket, IPEndPoint?, CancellationToken, Task> serve, TimeSpan headTimeout, string path = "/tunnel",
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(network);
        ArgumentNullException.ThrowIfNull(serve);
        var listener = await network.ListenTcpAsync(listen, cancellationToken: cancellationToken).ConfigureAwait(false);
        return new TunnelStreamEndpoint(listener, serve, path, headTimeout, network.TimeProvider);
    }

    private Task AcceptLoopAsync() => // plain awaits inside, as TunnelSockets.Over's connect
        StreamAcceptLoop.RunAsync(_listener, connection => ServeConnectionAsync(connection, _stop.Token), stop: _stop.Token);

    /// <summary>One connection: the request head within the timeout, then the WebSocket until it ends, or an HTTP
    /// answer and close. Never throws for what the peer does.</summary>
    private async Task ServeConnectionAsync(IStreamConnection connection, CancellationToken token)
    {
        try
        {
            HttpRequestHead? head;
            using (var deadline = new CancellationTokenSource(_headTimeout, _time))
            using (var linked = CancellationTokenSource.CreateLinkedTokenSource(token, deadline.Token))
            {
                head = await WebSocketHandshake.ReadRequestAsync(connection.Stream, linked.Token).ConfigureAwait(false);
            }

            var stream = connection.Stream;
            if (head is null)
            {
                await WebSocketHandshake.RespondAsync(stream, 400, "Bad Request", "text/plain", "not an HTTP/1.1 request\n"u8.ToArray(), token)
                    .ConfigureAwait(false);
            }
            else if (head.Path == "/relay.html" && head.Method == "GET")
            {
                await WebSocketHandshake.RespondAsync(stream, 200, "OK", "text/html; charset=utf-8", RelayPage.Bytes, token)
                    .ConfigureAwait(false);
            }
            else if (head.Path != _path)
            {
                await WebSocketHandshake.RespondAsync(stream, 404, "Not Found", "text/plain", "no such path\n"u8.ToArray(), token)
                    .ConfigureAwait(false);
            }
            else if (!head.IsWebSocketUpgrade)
            {
                await WebSocketHandshake.RespondAsync(stream, 426, "Upgrade Required", "text/plain",
                    "a WebSocket endpoint: connect with natkit tunnel connect\n"u8.ToArray(), token, "Upgrade: websocket\r\n").ConfigureAwait(false);
            }
            else if (await WebSocketHandshake.AcceptAsync(stream, head, token).ConfigureAwait(false) is { } socket)
            {
                await _serve(socket, connection.RemoteEndPoint, token).ConfigureAwait(false); // it disposes the socket
            }
        }
        catch (Exception e) when (e is IOException or NetworkException or OperationCanceledException or ObjectDisposedException or WebSocketException)
        {
            // the peer went away or was too slow: nothing to answer
        }
        finally
        {
            await connection.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Stops accepting and ends the connections' serving (a graceful stop is the server's own).</summary>
    public async ValueTask DisposeAsync()
    {
        _stop.Cancel(); // not CancelAsync: its callbacks would leave the lab's loop
        await _listener.DisposeAsync().ConfigureAwait(false);
        await _accepting.ConfigureAwait(false);
        _stop.Dispose();
    }
}
