using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Text;
using NatKit.Net;
using NatKit.Proxy.Tests.Support;

namespace NatKit.Proxy.Tests;

/// <summary>RFC 9110 9.2.2 / RFC 9112 9.3.1: a request that meets a pooled connection the origin had already
/// closed is retried once on a fresh one when that is safe, and answered 502 when it is not.</summary>
public sealed class UpstreamRetryTests
{
    /// <summary>An origin that answers every request "keep-alive" and then closes the connection at once (as a
    /// server closing idle connections does, a moment too early). It echoes the request body, or "empty".</summary>
    private sealed class ClosingOrigin : IAsyncDisposable
    {
        private readonly IStreamListener _listener;
        private readonly Task _loop;
        private TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);

        private ClosingOrigin(IStreamListener listener)
        {
            _listener = listener;
            _loop = Task.Run(LoopAsync);
        }

        public int Port => _listener.LocalEndPoint.Port;

        public int Connections;

        public ConcurrentQueue<(string Method, byte[] Body)> Requests { get; } = new();

        /// <summary>Completes when the origin has closed the connection of the last answered request.</summary>
        public Task Closed => Volatile.Read(ref _closed).Task;

        public static async Task<ClosingOrigin> StartAsync() =>
            new(await SystemNetwork.Instance.ListenTcpAsync(new IPEndPoint(IPAddress.Loopback, 0)));

        private async Task LoopAsync()
        {
            while (true)
            {
                IStreamConnection c;
                try
                {
                    c = await _listener.AcceptAsync();
                }
                catch (Exception e) when (e is ObjectDisposedException or OperationCanceledException or IOException)
                {
                    return;
                }

                Interlocked.Increment(ref Connections);
                _ = Task.Run(() => ServeOneAsync(c));
            }
        }

        private async Task ServeOneAsync(IStreamConnection c)
        {
            await using (c)
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
                var buffer = new MemoryStream();
                var chunk = new byte[65536];
                try
                {
                    int headEnd;
                    while ((headEnd = IndexOfHeadEnd(buffer)) < 0)
                    {
                        var n = await c.Stream.ReadAsync(chunk, timeout.Token);
                        if (n == 0)
                        {
                            return;
                        }

                        buffer.Write(chunk, 0, n);
                    }

                    var head = Encoding.Latin1.GetString(buffer.GetBuffer(), 0, headEnd);
                    var length = head.Split("\r\n").Where(l => l.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase))
                        .Select(l => int.Parse(l[15..].Trim(), CultureInfo.InvariantCulture)).FirstOrDefault();
                    while (buffer.Length < headEnd + 4 + length)
                    {
                        var n = await c.Stream.ReadAsync(chunk, timeout.Token);
                        if (n == 0)
                        {
                            return;
                        }

                        buffer.Write(chunk, 0, n);
                    }

                    var body = buffer.GetBuffer().AsSpan(headEnd + 4, length).ToArray();
                    Requests.Enqueue((head[..head.IndexOf(' ', StringComparison.Ordinal)], body));
                    var answer = body.Length > 0 ? body : "empty"u8.ToArray();
                    await c.Stream.WriteAsync(Encoding.ASCII.GetBytes(
                        $"HTTP/1.1 200 OK\r\nContent-Length: {answer.Length}\r\nConnection: keep-alive\r\n\r\n"), timeout.Token);
                    await c.Stream.WriteAsync(answer, timeout.Token);
                }
                catch (Exception e) when (e is IOException or OperationCanceledException)
                {
                    return;
                }
            }

            Volatile.Read(ref _closed).TrySetResult();
        }

        public void ResetClosed() => Volatile.Write(ref _closed, new(TaskCreationOptions.RunContinuationsAsynchronously));

        private static int IndexOfHeadEnd(MemoryStream m) =>
            m.GetBuffer().AsSpan(0, (int)m.Length).IndexOf("\r\n\r\n"u8);

        public async ValueTask DisposeAsync()
        {
            await _listener.DisposeAsync();
            await _loop;
        }
    }

    /// <summary>A client connection through the proxy whose one pooled upstream connection the origin has closed
    /// after answering a first GET. With <c>raceTheClose</c> the pool cannot see the close, so the next request
    /// really goes out on the dead connection.</summary>
    private sealed record Stale(ClosingOrigin Origin, ProxyServer Proxy, RawClient Client) : IAsyncDisposable
    {
        public static async Task<Stale> StartAsync(bool raceTheClose)
        {
            var origin = await ClosingOrigin.StartAsync();
            var proxy = await ProxyServer.StartAsync(ProxyServerTests.TestOptions(),
                raceTheClose ? new OpaqueStreamNetwork(SystemNetwork.Instance) : SystemNetwork.Instance);
            var stale = new Stale(origin, proxy, await RawClient.ConnectAsync(proxy.HttpEndPoint));
            await stale.Client.SendAsync(Request("GET", origin.Port, ""));
            Assert.Equal("empty", (await stale.Client.ReadResponseAsync()).Text);
            await origin.Closed; // the pooled connection is dead before the next request leaves
            return stale;
        }

        public async ValueTask DisposeAsync()
        {
            await Client.DisposeAsync();
            await Proxy.DisposeAsync();
            await Origin.DisposeAsync();
        }
    }

    private static string Request(string method, int port, string body) =>
        $"{method} http://127.0.0.1:{port}/r HTTP/1.1\r\nHost: a\r\n" +
        (body.Length > 0 || method is "POST" or "PUT" ? $"Content-Length: {body.Length}\r\n" : "") + "\r\n" + body;

    [Theory]
    [InlineData("GET", "", true)]
    [InlineData("GET", "", false)]
    [InlineData("DELETE", "", true)]
    [InlineData("PUT", "a small body, still in the head's buffer", true)]
    [InlineData("PUT", "a small body, still in the head's buffer", false)]
    public async Task Rfc9110_StalePooledConnection_IdempotentReplayableRequest_IsRetriedOnAFreshOne(string method,
        string body, bool raceTheClose)
    {
        await using var stale = await Stale.StartAsync(raceTheClose);
        var (origin, proxy, c) = (stale.Origin, stale.Proxy, stale.Client);

        await c.SendAsync(Request(method, origin.Port, body));
        var r = await c.ReadResponseAsync();
        Assert.Equal(200, r.Status);
        Assert.Equal(body.Length > 0 ? body : "empty", r.Text);
        Assert.Equal(2, origin.Requests.Count); // the retried request reached the origin once
        Assert.Equal(body, Encoding.ASCII.GetString(origin.Requests.Last().Body));
        Assert.Equal(2, origin.Connections);
        // racing, the pool cannot see the close and the retry saves the request; otherwise the pool sees the
        // idle connection became readable (IStreamReadiness) and dials a fresh one without a failed attempt
        Assert.Equal(raceTheClose ? 1 : 0, proxy.Pool.Retries);

        // and the client connection goes on
        await c.SendAsync(Request("GET", origin.Port, ""));
        Assert.Equal("empty", (await c.ReadResponseAsync()).Text);
    }

    [Fact]
    public async Task Rfc9110_StalePooledConnection_PostIsNotRetried_Gets502()
    {
        await using var stale = await Stale.StartAsync(raceTheClose: true);
        var (origin, proxy, c) = (stale.Origin, stale.Proxy, stale.Client);

        await c.SendAsync(Request("POST", origin.Port, "order #1"));
        var r = await c.ReadResponseAsync();
        Assert.Equal(502, r.Status);
        Assert.Contains("POST is not idempotent", r.Text, StringComparison.Ordinal);
        Assert.Equal(0, proxy.Pool.Retries);
        Assert.Equal(1, origin.Connections); // no second connection: the POST was not sent again
        Assert.DoesNotContain(origin.Requests, q => q.Method == "POST");
        Assert.True(await c.ClosedAsync());
    }

    [Fact]
    public async Task Rfc9110_StalePooledConnection_StreamedBodyCannotBeReplayed_Gets502()
    {
        await using var stale = await Stale.StartAsync(raceTheClose: true);
        var (origin, proxy, c) = (stale.Origin, stale.Proxy, stale.Client);

        // larger than the head's buffer: it streams, so by the time the close shows it is partly sent
        var body = new string('b', 512 * 1024);
        var send = Task.Run(async () =>
        {
            try
            {
                await c.SendAsync(Request("PUT", origin.Port, body));
            }
            catch (IOException)
            {
                // the proxy closes the client connection after its 502
            }
        });
        var r = await c.ReadResponseAsync();
        Assert.Equal(502, r.Status);
        Assert.Contains("cannot be replayed", r.Text, StringComparison.Ordinal);
        Assert.Equal(0, proxy.Pool.Retries);
        Assert.Equal(1, origin.Connections);
        await send;
    }
}
