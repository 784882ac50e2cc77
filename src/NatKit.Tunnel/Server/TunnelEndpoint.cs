using System.Net;
using System.Net.WebSockets;
using System.Reflection;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;
using NatKit.Tunnel.Framing;

namespace NatKit.Tunnel.Server;

/// <summary>
/// The public endpoint of a tunnel server or relay on ASP.NET Core Kestrel: WebSocket upgrades on <c>path</c> go to
/// the serving function (<see cref="TunnelServer.ServeAsync"/>, or a relay's); <c>/relay.html</c> is the browser
/// relay page (<see cref="RelayPage"/>). TLS with a certificate, or plain HTTP for a deployment behind a
/// TLS-terminating front.
/// </summary>
public sealed class TunnelEndpoint : IAsyncDisposable
{
    private readonly WebApplication _app;

    private readonly string? _control;

    private TunnelEndpoint(WebApplication app, IReadOnlyList<string> urls, string? control)
    {
        _app = app;
        Urls = urls;
        _control = control;
    }

    /// <summary>Where it listens, as URLs (ws:// or wss://).</summary>
    public IReadOnlyList<string> Urls { get; }

    /// <summary>Starts Kestrel on <paramref name="listen"/> (port 0 takes a free port; <see cref="Urls"/> says which).</summary>
    /// <param name="server">The tunnel server.</param>
    /// <param name="listen">Where to listen.</param>
    /// <param name="certificate">TLS certificate, or null for plain HTTP.</param>
    /// <param name="path">The WebSocket path.</param>
    /// <param name="control">A Unix socket for <c>GET /sessions</c>, <c>/flows</c> and <c>/stats</c> (JSON), the live
    /// table `natkit tunnel sessions` reads; it answers only there, never on a network listener.</param>
    /// <param name="cancellationToken">Cancels the start.</param>
    public static Task<TunnelEndpoint> StartAsync(TunnelServer server, IReadOnlyList<IPEndPoint> listen,
        X509Certificate2? certificate, string path = "/tunnel", string? control = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(server);
        return StartAsync(server.ServeAsync, server.Options.HelloTimeout, listen, certificate, path, cancellationToken,
            control is null ? null : new ControlRoutes(control, () => Task.FromResult<object>(server.Sessions()),
                server.FlowsAsync, () => Task.FromResult<object>(server.Stats)));
    }

    /// <summary>What the control socket answers.</summary>
    internal sealed record ControlRoutes(string Path, Func<Task<object>> Sessions, Func<Task<IReadOnlyList<TunnelFlowInfo>>> Flows,
        Func<Task<object>> Stats);

    /// <summary>Starts Kestrel with <paramref name="serve"/> behind the WebSocket path (a relay's hop).</summary>
    public static Task<TunnelEndpoint> StartAsync(Func<WebSocket, IPEndPoint?, CancellationToken, Task> serve,
        TimeSpan headersTimeout, IReadOnlyList<IPEndPoint> listen, X509Certificate2? certificate,
        string path = "/tunnel", CancellationToken cancellationToken = default) =>
        StartAsync(serve, headersTimeout, listen, certificate, path, cancellationToken, null);

    private static async Task<TunnelEndpoint> StartAsync(Func<WebSocket, IPEndPoint?, CancellationToken, Task> serve,
        TimeSpan headersTimeout, IReadOnlyList<IPEndPoint> listen, X509Certificate2? certificate, string path,
        CancellationToken cancellationToken, ControlRoutes? control)
    {
        ArgumentNullException.ThrowIfNull(serve);
        if (control is not null)
        {
            Directory.CreateDirectory(System.IO.Path.GetDirectoryName(control.Path)!);
            File.Delete(control.Path); // a stale socket of a process that died
        }

        ArgumentNullException.ThrowIfNull(listen);
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        // Inline scheduling: a socket's completions run the WebSocket's receive loop (and its sends' flushes) on the
        // thread that completed them instead of queueing them to Kestrel's IOQueue and then the thread pool; every
        // handler here awaits and never blocks, and each queueing is a thread hop a packet waits through.
        builder.WebHost.UseSockets(o => o.UnsafePreferInlineScheduling = true);
        builder.WebHost.UseKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxRequestHeadersTotalSize = 8192;
            k.Limits.KeepAliveTimeout = TimeSpan.FromSeconds(30);
            k.Limits.RequestHeadersTimeout = headersTimeout;
            foreach (var endpoint in listen)
            {
                k.Listen(endpoint, o =>
                {
                    o.Protocols = HttpProtocols.Http1;
                    if (certificate is not null)
                    {
                        o.UseHttps(certificate);
                    }
                });
            }

            if (control is not null)
            {
                k.ListenUnixSocket(control.Path, o => o.Protocols = HttpProtocols.Http1);
            }
        });
        var app = builder.Build();
        app.UseWebSockets(new WebSocketOptions { KeepAliveInterval = TimeSpan.Zero });
        app.Map(path, async context =>
        {
            if (!context.WebSockets.IsWebSocketRequest)
            {
                context.Response.StatusCode = StatusCodes.Status426UpgradeRequired;
                context.Response.Headers.Upgrade = "websocket";
                await context.Response.WriteAsync("a WebSocket endpoint: connect with natkit tunnel connect\n", context.RequestAborted).ConfigureAwait(false);
                return;
            }

            var offered = context.WebSockets.WebSocketRequestedProtocols.Contains(TunnelMessage.SubProtocol);
            using var socket = await context.WebSockets.AcceptWebSocketAsync(new WebSocketAcceptContext
            {
                SubProtocol = offered ? TunnelMessage.SubProtocol : null,
                KeepAliveInterval = TimeSpan.Zero,
                DangerousEnableCompression = false,
            }).ConfigureAwait(false);
            var remote = context.Connection.RemoteIpAddress is { } address
                ? new IPEndPoint(address, context.Connection.RemotePort)
                : null;
            await serve(socket, remote, context.RequestAborted).ConfigureAwait(false);
        });
        app.MapGet("/relay.html", (HttpContext context) => Results.Bytes(RelayPage.Bytes, "text/html; charset=utf-8"));
        if (control is not null)
        {
            // a Unix socket connection has no remote IP address: a network client never reaches these
            static bool Local(HttpContext c) => c.Connection.RemoteIpAddress is null;
            app.MapGet("/sessions", async (HttpContext c) => Local(c) ? Results.Json(await control.Sessions().ConfigureAwait(false)) : Results.NotFound());
            app.MapGet("/flows", async (HttpContext c) => Local(c) ? Results.Json(await control.Flows().ConfigureAwait(false)) : Results.NotFound());
            app.MapGet("/stats", async (HttpContext c) => Local(c) ? Results.Json(await control.Stats().ConfigureAwait(false)) : Results.NotFound());
        }

        await app.StartAsync(cancellationToken).ConfigureAwait(false);
        var scheme = certificate is null ? "ws" : "wss";
        var urls = app.Urls.Where(u => !u.Contains("unix:", StringComparison.Ordinal))
            .Select(u => scheme + u[u.IndexOf(':', StringComparison.Ordinal)..] + path).ToList();
        return new TunnelEndpoint(app, urls, control?.Path);
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
        if (_control is not null)
        {
            File.Delete(_control);
        }
    }
}

/// <summary>The browser relay page, a static file built into the assembly.</summary>
internal static class RelayPage
{
    private static readonly Lazy<byte[]> Page = new(() =>
    {
        using var stream = typeof(RelayPage).Assembly.GetManifestResourceStream("NatKit.Tunnel.relay.html")
                           ?? throw new InvalidOperationException("relay.html is not built in");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    });

    /// <summary>The page's bytes (UTF-8 HTML).</summary>
    public static byte[] Bytes => Page.Value;
}
