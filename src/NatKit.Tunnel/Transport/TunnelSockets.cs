using System.Net;
using System.Net.Security;
using System.Net.WebSockets;
using NatKit.Net;
using NatKit.Tunnel.Framing;

namespace NatKit.Tunnel.Transport;

/// <summary>Opens a WebSocket to <paramref name="uri"/> with <paramref name="headers"/> in the upgrade request: a
/// client's to its relay or server, a relay's to the next hop. See <see cref="TunnelSockets.Dialer"/> (the real
/// network, TLS included) and <see cref="TunnelSockets.Over"/> (any <see cref="INetwork"/>, the lab's too).</summary>
/// <exception cref="WebSocketException">The other end could not be reached or did not accept the upgrade.</exception>
public delegate Task<WebSocket> TunnelDialer(TunnelUri uri, IEnumerable<KeyValuePair<string, string>>? headers,
    CancellationToken cancellationToken);

/// <summary>Opens the tunnel's WebSockets on the real network (the client's, and a relay's to the server).</summary>
public static class TunnelSockets
{
    /// <summary>
    /// Connects to <paramref name="uri"/> asking for the tunnel's subprotocol, with no automatic pings (the tunnel
    /// has its own keepalive) and no proxy from the environment. <paramref name="insecure"/> accepts any server
    /// certificate (a test server's self-signed one); <paramref name="headers"/> go into the upgrade request.
    /// </summary>
    /// <exception cref="WebSocketException">The server could not be reached or did not accept the upgrade.</exception>
    public static async Task<WebSocket> ConnectAsync(TunnelUri uri, bool insecure = false,
        IEnumerable<KeyValuePair<string, string>>? headers = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(uri);
        var socket = new ClientWebSocket();
        try
        {
            socket.Options.AddSubProtocol(TunnelMessage.SubProtocol);
            socket.Options.KeepAliveInterval = TimeSpan.Zero;
            socket.Options.Proxy = null;
            if (insecure)
            {
                socket.Options.RemoteCertificateValidationCallback = static (_, _, _, _) => true;
            }
            else
            {
                socket.Options.RemoteCertificateValidationCallback = static (_, _, _, errors) => errors == SslPolicyErrors.None;
            }

            foreach (var (name, value) in headers ?? [])
            {
                socket.Options.SetRequestHeader(name, value);
            }

            await socket.ConnectAsync(new Uri(uri.ToString()), cancellationToken).ConfigureAwait(false);
            return socket;
        }
        catch (Exception e) when (e is HttpRequestException or IOException or System.Security.Authentication.AuthenticationException)
        {
            socket.Dispose();
            throw new WebSocketException(WebSocketError.Faulted, $"{uri}: {e.Message}", e);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Dials with <see cref="ConnectAsync"/> (ClientWebSocket: the real network, ws:// and wss://).</summary>
    public static TunnelDialer Dialer(bool insecure = false) =>
        (uri, headers, cancellationToken) => ConnectAsync(uri, insecure, headers, cancellationToken);

    /// <summary>
    /// Dials over <paramref name="network"/>'s TCP streams with NatKit's own handshake
    /// (<see cref="WebSocketHandshake"/>), so the tunnel's WebSockets run in the in-memory lab. ws:// to an IP
    /// literal only: TLS over NatKit.Net's streams is not done (SslStream's continuations leave the lab's loop).
    /// </summary>
    public static TunnelDialer Over(INetwork network)
    {
        ArgumentNullException.ThrowIfNull(network);
        return async (uri, headers, cancellationToken) =>
        {
            if (uri.Secure || uri.Address is not { } address)
            {
                throw new WebSocketException(WebSocketError.Faulted,
                    $"{uri}: over NatKit.Net's streams the tunnel dials ws:// to an IP address only");
            }

            IStreamConnection connection;
            try
            {
                // a plain await: in the lab the connect completes under the lab's context, and a ConfigureAwait(false)
                // continuation would then be handed to the thread pool (docs/lab.md, rule 3); on real sockets there
                // is no context and the two are the same
                connection = await network.ConnectTcpAsync(new IPEndPoint(address, uri.Port), null, cancellationToken);
            }
            catch (NetworkException e)
            {
                throw new WebSocketException(WebSocketError.Faulted, $"{uri}: {e.Message}", e);
            }

            try
            {
                return await WebSocketHandshake.ConnectAsync(connection.Stream, uri, headers, cancellationToken)
                    .ConfigureAwait(false);
            }
            catch
            {
                await connection.DisposeAsync().ConfigureAwait(false);
                throw;
            }
        };
    }

    /// <summary>Reads one whole binary message of at most <paramref name="buffer"/>'s length; its length, or -1 when
    /// the connection closed or the message was too long or not binary.</summary>
    public static async Task<int> ReceiveMessageAsync(WebSocket socket, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(socket);
        var length = 0;
        while (true)
        {
            if (length == buffer.Length)
            {
                return -1;
            }

            var result = await socket.ReceiveAsync(buffer[length..], cancellationToken).ConfigureAwait(false);
            if (result.MessageType != WebSocketMessageType.Binary)
            {
                return -1;
            }

            length += result.Count;
            if (result.EndOfMessage)
            {
                return length;
            }
        }
    }

    /// <summary>The address the X-Forwarded-For header of a relay names (the relay's own client).</summary>
    internal static string ForwardedFor(IPEndPoint? remote) => remote?.Address.ToString() ?? "unknown";
}
