using System.Net;
using System.Text;
using NatKit.Net;
using NatKit.Proxy.Tests.Support;

namespace NatKit.Proxy.Tests;

/// <summary>The access log an operator reads: each tunnel logged when it ends, with the bytes it moved and how
/// long it lived (HTTP CONNECT and SOCKS5 alike); 407s and refusals logged; the status endpoint behind --auth.</summary>
public sealed class ProxyLogTests : IAsyncLifetime
{
    private Origin _origin = null!;

    public async Task InitializeAsync() => _origin = await Origin.StartAsync();

    public async Task DisposeAsync() => await _origin.DisposeAsync();

    private static readonly byte[] Get = Encoding.ASCII.GetBytes("GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");

    [Fact]
    public async Task AConnectTunnel_IsLoggedWhenItEnds_WithItsBytes()
    {
        var log = new ListLogger();
        await using var proxy = await ProxyServer.StartAsync(ProxyServerTests.TestOptions(_origin.Port), SystemNetwork.Instance, log);
        await using var c = await RawClient.ConnectAsync(proxy.HttpEndPoint);
        await c.SendAsync($"CONNECT 127.0.0.1:{_origin.Port} HTTP/1.1\r\nHost: 127.0.0.1:{_origin.Port}\r\n\r\n");
        Assert.Equal(200, (await c.ReadResponseAsync(head: true)).Status);
        Assert.Empty(log.Lines(1)); // open: nothing to report yet

        await c.SendAsync(Get);
        Assert.Contains("hello world", Encoding.ASCII.GetString(await c.ReadToEndAsync()), StringComparison.Ordinal);
        await c.DisposeAsync(); // the tunnel ends when both sides have closed
        await log.WhenLogged(1).WaitAsync(TimeSpan.FromSeconds(10));
        var line = Assert.Single(log.Lines(1));
        Assert.Matches($"^127\\.0\\.0\\.1:[0-9]+ CONNECT 127\\.0\\.0\\.1:{_origin.Port} 200 up={Get.Length} down=[1-9][0-9]+ [0-9]+ms$", line);
    }

    [Fact]
    public async Task ASocks5Connect_IsLoggedWhenItEnds_WithTheReplyCodeAndBytes()
    {
        var log = new ListLogger();
        var options = ProxyServerTests.TestOptions() with { SocksListen = new IPEndPoint(IPAddress.Loopback, 0) };
        await using var proxy = await ProxyServer.StartAsync(options, SystemNetwork.Instance, log);
        await using var c = await RawClient.ConnectAsync(proxy.SocksEndPoint!);
        await c.SendAsync([5, 1, 0]);
        Assert.Equal([5, 0], await c.ReadExactAsync(2));
        await c.SendAsync([5, 1, 0, 1, 127, 0, 0, 1, (byte)(_origin.Port >> 8), (byte)_origin.Port]);
        Assert.Equal(0, (await c.ReadExactAsync(10))[1]);
        await c.SendAsync(Get);
        Assert.Contains("hello world", Encoding.ASCII.GetString(await c.ReadToEndAsync()), StringComparison.Ordinal);
        await c.DisposeAsync(); // the tunnel ends when both sides have closed
        await log.WhenLogged(1).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Matches($"^127\\.0\\.0\\.1:[0-9]+ SOCKS5-CONNECT 127\\.0\\.0\\.1:{_origin.Port} 0 up={Get.Length} down=[1-9][0-9]+ [0-9]+ms$",
            Assert.Single(log.Lines(1)));
    }

    [Fact]
    public async Task A407_IsLogged_AndTheStatusEndpointNeedsTheCredentialsToo()
    {
        var log = new ListLogger();
        await using var proxy = await ProxyServer.StartAsync(ProxyServerTests.TestOptions() with { Credentials = "alice:s3cret" },
            SystemNetwork.Instance, log);
        await using (var c = await RawClient.ConnectAsync(proxy.HttpEndPoint))
        {
            await c.SendAsync($"GET http://127.0.0.1:{_origin.Port}/hello HTTP/1.1\r\nHost: a\r\n\r\n");
            Assert.Equal(407, (await c.ReadResponseAsync()).Status);
        }

        await log.WhenLogged(4).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Contains(log.Lines(4), l => l.Contains("refused: 407", StringComparison.Ordinal));

        await using (var c = await RawClient.ConnectAsync(proxy.HttpEndPoint))
        {
            await c.SendAsync($"GET {proxy.Options.StatusPath} HTTP/1.1\r\nHost: a\r\n\r\n");
            Assert.Equal(407, (await c.ReadResponseAsync()).Status);
        }

        await using var ok = await RawClient.ConnectAsync(proxy.HttpEndPoint);
        var token = Convert.ToBase64String(Encoding.UTF8.GetBytes("alice:s3cret"));
        await ok.SendAsync($"GET {proxy.Options.StatusPath} HTTP/1.1\r\nHost: a\r\nProxy-Authorization: Basic {token}\r\n\r\n");
        var status = await ok.ReadResponseAsync();
        Assert.Equal(200, status.Status);
        Assert.Contains("\"flows\"", status.Text, StringComparison.Ordinal);
    }
}
