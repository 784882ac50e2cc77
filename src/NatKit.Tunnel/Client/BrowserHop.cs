using System.Net;
using System.Net.WebSockets;
using System.Threading.Channels;
using NatKit.Tunnel.Server;

namespace NatKit.Tunnel.Client;

/// <summary>
/// The client's end of the browser hop: a browser on the LAN cannot accept a connection, so the client listens and the
/// relay page (<see cref="RelayPage"/>, opened in the browser with <c>?client=ws://THIS/tunnel</c>) connects to it and
/// opens a new WebSocket to the server for it. Each page connection is one link of the client's session; the page
/// makes a new one after a link ends, and the client's reconnect takes it.
/// </summary>
public sealed class BrowserHop : IAsyncDisposable
{
    private readonly Channel<(WebSocket Socket, TaskCompletionSource Done)> _waiting =
        Channel.CreateBounded<(WebSocket, TaskCompletionSource)>(4);
    private TunnelEndpoint? _endpoint;

    private BrowserHop()
    {
    }

    /// <summary>Where the page is to connect.</summary>
    public IReadOnlyList<string> Urls => _endpoint?.Urls ?? [];

    /// <summary>Listens on <paramref name="listen"/> for the page's WebSockets (and serves the page at /relay.html).</summary>
    public static async Task<BrowserHop> StartAsync(IReadOnlyList<IPEndPoint> listen, CancellationToken cancellationToken = default)
    {
        var hop = new BrowserHop();
        hop._endpoint = await TunnelEndpoint.StartAsync(hop.ServeAsync, TimeSpan.FromSeconds(10), listen, null,
            cancellationToken: cancellationToken).ConfigureAwait(false);
        return hop;
    }

    /// <summary>Holds a page's WebSocket open until the client's link on it has ended.</summary>
    private async Task ServeAsync(WebSocket socket, IPEndPoint? remote, CancellationToken cancellationToken)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!_waiting.Writer.TryWrite((socket, done)))
        {
            return; // pages enough are waiting already
        }

        using var registration = cancellationToken.Register(() => done.TrySetResult());
        await done.Task.ConfigureAwait(false);
    }

    /// <summary>The next page connection; the returned Release is to be called when the link on it ended.</summary>
    internal async Task<(WebSocket Socket, Action Release)> AcceptAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var (socket, done) = await _waiting.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            if (socket.State == WebSocketState.Open)
            {
                return (socket, () => done.TrySetResult());
            }

            done.TrySetResult(); // the page gave up on it meanwhile
        }
    }

    public async ValueTask DisposeAsync()
    {
        _waiting.Writer.TryComplete();
        while (_waiting.Reader.TryRead(out var w))
        {
            w.Done.TrySetResult();
        }

        if (_endpoint is not null)
        {
            await _endpoint.DisposeAsync().ConfigureAwait(false);
        }
    }
}
