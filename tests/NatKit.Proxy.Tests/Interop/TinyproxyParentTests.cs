using System.Net;
using NatKit.Net;
using NatKit.Proxy.Tests.Support;
using NatKit.TestSupport;

namespace NatKit.Proxy.Tests.Interop;

/// <summary>curl through NatKit's proxy to a real parent: tinyproxy with BasicAuth, on loopback.</summary>
public sealed class TinyproxyParentTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private Origin _origin = null!;
    private string _dir = null!;

    public async Task InitializeAsync()
    {
        _origin = await Origin.StartAsync();
        _dir = Directory.CreateTempSubdirectory("natkit-tinyproxy-parent-").FullName;
    }

    public async Task DisposeAsync()
    {
        await _origin.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    /// <summary>tinyproxy in the foreground on 127.0.0.1 only, wanting Basic credentials, CONNECT allowed to
    /// the origin's port.</summary>
    private async Task<(ExternalProcess Process, int Port)> StartTinyproxyAsync()
    {
        int port;
        await using (var probe = await SystemNetwork.Instance.ListenTcpAsync(new IPEndPoint(IPAddress.Loopback, 0)))
        {
            port = probe.LocalEndPoint.Port;
        }

        var conf = Path.Combine(_dir, "tinyproxy.conf");
        var user = Environment.UserName == "root" ? "User nobody\nGroup nogroup\n" : "";
        await File.WriteAllTextAsync(conf, $"{user}Port {port}\nListen 127.0.0.1\nTimeout 30\nAllow 127.0.0.1\n" +
            $"LogLevel Info\nBasicAuth parentuser s3cret\nConnectPort {_origin.Port}\n");
        var process = ExternalProcess.Start("tinyproxy", ["-d", "-c", conf]);
        try
        {
            await process.WaitForOutputAsync("Accepting connections", Timeout);
        }
        catch
        {
            await process.DisposeAsync();
            throw;
        }

        return (process, port);
    }

    /// <summary>tinyproxy as the parent of a NatKit proxy configured with <paramref name="parentUrl"/> (PORT
    /// stands for tinyproxy's port).</summary>
    private async Task<Chain> StartChainAsync(string parentUrl)
    {
        var (tinyproxy, port) = await StartTinyproxyAsync();
        try
        {
            Assert.True(ProxyOptions.TryParseParent(parentUrl.Replace("PORT", port.ToString(
                System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal), out var p, out var c, out _));
            var child = await ProxyServer.StartAsync(ProxyServerTests.TestOptions(_origin.Port) with
            {
                Parent = p,
                ParentCredentials = c,
            }, SystemNetwork.Instance);
            return new Chain(tinyproxy, child, $"http://127.0.0.1:{child.HttpEndPoint.Port}",
                $"http://127.0.0.1:{_origin.Port}/hello");
        }
        catch
        {
            await tinyproxy.DisposeAsync();
            throw;
        }
    }

    private sealed record Chain(ExternalProcess Tinyproxy, ProxyServer Child, string ProxyUrl, string Url) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await Child.DisposeAsync();
            await Tinyproxy.DisposeAsync();
        }
    }

    [PeerFact("tinyproxy", "curl")]
    public async Task Curl_ThroughNatKit_ToTinyproxyWithBasicAuth_GetAndConnect()
    {
        await using var chain = await StartChainAsync("http://parentuser:s3cret@127.0.0.1:PORT");
        var (proxy, url) = (chain.ProxyUrl, chain.Url);
        var get = await Curl.RunAsync(["-x", proxy, url], Timeout);
        Assert.True(get.ExitCode == 0, get.Errors);
        Assert.Equal("hello world", get.Text);
        var tunnel = await Curl.RunAsync(["-p", "-x", proxy, url], Timeout); // -p: CONNECT even for http://
        Assert.True(tunnel.ExitCode == 0, tunnel.Errors);
        Assert.Equal("hello world", tunnel.Text);
    }

    [PeerFact("tinyproxy", "curl")]
    public async Task Curl_ThroughNatKit_ToTinyproxy_WithoutCredentials_Gets502WithTheReason()
    {
        await using var chain = await StartChainAsync("127.0.0.1:PORT");
        var (proxy, url) = (chain.ProxyUrl, chain.Url);
        var get = await Curl.RunAsync(["-w", "%{http_code}", "-x", proxy, url], Timeout);
        Assert.EndsWith("502", get.Text, StringComparison.Ordinal);
        Assert.Contains("no parent credentials are configured", get.Text, StringComparison.Ordinal);
        await AssertCurlTunnelGets502Async(chain);
    }

    [PeerFact("tinyproxy", "curl")]
    public async Task Curl_ThroughNatKit_ToTinyproxyRefusingTheCredentials_SeesTinyproxys401_Or502ForConnect()
    {
        await using var chain = await StartChainAsync("http://parentuser:wrong@127.0.0.1:PORT");
        var (proxy, url) = (chain.ProxyUrl, chain.Url);

        // tinyproxy answers wrong credentials with 401 (not 407), which cannot be told from an origin's 401:
        // it passes through as tinyproxy said it
        var get = await Curl.RunAsync(["-w", "%{http_code}", "-x", proxy, url], Timeout);
        Assert.EndsWith("401", get.Text, StringComparison.Ordinal);
        await AssertCurlTunnelGets502Async(chain);
        var raw = await RawConnectAsync(chain.Child.HttpEndPoint);
        Assert.Contains("the parent proxy answered 401 to CONNECT", raw, StringComparison.Ordinal);
    }

    /// <summary>curl -p (CONNECT) through the chain fails with "CONNECT tunnel failed, response 502".</summary>
    private static async Task AssertCurlTunnelGets502Async(Chain chain)
    {
        var tunnel = await Curl.RunAsync(["-p", "-x", chain.ProxyUrl, chain.Url], Timeout);
        Assert.NotEqual(0, tunnel.ExitCode);
        Assert.Contains("502", tunnel.Errors, StringComparison.Ordinal);
    }

    private async Task<string> RawConnectAsync(IPEndPoint proxy)
    {
        await using var c = await RawClient.ConnectAsync(proxy);
        await c.SendAsync($"CONNECT 127.0.0.1:{_origin.Port} HTTP/1.1\r\nHost: 127.0.0.1:{_origin.Port}\r\n\r\n");
        var r = await c.ReadResponseAsync();
        Assert.Equal(502, r.Status);
        return r.Text;
    }
}
