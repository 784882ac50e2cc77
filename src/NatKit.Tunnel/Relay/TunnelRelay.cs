using System.Buffers;
using System.Net;
using System.Net.WebSockets;
using NatKit.Tunnel.Framing;
using NatKit.Tunnel.Transport;

namespace NatKit.Tunnel.Relay;

/// <summary>A relay's counters.</summary>
public sealed record TunnelRelayStats(int Active, long Accepted, long UpstreamFailures, long MessagesIn, long MessagesOut);

/// <summary>
/// The LAN hop: each client's WebSocket gets a new WebSocket of its own to the server (the reference's chain client
/// -> WebSocket -> relay -> new WebSocket -> server), so every client keeps its own session, its own hello and token
/// and its own reconnects. Messages are copied whole in both directions without being read: the relay needs no
/// token and holds no state a reconnect could miss. When either side ends, the other is closed.
/// </summary>
public sealed class TunnelRelay
{
    private readonly TunnelUri _upstream;
    private readonly TunnelDialer _dial;
    private readonly TimeProvider _time;
    private readonly int _maxClients;
    private int _active;
    private long _accepted;
    private long _upstreamFailures;
    private long _messagesIn;
    private long _messagesOut;

    /// <param name="upstream">The server's (or the next relay's) WebSocket URL.</param>
    /// <param name="insecure">Accept any certificate from it.</param>
    /// <param name="maxClients">Most clients relayed at once; more are closed at once.</param>
    /// <param name="dial">How the new WebSockets are opened; <see cref="TunnelSockets.Dialer"/> (the real network)
    /// if null, <see cref="TunnelSockets.Over"/> in the lab.</param>
    /// <param name="time">The clock for close timeouts (the lab's virtual one in the lab).</param>
    public TunnelRelay(TunnelUri upstream, bool insecure = false, int maxClients = 1024, TunnelDialer? dial = null,
        TimeProvider? time = null)
    {
        _upstream = upstream ?? throw new ArgumentNullException(nameof(upstream));
        _dial = dial ?? TunnelSockets.Dialer(insecure);
        _time = time ?? TimeProvider.System;
        _maxClients = maxClients > 0 ? maxClients : throw new ArgumentOutOfRangeException(nameof(maxClients));
    }

    public TunnelUri Upstream => _upstream;

    public TunnelRelayStats Stats => new(Volatile.Read(ref _active), Volatile.Read(ref _accepted),
        Volatile.Read(ref _upstreamFailures), Volatile.Read(ref _messagesIn), Volatile.Read(ref _messagesOut));

    /// <summary>Relays one client's WebSocket until either side ends. Never throws for what a peer does.</summary>
    public async Task ServeAsync(WebSocket client, IPEndPoint? remote, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(client);
        if (Interlocked.Increment(ref _active) > _maxClients)
        {
            Interlocked.Decrement(ref _active);
            await CloseQuietlyAsync(client, WebSocketCloseStatus.EndpointUnavailable, cancellationToken).ConfigureAwait(false);
            return;
        }

        Interlocked.Increment(ref _accepted);
        WebSocket? server = null;
        try
        {
            try
            {
                server = await _dial(_upstream, [new("X-Forwarded-For", TunnelSockets.ForwardedFor(remote))],
                    cancellationToken).ConfigureAwait(false);
            }
            catch (WebSocketException)
            {
                Interlocked.Increment(ref _upstreamFailures);
                await CloseQuietlyAsync(client, WebSocketCloseStatus.EndpointUnavailable, cancellationToken).ConfigureAwait(false);
                return;
            }

            using var done = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var up = CopyAsync(client, server, true, done);
            var down = CopyAsync(server, client, false, done);
            await up.ConfigureAwait(false);
            await down.ConfigureAwait(false);
        }
        finally
        {
            server?.Abort();
            server?.Dispose();
            client.Abort();
            Interlocked.Decrement(ref _active);
        }
    }

    /// <summary>Copies whole binary messages from <paramref name="from"/> to <paramref name="to"/> until one ends, then
    /// cancels the other direction.</summary>
    private async Task CopyAsync(WebSocket from, WebSocket to, bool upstream, CancellationTokenSource done)
    {
        try
        {
            while (true)
            {
                // a zero-byte read first: an idle client holds no buffer
                var first = await from.ReceiveAsync(Memory<byte>.Empty, done.Token).ConfigureAwait(false);
                if (first.MessageType == WebSocketMessageType.Close)
                {
                    await CloseQuietlyAsync(to, WebSocketCloseStatus.NormalClosure, done.Token).ConfigureAwait(false);
                    return;
                }

                var buffer = ArrayPool<byte>.Shared.Rent(TunnelMessage.MaxMessage);
                try
                {
                    var length = await TunnelSockets.ReceiveMessageAsync(from, buffer.AsMemory(0, TunnelMessage.MaxMessage), done.Token)
                        .ConfigureAwait(false);
                    if (length < 0)
                    {
                        await CloseQuietlyAsync(to, WebSocketCloseStatus.NormalClosure, done.Token).ConfigureAwait(false);
                        return;
                    }

                    await to.SendAsync(buffer.AsMemory(0, length), WebSocketMessageType.Binary, endOfMessage: true, done.Token)
                        .ConfigureAwait(false);
                    Interlocked.Increment(ref upstream ? ref _messagesOut : ref _messagesIn);
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                }
            }
        }
        catch (Exception e) when (e is WebSocketException or IOException or OperationCanceledException or ObjectDisposedException)
        {
        }
        finally
        {
            done.Cancel(); // not CancelAsync: its callbacks would leave the lab's loop
        }
    }

    private async Task CloseQuietlyAsync(WebSocket socket, WebSocketCloseStatus status, CancellationToken cancellationToken)
    {
        try
        {
            using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(2), _time);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, deadline.Token);
            await socket.CloseOutputAsync(status, null, timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is WebSocketException or IOException or OperationCanceledException or ObjectDisposedException)
        {
        }
    }
}
