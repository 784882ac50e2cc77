using System.Net;
using System.Net.WebSockets;
using NatKit.Net;
using NatKit.Proxy.Tests.Support;
using NatKit.TestSupport;

namespace NatKit.Proxy.Tests.Interop;

/// <summary>Real curl through the proxy over loopback; every test checks the bytes that arrived.</summary>
public sealed class CurlInteropTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private Origin _origin = null!;
    private ProxyServer _proxy = null!;

    public async Task InitializeAsync()
    {
        _origin = await Origin.StartAsync();
        _proxy = await ProxyServer.StartAsync(ProxyServerTests.TestOptions(_origin.Port) with
        {
            SocksListen = new IPEndPoint(IPAddress.Loopback, 0),
        }, SystemNetwork.Instance);
    }

    public async Task DisposeAsync()
    {
        await _proxy.DisposeAsync();
        await _origin.DisposeAsync();
    }

    private string ProxyUrl => $"http://127.0.0.1:{_proxy.HttpEndPoint.Port}";

    [PeerFact("curl")]
    public async Task Curl_Get_ThroughTheProxy()
    {
        var r = await Curl.RunAsync(["-x", ProxyUrl, $"http://127.0.0.1:{_origin.Port}/hello"], Timeout);
        Assert.True(r.ExitCode == 0, r.Errors);
        Assert.Equal("hello world", r.Text);
    }

    [PeerFact("curl")]
    public async Task Curl_Head_ThroughTheProxy()
    {
        var r = await Curl.RunAsync(["-I", "-x", ProxyUrl, $"http://127.0.0.1:{_origin.Port}/hello"], Timeout);
        Assert.True(r.ExitCode == 0, r.Errors);
        Assert.StartsWith("HTTP/1.1 200", r.Text, StringComparison.Ordinal);
        Assert.Contains("Via: 1.1 natkit", r.Text, StringComparison.Ordinal);
    }

    [PeerFact("curl")]
    public async Task Curl_ConnectTunnel_ToALocalTlsServer()
    {
        await using var tls = await Origin.StartAsync(tls: true);
        await using var proxy = await ProxyServer.StartAsync(ProxyServerTests.TestOptions(tls.Port), SystemNetwork.Instance);
        var r = await Curl.RunAsync(["-k", "-x", $"http://127.0.0.1:{proxy.HttpEndPoint.Port}",
            $"https://127.0.0.1:{tls.Port}/hello"], Timeout);
        Assert.True(r.ExitCode == 0, r.Errors);
        Assert.Equal("hello world", r.Text);
    }

    [PeerFact("curl")]
    public async Task Curl_ConnectTunnel_ToAPortNotAllowed_Gets403()
    {
        await using var tls = await Origin.StartAsync(tls: true);
        var r = await Curl.RunAsync(["-k", "-x", ProxyUrl, $"https://127.0.0.1:{tls.Port}/hello"], Timeout);
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("403", r.Errors, StringComparison.Ordinal);
    }

    [PeerFact("curl")]
    public async Task Curl_Socks5Hostname_ConnectsByName()
    {
        var r = await Curl.RunAsync(["--socks5-hostname", $"127.0.0.1:{_proxy.SocksEndPoint!.Port}",
            $"http://localhost:{_origin.Port}/hello"], Timeout);
        Assert.True(r.ExitCode == 0, r.Errors);
        Assert.Equal("hello world", r.Text);
    }

    [PeerFact("curl")]
    public async Task Curl_Socks5_WithUserPassword_Rfc1929()
    {
        await using var proxy = await ProxyServer.StartAsync(ProxyServerTests.TestOptions() with
        {
            SocksListen = new IPEndPoint(IPAddress.Loopback, 0),
            Credentials = "bob:pa55",
        }, SystemNetwork.Instance);
        var port = proxy.SocksEndPoint!.Port;
        var ok = await Curl.RunAsync(["-x", $"socks5h://bob:pa55@127.0.0.1:{port}",
            $"http://127.0.0.1:{_origin.Port}/hello"], Timeout);
        Assert.True(ok.ExitCode == 0, ok.Errors);
        Assert.Equal("hello world", ok.Text);
        var bad = await Curl.RunAsync(["-x", $"socks5h://bob:wrong@127.0.0.1:{port}",
            $"http://127.0.0.1:{_origin.Port}/hello"], Timeout);
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Equal(0, bad.Length);
    }

    [PeerFact("curl")]
    public async Task Curl_BasicProxyAuth()
    {
        await using var proxy = await ProxyServer.StartAsync(ProxyServerTests.TestOptions() with
        {
            Credentials = "carol:pw",
        }, SystemNetwork.Instance);
        var url = $"http://127.0.0.1:{_origin.Port}/hello";
        var proxyUrl = $"http://127.0.0.1:{proxy.HttpEndPoint.Port}";
        var denied = await Curl.RunAsync(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-x", proxyUrl, url], Timeout);
        Assert.Equal("407", denied.Text);
        var ok = await Curl.RunAsync(["-x", proxyUrl, "--proxy-user", "carol:pw", url], Timeout);
        Assert.Equal("hello world", ok.Text);
    }

    [Fact]
    public async Task WebSocket_ThroughConnect_EchoesBytes()
    {
        using var ws = new ClientWebSocket();
        ws.Options.Proxy = new WebProxy(ProxyUrl);
        using var cts = new CancellationTokenSource(Timeout);
        await ws.ConnectAsync(new Uri($"ws://127.0.0.1:{_origin.Port}/ws"), cts.Token);
        var payload = new byte[100_000];
        new Random(7).NextBytes(payload);
        await ws.SendAsync(payload, WebSocketMessageType.Binary, true, cts.Token);
        var received = new MemoryStream();
        var buffer = new byte[16384];
        while (received.Length < payload.Length)
        {
            var r = await ws.ReceiveAsync(buffer, cts.Token);
            received.Write(buffer, 0, r.Count);
        }

        Assert.Equal(payload, received.ToArray());
        Assert.Contains(_proxy.Connections.Snapshot(), f => f.Kind == "connect");
        await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, null, cts.Token);
    }

    [Fact]
    public async Task WebSocket_UpgradeThroughTheForwardPath_IsCarriedThrough()
    {
        await using var c = await RawClient.ConnectAsync(_proxy.HttpEndPoint);
        await c.SendAsync($"GET http://127.0.0.1:{_origin.Port}/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n" +
                          "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
        var r = await c.ReadResponseAsync();
        Assert.Equal(101, r.Status);
        Assert.Equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", r.Field("Sec-WebSocket-Accept"));
        // one masked text frame "hi" (RFC 6455 5.2), echoed unmasked
        byte[] mask = [1, 2, 3, 4];
        var text = "hi"u8.ToArray();
        await c.SendAsync([0x81, 0x82, .. mask, (byte)(text[0] ^ mask[0]), (byte)(text[1] ^ mask[1])]);
        var echo = await c.ReadExactAsync(4);
        Assert.Equal(new byte[] { 0x81, 0x02, (byte)'h', (byte)'i' }, echo);
    }
}

/// <summary>100 MB uploads in both framings, streamed through the proxy to an echoing origin and back.</summary>
public sealed class CurlBulkTests : IClassFixture<BigPayload>, IAsyncLifetime
{
    private readonly BigPayload _payload;
    private Origin _origin = null!;
    private ProxyServer _proxy = null!;

    public CurlBulkTests(BigPayload payload)
    {
        _payload = payload;
    }

    public async Task InitializeAsync()
    {
        _origin = await Origin.StartAsync();
        _proxy = await ProxyServer.StartAsync(ProxyServerTests.TestOptions(), SystemNetwork.Instance);
    }

    public async Task DisposeAsync()
    {
        await _proxy.DisposeAsync();
        await _origin.DisposeAsync();
    }

    [PeerTheory("curl")]
    [InlineData("POST", false)]
    [InlineData("POST", true)]
    [InlineData("PUT", false)]
    [InlineData("PUT", true)]
    public async Task Curl_100MB_Upload_ArrivesAndReturnsIntact(string method, bool chunked)
    {
        var id = Guid.NewGuid().ToString("N");
        List<string> args = ["-x", $"http://127.0.0.1:{_proxy.HttpEndPoint.Port}", "-X", method, "-T", _payload.Path,
            "-H", $"X-Test-Id: {id}"];
        if (chunked)
        {
            args.AddRange(["-H", "Transfer-Encoding: chunked"]);
        }

        args.Add($"http://127.0.0.1:{_origin.Port}/echo");
        var r = await Curl.RunAsync(args, TimeSpan.FromSeconds(120));
        Assert.True(r.ExitCode == 0, r.Errors);
        Assert.Equal(BigPayload.Size, _origin.Received[id].Length);
        Assert.Equal(_payload.Sha256, _origin.Received[id].Sha256);
        Assert.Equal(BigPayload.Size, r.Length);
        Assert.Equal(_payload.Sha256, r.Sha256);
        var flowsLeft = _proxy.Connections.Count;
        Assert.True(flowsLeft <= 1, $"{flowsLeft} flows left");
    }
}
