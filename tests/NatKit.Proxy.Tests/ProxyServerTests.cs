using System.Net;
using System.Text;
using System.Text.Json;
using NatKit.Net;
using NatKit.Proxy.Tests.Support;
using NatKit.TestSupport;

namespace NatKit.Proxy.Tests;

/// <summary>The proxy end to end over loopback, against a Kestrel origin, with exact bytes on the wire.</summary>
public sealed class ProxyServerTests : IAsyncLifetime
{
    private Origin _origin = null!;

    public async Task InitializeAsync() => _origin = await Origin.StartAsync();

    public async Task DisposeAsync() => await _origin.DisposeAsync();

    internal static ProxyOptions TestOptions(int connectPort = 443) => new()
    {
        HttpListen = new IPEndPoint(IPAddress.Loopback, 0),
        AllowLoopbackDestinations = true,
        ConnectPorts = new HashSet<int> { connectPort },
        SocksPorts = ProxyOptions.AnyPort, // SOCKS tests reach ephemeral loopback ports
    };

    private string Url(string path) => $"http://127.0.0.1:{_origin.Port}{path}";

    [Fact]
    public async Task Rfc9112_AbsoluteForm_Get_IsForwardedWithVia_AndConnectionPersists()
    {
        await using var proxy = await ProxyServer.StartAsync(TestOptions(), SystemNetwork.Instance);
        await using var c = await RawClient.ConnectAsync(proxy.HttpEndPoint);
        for (var i = 0; i < 3; i++)
        {
            await c.SendAsync($"GET {Url("/hello")} HTTP/1.1\r\nHost: ignored.example\r\n\r\n");
            var r = await c.ReadResponseAsync();
            Assert.Equal(200, r.Status);
            Assert.Equal("hello world", r.Text);
            Assert.Contains("natkit", r.Field("Via"), StringComparison.Ordinal);
        }

        Assert.True(proxy.Pool.IdleCount <= 1, "one upstream connection served all three requests");
    }

    [Fact]
    public async Task Rfc9110_Head_HasNoBody_AndNextRequestOnSameConnectionWorks()
    {
        await using var proxy = await ProxyServer.StartAsync(TestOptions(), SystemNetwork.Instance);
        await using var c = await RawClient.ConnectAsync(proxy.HttpEndPoint);
        await c.SendAsync($"HEAD {Url("/hello")} HTTP/1.1\r\nHost: x\r\n\r\n");
        var head = await c.ReadResponseAsync(head: true);
        Assert.Equal(200, head.Status);
        await c.SendAsync($"GET {Url("/hello")} HTTP/1.1\r\nHost: x\r\n\r\n");
        Assert.Equal("hello world", (await c.ReadResponseAsync()).Text);
    }

    [Theory]
    [InlineData("Content-Length: 11\r\n", "hello there")]
    [InlineData("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n6;ext=1\r\n there\r\n0\r\nX-Trailer: t\r\n\r\n")]
    public async Task Rfc9112_RequestBodies_InBothFramings_ArriveWhole(string framing, string body)
    {
        await using var proxy = await ProxyServer.StartAsync(TestOptions(), SystemNetwork.Instance);
        await using var c = await RawClient.ConnectAsync(proxy.HttpEndPoint);
        var id = Guid.NewGuid().ToString("N");
        await c.SendAsync($"POST {Url("/echo")} HTTP/1.1\r\nHost: x\r\nX-Test-Id: {id}\r\n{framing}\r\n{body}");
        var r = await c.ReadResponseAsync();
        Assert.Equal(200, r.Status);
        Assert.Equal("hello there", r.Text);
        Assert.Equal(11, _origin.Received[id].Length);
    }

    [Fact]
    public async Task Rfc9110_HopByHopFields_AndThoseNamedInConnection_AreRemoved()
    {
        await using var proxy = await ProxyServer.StartAsync(TestOptions(), SystemNetwork.Instance);
        await using var c = await RawClient.ConnectAsync(proxy.HttpEndPoint);
        // The origin echoes nothing about fields, so check what reaches it through a raw listener instead.
        var listener = await SystemNetwork.Instance.ListenTcpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        await using var _ = listener;
        var seen = Task.Run(async () =>
        {
            await using var conn = await listener.AcceptAsync();
            var buf = new byte[8192];
            var text = "";
            while (!text.Contains("\r\n\r\n", StringComparison.Ordinal))
            {
                var n = await conn.Stream.ReadAsync(buf);
                text += Encoding.Latin1.GetString(buf, 0, n);
            }

            await conn.Stream.WriteAsync("HTTP/1.1 204 No Content\r\nKeep-Alive: timeout=5\r\nX-Drop: 1\r\nConnection: X-Drop\r\n\r\n"u8.ToArray());
            return text;
        });
        await c.SendAsync($"GET http://127.0.0.1:{listener.LocalEndPoint.Port}/p?q=1 HTTP/1.1\r\nHost: x\r\n" +
                          "Connection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: 5\r\nTE: trailers\r\n" +
                          "Proxy-Connection: keep-alive\r\nUpgrade: h2c\r\nX-Keep: k\r\n\r\n");
        var r = await c.ReadResponseAsync();
        var upstream = await seen;
        Assert.StartsWith("GET /p?q=1 HTTP/1.1\r\n", upstream, StringComparison.Ordinal);
        Assert.Contains($"Host: 127.0.0.1:{listener.LocalEndPoint.Port}\r\n", upstream, StringComparison.Ordinal);
        Assert.Contains("X-Keep: k", upstream, StringComparison.Ordinal);
        Assert.Contains("Via: 1.1 natkit", upstream, StringComparison.Ordinal);
        foreach (var gone in new[] { "X-Secret", "Keep-Alive", "TE:", "Proxy-Connection", "Upgrade", "Host: x" })
        {
            Assert.DoesNotContain(gone, upstream, StringComparison.OrdinalIgnoreCase);
        }

        Assert.Equal(204, r.Status);
        Assert.Null(r.Field("X-Drop"));
        Assert.Null(r.Field("Keep-Alive"));
    }

    [Theory]
    [InlineData("POST /x HTTP/1.1\r\nHost: a\r\n\r\n", "origin-form to a proxy")]
    [InlineData("POST http://127.0.0.1:{0}/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "CL with TE")]
    [InlineData("POST http://127.0.0.1:{0}/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", "duplicate CL")]
    [InlineData("POST http://127.0.0.1:{0}/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", "CL list")]
    [InlineData("POST http://127.0.0.1:{0}/echo HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", "negative CL")]
    [InlineData("POST http://127.0.0.1:{0}/echo HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc", "signed CL")]
    [InlineData("GET http://127.0.0.1:{0}/hello HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", "obs-fold")]
    [InlineData("GET http://127.0.0.1:{0}/hello HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", "bare CR")]
    [InlineData("GET http://127.0.0.1:{0}/hello HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n", "bare LF")]
    [InlineData("GET http://127.0.0.1:{0}/hello HTTP/1.1\r\nHost : a\r\n\r\n", "space before colon")]
    [InlineData("GET  http://127.0.0.1:{0}/hello HTTP/1.1\r\nHost: a\r\n\r\n", "double space")]
    [InlineData("GET http://127.0.0.1:{0}/hello HTTP/1.1 \r\nHost: a\r\n\r\n", "trailing space")]
    [InlineData("GET http://127.0.0.1:{0}/hello\r\nHost: a\r\n\r\n", "HTTP/0.9")]
    [InlineData("GET http://127.0.0.1:{0}/hello HTTP/1.1\r\n\r\n", "no Host")]
    [InlineData("GET http://127.0.0.1:{0}/hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "two Hosts")]
    [InlineData("GET http://u:p@127.0.0.1:{0}/hello HTTP/1.1\r\nHost: a\r\n\r\n", "userinfo")]
    [InlineData("POST http://127.0.0.1:{0}/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", "chunked not final")]
    [InlineData("POST http://127.0.0.1:{0}/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", "chunked twice")]
    [InlineData("POST http://127.0.0.1:{0}/echo HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "TE in 1.0")]
    public async Task Smuggling_AndMalformedRequests_Get400_AndTheNextClientIsServed(string request, string why)
    {
        await using var proxy = await ProxyServer.StartAsync(TestOptions(), SystemNetwork.Instance);
        await using (var bad = await RawClient.ConnectAsync(proxy.HttpEndPoint))
        {
            await bad.SendAsync(string.Format(System.Globalization.CultureInfo.InvariantCulture, request, _origin.Port));
            var r = await bad.ReadResponseAsync();
            Assert.True(r.Status == 400, $"{why}: got {r.Status}");
            Assert.True(await bad.ClosedAsync(), $"{why}: connection must close after 400");
        }

        await using var good = await RawClient.ConnectAsync(proxy.HttpEndPoint);
        await good.SendAsync($"GET {Url("/hello")} HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.Equal("hello world", (await good.ReadResponseAsync()).Text);
    }

    [Theory]
    [InlineData("zz\r\nabc\r\n0\r\n\r\n")]
    [InlineData("3 \r\nabc\r\n0\r\n\r\n")]
    [InlineData(" 3\r\nabc\r\n0\r\n\r\n")]
    [InlineData("3\r\nabcX\r\n0\r\n\r\n")]
    [InlineData("fffffffffffffffff\r\nabc\r\n0\r\n\r\n")]
    [InlineData("-3\r\nabc\r\n0\r\n\r\n")]
    [InlineData("3\nabc\r\n0\r\n\r\n")]
    public async Task BadChunkSizes_NeverReachTheOriginAsComplete(string chunked)
    {
        await using var proxy = await ProxyServer.StartAsync(TestOptions(), SystemNetwork.Instance);
        await using var c = await RawClient.ConnectAsync(proxy.HttpEndPoint);
        var id = Guid.NewGuid().ToString("N");
        await c.SendAsync($"POST {Url("/echo")} HTTP/1.1\r\nHost: a\r\nX-Test-Id: {id}\r\nTransfer-Encoding: chunked\r\n\r\n{chunked}");
        var reply = await c.ReadResponseAsync();
        Assert.True(reply.Status >= 400, $"got {reply.Status}");
        Assert.False(_origin.Received.ContainsKey(id), "the origin must not see a complete body");
    }

    [Fact]
    public async Task Rfc9110_407_WithProxyAuthenticate_ThenBasicCredentialsPass()
    {
        await using var proxy = await ProxyServer.StartAsync(TestOptions() with { Credentials = "alice:s3cret" },
            SystemNetwork.Instance);
        await using (var c = await RawClient.ConnectAsync(proxy.HttpEndPoint))
        {
            await c.SendAsync($"GET {Url("/hello")} HTTP/1.1\r\nHost: a\r\n\r\n");
            var r = await c.ReadResponseAsync();
            Assert.Equal(407, r.Status);
            Assert.Equal("Basic realm=\"natkit\"", r.Field("Proxy-Authenticate"));
        }

        await using var ok = await RawClient.ConnectAsync(proxy.HttpEndPoint);
        var token = Convert.ToBase64String(Encoding.UTF8.GetBytes("alice:s3cret"));
        await ok.SendAsync($"GET {Url("/hello")} HTTP/1.1\r\nHost: a\r\nProxy-Authorization: Basic {token}\r\n\r\n");
        Assert.Equal("hello world", (await ok.ReadResponseAsync()).Text);
    }

    [Fact]
    public async Task SafeDefaults_ConnectOnlyTo443_AndNoLoopbackDestinations()
    {
        await using var strict = await ProxyServer.StartAsync(
            new ProxyOptions { HttpListen = new IPEndPoint(IPAddress.Loopback, 0) }, SystemNetwork.Instance);
        await using (var c = await RawClient.ConnectAsync(strict.HttpEndPoint))
        {
            await c.SendAsync($"CONNECT 127.0.0.1:{_origin.Port} HTTP/1.1\r\nHost: 127.0.0.1:{_origin.Port}\r\n\r\n");
            Assert.Equal(403, (await c.ReadResponseAsync()).Status);
        }

        await using (var c = await RawClient.ConnectAsync(strict.HttpEndPoint))
        {
            await c.SendAsync($"GET {Url("/hello")} HTTP/1.1\r\nHost: a\r\n\r\n");
            Assert.Equal(403, (await c.ReadResponseAsync()).Status);
        }

        Assert.Equal(IPAddress.Loopback, new ProxyOptions().HttpListen.Address);
        Assert.Equal([443], new ProxyOptions().ConnectPorts);
    }

    [Fact]
    public async Task UpstreamRefused_Gets502WithAReason()
    {
        var closed = await SystemNetwork.Instance.ListenTcpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        var port = closed.LocalEndPoint.Port;
        await closed.DisposeAsync();
        await using var proxy = await ProxyServer.StartAsync(TestOptions(), SystemNetwork.Instance);
        await using var c = await RawClient.ConnectAsync(proxy.HttpEndPoint);
        await c.SendAsync($"GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: a\r\n\r\n");
        var r = await c.ReadResponseAsync();
        Assert.Equal(502, r.Status);
        Assert.Contains("ConnectionRefused", r.Text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ConnectionTable_ListsLiveFlows_OnTheStatusEndpoint()
    {
        await using var proxy = await ProxyServer.StartAsync(TestOptions(), SystemNetwork.Instance);
        await using var c = await RawClient.ConnectAsync(proxy.HttpEndPoint);
        await c.SendAsync($"GET {Url("/hello")} HTTP/1.1\r\nHost: a\r\n\r\n");
        await c.ReadResponseAsync();
        await using var s = await RawClient.ConnectAsync(proxy.HttpEndPoint);
        await s.SendAsync("GET /natkit/status HTTP/1.1\r\nHost: localhost\r\n\r\n");
        var r = await s.ReadResponseAsync();
        Assert.Equal(200, r.Status);
        using var json = JsonDocument.Parse(r.Body);
        var flows = json.RootElement.GetProperty("flows").EnumerateArray().ToList();
        var flow = flows.Single(f => f.GetProperty("client").GetString() == c.Stream.Socket.LocalEndPoint!.ToString());
        Assert.Equal($"127.0.0.1:{_origin.Port}", flow.GetProperty("server").GetString());
        Assert.True(flow.GetProperty("bytesDown").GetInt64() >= 11);
        Assert.True(flow.GetProperty("proxyPort").GetInt32() > 0);
    }

    [Fact]
    public async Task SlowHeaders_AreCutOffAtTheHeaderTimeout_OnTheInjectedClock()
    {
        var time = new ManualTimeProvider();
        var options = TestOptions() with { HeaderTimeout = TimeSpan.FromSeconds(2) };
        await using var proxy = await ProxyServer.StartAsync(options, new ClockedNetwork(time));
        await using var c = await RawClient.ConnectAsync(proxy.HttpEndPoint);
        await time.TimerArmed; // the session has started its header clock
        var response = c.ReadResponseAsync();
        foreach (var b in "GET http://"u8.ToArray()[..1])
        {
            await c.SendAsync([b]);
        }

        time.Advance(TimeSpan.FromSeconds(1));
        await c.SendAsync("E"u8.ToArray());
        time.Advance(TimeSpan.FromSeconds(0.9));
        Assert.False(response.IsCompleted, "cut off before the configured time");
        time.Advance(TimeSpan.FromSeconds(0.1));
        var r = await response;
        Assert.Equal(408, r.Status);
        Assert.True(await c.ClosedAsync());
    }

    [Fact]
    public async Task SlowHeaders_OneByteASecond_AreCutOffOnTheRealClock()
    {
        var options = TestOptions() with { HeaderTimeout = TimeSpan.FromSeconds(2) };
        await using var proxy = await ProxyServer.StartAsync(options, SystemNetwork.Instance);
        await using var c = await RawClient.ConnectAsync(proxy.HttpEndPoint);
        var started = DateTime.UtcNow;
        var closed = c.ClosedAsync();
        var request = Encoding.ASCII.GetBytes($"GET {Url("/hello")} HTTP/1.1\r\nHost: a\r\n\r\n");
        foreach (var b in request)
        {
            if (closed.IsCompleted)
            {
                break;
            }

            try
            {
                await c.SendAsync([b]);
            }
            catch (IOException)
            {
                break;
            }

            await Task.WhenAny(closed, Task.Delay(TimeSpan.FromSeconds(1))); // the client's pace, by design
        }

        var elapsed = DateTime.UtcNow - started;
        Assert.True(closed.IsCompleted, "still open after the whole slow request");
        Assert.InRange(elapsed.TotalSeconds, 1.5, 10);
    }

    [Fact]
    public async Task Idle_KeepAliveClient_IsClosedAfterIdleTimeout()
    {
        var time = new ManualTimeProvider();
        var options = TestOptions() with { IdleTimeout = TimeSpan.FromSeconds(5) };
        await using var proxy = await ProxyServer.StartAsync(options, new ClockedNetwork(time));
        await using var c = await RawClient.ConnectAsync(proxy.HttpEndPoint);
        await c.SendAsync($"GET {Url("/hello")} HTTP/1.1\r\nHost: a\r\n\r\n");
        await c.ReadResponseAsync();
        var closed = c.ClosedAsync();
        time.Advance(TimeSpan.FromSeconds(4));
        Assert.False(closed.IsCompleted);
        time.Advance(TimeSpan.FromSeconds(1.5));
        // the session may have re-armed a moment after the response reached us (real threads, virtual clock):
        // one more idle period covers that without weakening "not before the idle time"
        time.Advance(TimeSpan.FromSeconds(5));
        Assert.True(await closed);
    }

    [Fact]
    public async Task ClientsOutsideTheAllowedNetworks_AreRefused()
    {
        var options = TestOptions() with { AllowedClients = [IPNetwork.Parse("10.0.0.0/8")] };
        await using var proxy = await ProxyServer.StartAsync(options, SystemNetwork.Instance);
        await using var c = await RawClient.ConnectAsync(proxy.HttpEndPoint);
        await c.SendAsync($"GET {Url("/hello")} HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.Equal(403, (await c.ReadResponseAsync()).Status);
    }

    [Fact]
    public async Task Rfc9110_Connect_TunnelCarriesBulkBytesIntact_BothWays_AndCountsThem()
    {
        // an echo server that reads in small pieces, so the tunnel meets backpressure on the way back
        var listener = await SystemNetwork.Instance.ListenTcpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        await using var _ = listener;
        var echo = Task.Run(async () =>
        {
            await using var conn = await listener.AcceptAsync();
            var buf = new byte[1500];
            int n;
            while ((n = await conn.Stream.ReadAsync(buf)) > 0)
            {
                await conn.Stream.WriteAsync(buf.AsMemory(0, n));
            }

            conn.ShutdownSend();
        });
        await using var proxy = await ProxyServer.StartAsync(TestOptions(listener.LocalEndPoint.Port), SystemNetwork.Instance);
        await using var c = await RawClient.ConnectAsync(proxy.HttpEndPoint);
        var port = listener.LocalEndPoint.Port;
        await c.SendAsync($"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
        Assert.Equal(200, (await c.ReadResponseAsync(head: true)).Status);
        var flow = Assert.Single(proxy.Connections.Snapshot(), f => f.Kind == "connect");
        var payload = new byte[24 * 1024 * 1024];
        new Random(3).NextBytes(payload);
        var send = Task.Run(async () =>
        {
            for (var i = 0; i < payload.Length; i += 65536)
            {
                await c.Stream.WriteAsync(payload.AsMemory(i, Math.Min(65536, payload.Length - i)));
            }

            c.Stream.Socket.Shutdown(System.Net.Sockets.SocketShutdown.Send);
        });
        var back = await c.ReadExactAsync(payload.Length);
        await send;
        Assert.True(back.AsSpan().SequenceEqual(payload), "echoed bytes differ");
        Assert.True(await c.ClosedAsync(), "the half-close travels both ways");
        await echo;
        Assert.Equal(payload.Length, flow.BytesUp);
        Assert.Equal(payload.Length, flow.BytesDown);
    }

    [Fact]
    public async Task ParentProxy_CarriesRequestsAndTunnels()
    {
        await using var parent = await ProxyServer.StartAsync(TestOptions(_origin.Port), SystemNetwork.Instance);
        await using var child = await ProxyServer.StartAsync(TestOptions(_origin.Port) with
        {
            Parent = new DnsEndPoint("127.0.0.1", parent.HttpEndPoint.Port),
        }, SystemNetwork.Instance);
        await using (var c = await RawClient.ConnectAsync(child.HttpEndPoint))
        {
            await c.SendAsync($"GET {Url("/hello")} HTTP/1.1\r\nHost: a\r\n\r\n");
            var r = await c.ReadResponseAsync();
            Assert.Equal("hello world", r.Text);
            Assert.Equal(2, r.Fields.Count(f => f.Name == "Via"));
        }

        await using (var t = await RawClient.ConnectAsync(child.HttpEndPoint))
        {
            await t.SendAsync($"CONNECT 127.0.0.1:{_origin.Port} HTTP/1.1\r\nHost: 127.0.0.1:{_origin.Port}\r\n\r\n");
            Assert.Equal(200, (await t.ReadResponseAsync(head: true)).Status);
            await t.SendAsync($"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); // plain HTTP inside the tunnel
            Assert.Equal("hello world", (await t.ReadResponseAsync()).Text);
            // while the tunnel is open: the parent drops the flow from its table as soon as the child's leg closes
            Assert.Contains(parent.Connections.Snapshot(), f => f.Kind == "connect");
        }
    }

    [Fact]
    public async Task MaxConnections_Exceeded_Gets503()
    {
        await using var proxy = await ProxyServer.StartAsync(TestOptions() with { MaxConnections = 1 }, SystemNetwork.Instance);
        await using var first = await RawClient.ConnectAsync(proxy.HttpEndPoint);
        await first.SendAsync($"GET {Url("/hello")} HTTP/1.1\r\nHost: a\r\n\r\n");
        await first.ReadResponseAsync(); // the first connection is being served and stays open
        await using var second = await RawClient.ConnectAsync(proxy.HttpEndPoint);
        Assert.Equal(503, (await second.ReadResponseAsync()).Status);
    }

    [Fact]
    public async Task Rfc9112_EmptyLinesBeforeTheRequestLine_AreIgnored()
    {
        await using var proxy = await ProxyServer.StartAsync(TestOptions(), SystemNetwork.Instance);
        await using var c = await RawClient.ConnectAsync(proxy.HttpEndPoint);
        await c.SendAsync($"\r\n\r\nGET {Url("/hello")} HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.Equal("hello world", (await c.ReadResponseAsync()).Text);
    }

    [Fact]
    public async Task Rfc9110_SilentUpstream_Gets504_OnTheInjectedClock()
    {
        var silent = await SystemNetwork.Instance.ListenTcpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        await using var _ = silent;
        var accepted = silent.AcceptAsync().AsTask(); // accepts, then never answers
        var time = new ManualTimeProvider();
        await using var proxy = await ProxyServer.StartAsync(TestOptions() with { IdleTimeout = TimeSpan.FromSeconds(30) },
            new ClockedNetwork(time));
        await using var c = await RawClient.ConnectAsync(proxy.HttpEndPoint);
        await c.SendAsync($"GET http://127.0.0.1:{silent.LocalEndPoint.Port}/ HTTP/1.1\r\nHost: a\r\n\r\n");
        await using var upstream = await accepted;
        // The proxy arms its idle deadline before it writes the request upstream: once the head has arrived the
        // clock may move (a connection accepted is not yet a request sent, and the head timeout still runs then).
        var head = new List<byte>();
        var one = new byte[1];
        while (head.Count < 4 || !head.TakeLast(4).SequenceEqual("\r\n\r\n"u8.ToArray()))
        {
            Assert.Equal(1, await upstream.Stream.ReadAsync(one));
            head.Add(one[0]);
        }

        var response = c.ReadResponseAsync();
        time.Advance(TimeSpan.FromSeconds(29));
        Assert.False(response.IsCompleted);
        time.Advance(TimeSpan.FromSeconds(31)); // the timer fires late and re-checks the last activity
        time.Advance(TimeSpan.FromSeconds(31));
        Assert.Equal(504, (await response).Status);
    }

    /// <summary>An origin that answers one request with fixed bytes and closes.</summary>
    private static async Task<(int Port, Task Done)> OneShotOriginAsync(string response)
    {
        var listener = await SystemNetwork.Instance.ListenTcpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        var done = Task.Run(async () =>
        {
            await using (listener)
            {
                await using var conn = await listener.AcceptAsync();
                var buf = new byte[8192];
                var text = "";
                while (!text.Contains("\r\n\r\n", StringComparison.Ordinal))
                {
                    var n = await conn.Stream.ReadAsync(buf);
                    text += Encoding.Latin1.GetString(buf, 0, n);
                }

                await conn.Stream.WriteAsync(Encoding.Latin1.GetBytes(response));
            }
        });
        return (listener.LocalEndPoint.Port, done);
    }

    [Theory]
    [InlineData("1.1", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close", "chunked", false)]
    [InlineData("1.0", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close", null, true)]
    [InlineData("1.0", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nuntil \r\n5\r\nclose\r\n0\r\n\r\n", null, true)]
    [InlineData("1.1", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nuntil \r\n5\r\nclose\r\n0\r\n\r\n", "chunked", false)]
    public async Task Rfc9112_ResponseFraming_IsReframedForTheClientVersion(string version, string response,
        string? transferEncoding, bool closes)
    {
        var (port, done) = await OneShotOriginAsync(response);
        await using var proxy = await ProxyServer.StartAsync(TestOptions(), SystemNetwork.Instance);
        await using var c = await RawClient.ConnectAsync(proxy.HttpEndPoint);
        await c.SendAsync($"GET http://127.0.0.1:{port}/ HTTP/{version}\r\nHost: a\r\n\r\n");
        var r = await c.ReadResponseAsync();
        Assert.Equal(200, r.Status);
        Assert.Equal(transferEncoding, r.Field("Transfer-Encoding"));
        if (closes)
        {
            // HTTP/1.0 has no chunked framing: the body runs to the close
            Assert.Equal("close", r.Field("Connection"));
            Assert.Equal("until close", Encoding.ASCII.GetString(await c.ReadToEndAsync()));
        }
        else
        {
            Assert.Equal("until close", r.Text);
        }

        await done;
    }

    [Fact]
    public async Task Rfc9112_PooledConnectionTheServerClosed_IsNotReusedForABody()
    {
        var listener = await SystemNetwork.Instance.ListenTcpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        await using var _ = listener;
        var firstClosed = new TaskCompletionSource();
        var origin = Task.Run(async () =>
        {
            for (var i = 0; i < 2; i++)
            {
                await using (var conn = await listener.AcceptAsync())
                {
                    var buf = new byte[8192];
                    var text = "";
                    while (!text.EndsWith("body", StringComparison.Ordinal))
                    {
                        var n = await conn.Stream.ReadAsync(buf);
                        text += Encoding.Latin1.GetString(buf, 0, n);
                    }

                    // keep-alive by the book, then the server closes anyway (as idle servers do)
                    await conn.Stream.WriteAsync("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"u8.ToArray());
                }

                firstClosed.TrySetResult();
            }
        });
        await using var proxy = await ProxyServer.StartAsync(TestOptions(), SystemNetwork.Instance);
        await using var c = await RawClient.ConnectAsync(proxy.HttpEndPoint);
        var request = $"POST http://127.0.0.1:{listener.LocalEndPoint.Port}/ HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody";
        await c.SendAsync(request);
        Assert.Equal("ok", (await c.ReadResponseAsync()).Text);
        await firstClosed.Task;
        await c.SendAsync(request);
        Assert.Equal("ok", (await c.ReadResponseAsync()).Text);
        await origin;
    }

    [Fact]
    public async Task AccessLog_HasOneLinePerRequest()
    {
        var log = new ListLogger();
        await using (var proxy = await ProxyServer.StartAsync(TestOptions(), SystemNetwork.Instance, log))
        {
            await using var c = await RawClient.ConnectAsync(proxy.HttpEndPoint);
            await c.SendAsync($"GET {Url("/hello?x=1")} HTTP/1.1\r\nHost: a\r\n\r\n");
            await c.ReadResponseAsync();
            await c.SendAsync($"HEAD {Url("/hello")} HTTP/1.1\r\nHost: a\r\n\r\n");
            await c.ReadResponseAsync(head: true);
        }

        var lines = log.Lines(1);
        Assert.Equal(2, lines.Count);
        Assert.Contains($"GET 127.0.0.1:{_origin.Port}/hello?x=1 200", lines[0], StringComparison.Ordinal);
        Assert.Contains($"HEAD 127.0.0.1:{_origin.Port}/hello 200", lines[1], StringComparison.Ordinal);
    }

    [Fact]
    public async Task HeadTooLarge_Gets431()
    {
        var options = TestOptions() with { MaxHeaderBytes = 2048 };
        await using var proxy = await ProxyServer.StartAsync(options, SystemNetwork.Instance);
        await using var c = await RawClient.ConnectAsync(proxy.HttpEndPoint);
        await c.SendAsync($"GET {Url("/hello")} HTTP/1.1\r\nHost: a\r\nX-Big: {new string('a', 4000)}\r\n\r\n");
        Assert.Equal(431, (await c.ReadResponseAsync()).Status);
    }
}
