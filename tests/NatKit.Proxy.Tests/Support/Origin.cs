using System.Collections.Concurrent;
using System.Net;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace NatKit.Proxy.Tests.Support;

/// <summary>
/// A Kestrel origin on 127.0.0.1 (optionally TLS with a self-signed certificate made here): /hello, /echo
/// (streams the body back and records the SHA-256 of what it received under the X-Test-Id field), /digest/{id},
/// /ws (WebSocket echo).
/// </summary>
public sealed class Origin : IAsyncDisposable
{
    private readonly WebApplication _app;

    private Origin(WebApplication app, int port)
    {
        _app = app;
        Port = port;
    }

    public int Port { get; }

    public ConcurrentDictionary<string, (string Sha256, long Length)> Received { get; } = new();

    public static async Task<Origin> StartAsync(bool tls = false)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        var cert = tls ? SelfSigned() : null;
        builder.WebHost.UseKestrel(o =>
        {
            o.Limits.MaxRequestBodySize = null;
            o.Listen(IPAddress.Loopback, 0, l =>
            {
                if (cert is not null)
                {
                    l.UseHttps(cert);
                }
            });
        });
        var app = builder.Build();
        Origin? self = null;
        app.UseWebSockets();
        app.MapMethods("/hello", ["GET", "HEAD"], () => "hello world");
        app.MapMethods("/echo", ["POST", "PUT"], async (HttpContext context) =>
        {
            var id = context.Request.Headers["X-Test-Id"].ToString();
            if (context.Request.ContentLength is { } length)
            {
                context.Response.ContentLength = length; // same framing back: Content-Length, else chunked
            }

            // Each piece goes back only after the next read, so the digest is recorded before the client can
            // have the whole response.
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var buffer = new byte[64 * 1024];
            var previous = new byte[64 * 1024];
            var previousLength = 0;
            long total = 0;
            int n;
            while ((n = await context.Request.Body.ReadAsync(buffer)) > 0)
            {
                sha.AppendData(buffer, 0, n);
                total += n;
                if (previousLength > 0)
                {
                    await context.Response.Body.WriteAsync(previous.AsMemory(0, previousLength));
                }

                (buffer, previous) = (previous, buffer);
                previousLength = n;
            }

            self!.Received[id] = (Convert.ToHexString(sha.GetHashAndReset()), total);
            if (previousLength > 0)
            {
                await context.Response.Body.WriteAsync(previous.AsMemory(0, previousLength));
            }
        });
        app.MapGet("/digest/{id}", (string id) =>
            self!.Received.TryGetValue(id, out var r) ? Results.Text($"{r.Sha256} {r.Length}") : Results.NotFound());
        app.Map("/ws", async (HttpContext context) =>
        {
            if (!context.WebSockets.IsWebSocketRequest)
            {
                context.Response.StatusCode = 400;
                return;
            }

            using var ws = await context.WebSockets.AcceptWebSocketAsync();
            var buffer = new byte[64 * 1024];
            while (true)
            {
                var r = await ws.ReceiveAsync(buffer, CancellationToken.None);
                if (r.MessageType == WebSocketMessageType.Close)
                {
                    await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
                    return;
                }

                await ws.SendAsync(buffer.AsMemory(0, r.Count), r.MessageType, r.EndOfMessage, CancellationToken.None);
            }
        });
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!
            .Addresses.First();
        self = new Origin(app, new Uri(address).Port);
        return self;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private static X509Certificate2 SelfSigned()
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback);
        san.AddDnsName("localhost");
        request.CertificateExtensions.Add(san.Build());
        using var cert = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        return X509CertificateLoader.LoadPkcs12(cert.Export(X509ContentType.Pfx), null);
    }
}
