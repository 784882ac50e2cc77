using System.Net;
using System.Text;
using FsCheck;
using FsCheck.Fluent;
using NatKit.Net;
using NatKit.Proxy.Tests.Support;

namespace NatKit.Proxy.Tests;

/// <summary>A parent (upstream) proxy that wants Basic credentials: NatKit's own proxy with
/// <see cref="ProxyOptions.Credentials"/> as the parent, a child with <see cref="ProxyOptions.ParentCredentials"/>.</summary>
public sealed class ParentProxyTests : IAsyncLifetime
{
    private const string Password = "pa55:w@rd";
    private Origin _origin = null!;

    public async Task InitializeAsync() => _origin = await Origin.StartAsync();

    public async Task DisposeAsync() => await _origin.DisposeAsync();

    private Task<ProxyServer> StartParentAsync() => ProxyServer.StartAsync(
        ProxyServerTests.TestOptions(_origin.Port) with { Credentials = "parentuser:" + Password },
        SystemNetwork.Instance);

    private Task<ProxyServer> StartChildAsync(ProxyServer parent, NetworkCredential? credentials,
        Microsoft.Extensions.Logging.ILogger? log = null) => ProxyServer.StartAsync(
        ProxyServerTests.TestOptions(_origin.Port) with
        {
            Parent = new DnsEndPoint("127.0.0.1", parent.HttpEndPoint.Port),
            ParentCredentials = credentials,
        }, SystemNetwork.Instance, log);

    [Fact]
    public async Task ParentCredentials_AreSentOnForwardedRequestsAndOnConnect_AndNeverShown()
    {
        await using var parent = await StartParentAsync();
        var log = new ListLogger();
        await using var child = await StartChildAsync(parent, new NetworkCredential("parentuser", Password), log);
        await using (var c = await RawClient.ConnectAsync(child.HttpEndPoint))
        {
            for (var i = 0; i < 2; i++)
            {
                // the client's own Proxy-Authorization is for the child, never forwarded to the parent
                await c.SendAsync($"GET http://127.0.0.1:{_origin.Port}/hello HTTP/1.1\r\nHost: a\r\n" +
                                  "Proxy-Authorization: Basic Y2xpZW50OnNlY3JldA==\r\n\r\n");
                var r = await c.ReadResponseAsync();
                Assert.Equal(200, r.Status);
                Assert.Equal("hello world", r.Text);
            }
        }

        await using (var t = await RawClient.ConnectAsync(child.HttpEndPoint))
        {
            await t.SendAsync($"CONNECT 127.0.0.1:{_origin.Port} HTTP/1.1\r\nHost: 127.0.0.1:{_origin.Port}\r\n\r\n");
            Assert.Equal(200, (await t.ReadResponseAsync(head: true)).Status);
            await t.SendAsync("GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
            Assert.Equal("hello world", (await t.ReadResponseAsync()).Text);

            // the status endpoint, the access log and the options' text never carry the credentials
            await using var s = await RawClient.ConnectAsync(child.HttpEndPoint);
            await s.SendAsync("GET /natkit/status HTTP/1.1\r\nHost: localhost\r\n\r\n");
            var status = Encoding.UTF8.GetString((await s.ReadResponseAsync()).Body);
            var token = Convert.ToBase64String(Encoding.UTF8.GetBytes("parentuser:" + Password));
            foreach (var text in log.Lines(1).Concat(log.Lines(4)).Append(status).Append(child.Options.ToString()))
            {
                Assert.DoesNotContain(Password, text, StringComparison.Ordinal);
                Assert.DoesNotContain(token, text, StringComparison.Ordinal);
            }
        }
    }

    [Theory]
    [InlineData("wrong", "refused the configured parent credentials")]
    [InlineData(null, "no parent credentials are configured")]
    public async Task Parent407_ReachesTheClientAs502WithAReason_ForRequestsAndTunnels(string? password, string reason)
    {
        await using var parent = await StartParentAsync();
        await using var child = await StartChildAsync(parent,
            password is null ? null : new NetworkCredential("parentuser", password));
        await using (var c = await RawClient.ConnectAsync(child.HttpEndPoint))
        {
            await c.SendAsync($"GET http://127.0.0.1:{_origin.Port}/hello HTTP/1.1\r\nHost: a\r\n\r\n");
            var r = await c.ReadResponseAsync();
            Assert.Equal(502, r.Status);
            Assert.Contains(reason, r.Text, StringComparison.Ordinal);
            Assert.Null(r.Field("Proxy-Authenticate")); // a challenge the client could not answer is not passed on
        }

        await using var t = await RawClient.ConnectAsync(child.HttpEndPoint);
        await t.SendAsync($"CONNECT 127.0.0.1:{_origin.Port} HTTP/1.1\r\nHost: 127.0.0.1:{_origin.Port}\r\n\r\n");
        var tr = await t.ReadResponseAsync();
        Assert.Equal(502, tr.Status);
        Assert.Contains(reason, tr.Text, StringComparison.Ordinal);
    }

    /// <summary>A parent that answers every connection with fixed bytes after reading a head, then closes.</summary>
    private static async Task<(IStreamListener Listener, Task Loop)> FakeParentAsync(byte[] answer)
    {
        var listener = await SystemNetwork.Instance.ListenTcpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        var loop = Task.Run(async () =>
        {
            while (true)
            {
                IStreamConnection conn;
                try
                {
                    conn = await listener.AcceptAsync();
                }
                catch (Exception e) when (e is ObjectDisposedException or OperationCanceledException or IOException)
                {
                    return;
                }

                await using (conn)
                {
                    try
                    {
                        var buf = new byte[8192];
                        var text = "";
                        while (!text.Contains("\r\n\r\n", StringComparison.Ordinal))
                        {
                            var n = await conn.Stream.ReadAsync(buf);
                            if (n == 0)
                            {
                                break;
                            }

                            text += Encoding.Latin1.GetString(buf, 0, n);
                        }

                        await conn.Stream.WriteAsync(answer);
                    }
                    catch (IOException)
                    {
                    }
                }
            }
        });
        return (listener, loop);
    }

    [Theory]
    [InlineData("garbage\r\n\r\n")]
    [InlineData("HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic")] // cut short
    [InlineData("HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx")]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")] // a 200 with a body is no tunnel
    [InlineData("HTTP/9.9 200 OK\r\n\r\n")]
    [InlineData("")]
    [InlineData("HUGE")]
    public async Task MalformedParentAnswers_AreA502_AndTheProxyGoesOnServing(string answer)
    {
        var bytes = answer == "HUGE"
            ? Encoding.ASCII.GetBytes("HTTP/1.1 407 x\r\nX: " + new string('a', 64 * 1024) + "\r\n\r\n")
            : Encoding.Latin1.GetBytes(answer);
        var (listener, loop) = await FakeParentAsync(bytes);
        await using (listener)
        {
            await using var child = await ProxyServer.StartAsync(ProxyServerTests.TestOptions(_origin.Port) with
            {
                Parent = new DnsEndPoint("127.0.0.1", listener.LocalEndPoint.Port),
                ParentCredentials = new NetworkCredential("u", "p"),
            }, SystemNetwork.Instance);
            for (var i = 0; i < 2; i++)
            {
                await using var t = await RawClient.ConnectAsync(child.HttpEndPoint);
                await t.SendAsync($"CONNECT 127.0.0.1:{_origin.Port} HTTP/1.1\r\nHost: 127.0.0.1:{_origin.Port}\r\n\r\n");
                Assert.Equal(502, (await t.ReadResponseAsync()).Status);
            }

            await using var c = await RawClient.ConnectAsync(child.HttpEndPoint);
            await c.SendAsync($"GET http://127.0.0.1:{_origin.Port}/hello HTTP/1.1\r\nHost: a\r\n\r\n");
            // a forwarded request is answered (502, or the parent's 200 when that is a valid response)
            Assert.Contains((await c.ReadResponseAsync()).Status, new[] { 200, 502 });
        }

        await loop;
    }

    [Theory]
    [InlineData("proxy.example:3128", "proxy.example", 3128, null, null)]
    [InlineData("http://proxy.example:8080/", "proxy.example", 8080, null, null)]
    [InlineData("HTTP://u:p@10.0.0.1:3128", "10.0.0.1", 3128, "u", "p")]
    [InlineData("http://u@[::1]:3128", "::1", 3128, "u", "")]
    [InlineData("http://al%40ice:p%3Ass%25w@h:1", "h", 1, "al@ice", "p:ss%w")]
    [InlineData("http://u:p@ss@h:2", "h", 2, "u", "p@ss")] // the last '@' ends the user info, as curl reads it
    public void TryParseParent_AcceptsHostPortAndHttpUrlsWithCredentials(string text, string host, int port,
        string? user, string? password)
    {
        Assert.True(ProxyOptions.TryParseParent(text, out var parent, out var credentials, out var error), error);
        Assert.Equal(host, parent.Host);
        Assert.Equal(port, parent.Port);
        Assert.Equal(user, credentials?.UserName);
        Assert.Equal(password, credentials?.Password);
    }

    [Theory]
    [InlineData("")]
    [InlineData("proxy.example")]
    [InlineData("proxy.example:0")]
    [InlineData("proxy.example:65536")]
    [InlineData("https://u:p@h:443")]
    [InlineData("socks5://h:1080")]
    [InlineData("u:p@h:3128")]
    [InlineData("http://:p@h:3128")]
    [InlineData("http://u%3:p@h:3128")]
    [InlineData("http://u%C3:p@h:3128")]
    [InlineData("http://h:3128/path")]
    [InlineData("http://::1:3128")]
    [InlineData("http://[nothex]:3128")]
    [InlineData("http://h h:3128")]
    [InlineData("http://u:secret@h")]
    public void TryParseParent_RefusesMalformedInput_WithoutEchoingCredentials(string text)
    {
        Assert.False(ProxyOptions.TryParseParent(text, out var parent, out var credentials, out var error));
        Assert.Null(parent);
        Assert.Null(credentials);
        Assert.False(string.IsNullOrEmpty(error));
        Assert.DoesNotContain("secret", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Fuzz_TryParseParent_NeverThrows()
    {
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(2000), Prop.ForAll(ArbMap.Default.ArbFor<string>(),
            (string text) =>
            {
                ProxyOptions.TryParseParent(text, out _, out _, out _);
                ProxyOptions.TryParseParent("http://" + text + "@h:1", out _, out _, out _);
                ProxyOptions.TryParseParent("http://u:" + text + ":1", out _, out _, out _);
            }));
    }

    [Fact]
    public void OptionsText_NamesEveryOption_ButNoCredentials()
    {
        var options = ProxyServerTests.TestOptions() with
        {
            Credentials = "alice:own-secret",
            Parent = new DnsEndPoint("parent.example", 3128),
            ParentCredentials = new NetworkCredential("bob", "parent-secret"),
        };
        var text = options.ToString();
        Assert.DoesNotContain("secret", text, StringComparison.Ordinal);
        Assert.Contains("Credentials = (set)", text, StringComparison.Ordinal);
        Assert.Contains("parent.example", text, StringComparison.Ordinal);
        Assert.Contains("MinRequestBodyDataRate = 240", text, StringComparison.Ordinal);
        Assert.Contains("ConnectPorts = [443]", text, StringComparison.Ordinal);
    }

    [Fact]
    public void ParentCredentials_AreValidated()
    {
        var ok = ProxyServerTests.TestOptions() with { Parent = new DnsEndPoint("h", 1) };
        Assert.Throws<ArgumentException>(() => (ProxyServerTests.TestOptions() with
        {
            ParentCredentials = new NetworkCredential("u", "p"),
        }).Validate());
        Assert.Throws<ArgumentException>(() => (ok with { ParentCredentials = new NetworkCredential("u:x", "p") }).Validate());
        Assert.Throws<ArgumentException>(() => (ok with { ParentCredentials = new NetworkCredential("", "p") }).Validate());
        (ok with { ParentCredentials = new NetworkCredential("u", "") }).Validate();
    }
}
