using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace NatKit.Cli.Tests;

/// <summary>`natkit proxy serve` as an operator runs it: SIGHUP re-reads the client networks and the credentials
/// from --config without touching an open tunnel; SIGTERM stops accepting, lets the open tunnel finish (or cuts
/// it at --drain-timeout), prints the summary and exits 0. A real process, real signals, a real echo server.</summary>
public sealed class ProxyReloadDrainTests : IAsyncLifetime
{
    private readonly string _dir = Directory.CreateTempSubdirectory("natkit-proxyreload-").FullName;
    private readonly TcpListener _echo = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new(Natkit.Deadline);
    private readonly Task _echoLoop;

    public ProxyReloadDrainTests()
    {
        _echo.Start();
        _echoLoop = EchoAsync();
    }

    private int EchoPort => ((IPEndPoint)_echo.LocalEndpoint).Port;

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        await _stop.CancelAsync();
        _echo.Stop();
        await _echoLoop;
        _stop.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private async Task EchoAsync()
    {
        var sessions = new List<Task>();
        try
        {
            while (true)
            {
                var client = await _echo.AcceptTcpClientAsync(_stop.Token);
                sessions.Add(Task.Run(async () =>
                {
                    using (client)
                    {
                        var stream = client.GetStream();
                        var buffer = new byte[1024];
                        int n;
                        try
                        {
                            while ((n = await stream.ReadAsync(buffer, _stop.Token)) > 0)
                            {
                                await stream.WriteAsync(buffer.AsMemory(0, n), _stop.Token);
                            }
                        }
                        catch (Exception e) when (e is IOException or OperationCanceledException)
                        {
                        }
                    }
                }));
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }

        await Task.WhenAll(sessions);
    }

    private string WriteConfig(string extra)
    {
        var config = Path.Combine(_dir, "proxy.yaml");
        File.WriteAllText(config, $"""
            listen: 127.0.0.1:0
            allow-loopback-destinations: true
            connect-ports: "{EchoPort}"
            {extra}
            """);
        return config;
    }

    /// <summary>Opens a CONNECT tunnel through the proxy to the echo server; returns the status and the
    /// connection (disposed by the caller).</summary>
    private async Task<(int Status, TcpClient Client)> ConnectAsync(int proxyPort, string? credentials = null)
    {
        var client = new TcpClient(AddressFamily.InterNetwork);
        await client.ConnectAsync(IPAddress.Loopback, proxyPort, _stop.Token);
        var auth = credentials is null ? ""
            : $"Proxy-Authorization: Basic {Convert.ToBase64String(Encoding.UTF8.GetBytes(credentials))}\r\n";
        var request = $"CONNECT 127.0.0.1:{EchoPort} HTTP/1.1\r\nHost: 127.0.0.1:{EchoPort}\r\n{auth}\r\n";
        var stream = client.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes(request), _stop.Token);
        var head = new StringBuilder();
        var one = new byte[1];
        while (!head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal) &&
               await stream.ReadAsync(one, _stop.Token) == 1)
        {
            head.Append((char)one[0]);
        }

        var status = head.Length > 12 ? int.Parse(head.ToString(9, 3), CultureInfo.InvariantCulture) : 0;
        return (status, client);
    }

    /// <summary>Starts `proxy serve --config` with <paramref name="extraConfig"/> and opens one tunnel through it
    /// (asserted 200).</summary>
    private async Task<(ExternalProcess Server, string Config, int Port, TcpClient Tunnel)> StartWithTunnelAsync(string extraConfig)
    {
        var config = WriteConfig(extraConfig);
        var server = await Natkit.StartAsync("Ctrl+C stops", "proxy", "serve", "--config", config);
        var port = Natkit.PortAfter(server.Output, "proxy http://127.0.0.1:");
        var (status, tunnel) = await ConnectAsync(port);
        if (status != 200)
        {
            tunnel.Dispose();
            await server.DisposeAsync();
            Assert.Fail($"CONNECT through the proxy: {status}: {server.Output}");
        }

        return (server, config, port, tunnel);
    }

    private async Task AssertEchoesAsync(TcpClient tunnel, string text)
    {
        var stream = tunnel.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes(text), _stop.Token);
        var buffer = new byte[text.Length];
        await stream.ReadExactlyAsync(buffer, _stop.Token);
        Assert.Equal(text, Encoding.ASCII.GetString(buffer));
    }

    [Fact]
    public async Task Sighup_ReloadsTheClientNetworksAndCredentials_WithoutDroppingAnOpenTunnel()
    {
        var (started, config, port, tunnel) = await StartWithTunnelAsync("allow: [127.0.0.0/8]\ndrain-timeout: 0");
        await using var server = started;
        using (tunnel)
        {
            await AssertEchoesAsync(tunnel, "before any reload");

            // credentials from the file now: a new tunnel without them is answered 407, the open one goes on
            await File.WriteAllTextAsync(config, File.ReadAllText(config) + "\nauth: alice:s3cret\n", _stop.Token);
            server.Signal(Natkit.SigHup);
            await server.WaitForOutputAsync("credentials set", Natkit.Deadline);
            var (without, c1) = await ConnectAsync(port);
            c1.Dispose();
            Assert.Equal(407, without);
            var (with, c2) = await ConnectAsync(port, "alice:s3cret");
            c2.Dispose();
            Assert.Equal(200, with);
            await AssertEchoesAsync(tunnel, "after the credentials changed");

            // loopback no longer among the client networks: a new client is refused, the open tunnel goes on
            await File.WriteAllTextAsync(config, File.ReadAllText(config).Replace("allow: [127.0.0.0/8]",
                "allow: [10.0.0.0/8]", StringComparison.Ordinal), _stop.Token);
            server.Signal(Natkit.SigHup);
            await server.WaitForOutputAsync("clients allowed from [10.0.0.0/8]", Natkit.Deadline);
            var (refused, c3) = await ConnectAsync(port, "alice:s3cret");
            c3.Dispose();
            Assert.Equal(403, refused);
            await AssertEchoesAsync(tunnel, "after the networks changed");

            // a file that would fail is logged and changes nothing
            await File.WriteAllTextAsync(config, File.ReadAllText(config) + "\nallow: [not-a-network]\n", _stop.Token);
            server.Signal(Natkit.SigHup);
            await server.WaitForOutputAsync("reload refused", Natkit.Deadline);
            await AssertEchoesAsync(tunnel, "after a refused reload");
        }

        Assert.Equal(0, await Natkit.StopAsync(server));
        Assert.DoesNotContain("s3cret", server.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StatusJson_IsOneArray_WithTheOpenTunnelNamedByItsId()
    {
        var (started, _, port, tunnel) = await StartWithTunnelAsync("drain-timeout: 0");
        await using var server = started;
        using (tunnel)
        {
            await AssertEchoesAsync(tunnel, "counted");
            var (code, output, errors) = await Natkit.RunAsync("proxy", "status", "--proxy", $"127.0.0.1:{port}", "--json");
            Assert.True(code == 0, output + errors);
            using var json = System.Text.Json.JsonDocument.Parse(output);
            var records = json.RootElement.EnumerateArray().ToList();
            var open = Assert.Single(records, r => r.GetProperty("target").GetString() is { } t && t.EndsWith($":{EchoPort}", StringComparison.Ordinal));
            Assert.Equal("name", open.EnumerateObject().First().Name);
            Assert.Equal(open.GetProperty("id").GetInt64().ToString(CultureInfo.InvariantCulture), open.GetProperty("name").GetString());
            Assert.Equal("127.0.0.1", System.Net.IPEndPoint.Parse(open.GetProperty("client").GetString()!).Address.ToString());
        }

        Assert.Equal(0, await Natkit.StopAsync(server));
    }

    [Fact]
    public async Task Sigterm_LetsAnOpenTunnelFinish_RefusingNewClients_ThenExits0WithTheSummary()
    {
        var (started, _, port, tunnel) = await StartWithTunnelAsync("drain-timeout: 600");
        await using var server = started;
        using (tunnel)
        {
            server.Signal(Natkit.SigTerm);
            await server.WaitForOutputAsync("draining: 1 connection(s)", Natkit.Deadline);

            await AssertEchoesAsync(tunnel, "still here while the proxy drains");
            using var late = new TcpClient(AddressFamily.InterNetwork);
            await Assert.ThrowsAnyAsync<SocketException>(() => late.ConnectAsync(IPAddress.Loopback, port, _stop.Token).AsTask());
            Assert.False(server.HasExited);
        }

        // the client ended its tunnel: the drain is over before its deadline
        Assert.Equal(0, await server.WaitForExitAsync(Natkit.Deadline));
        Assert.Contains("stopped: 0 connection(s) cut, 1 finished while draining", server.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Sigterm_CutsATunnelStillOpenAtTheDrainTimeout_AndExits0()
    {
        var (started, _, _, tunnel) = await StartWithTunnelAsync("drain-timeout: 0.2");
        await using var server = started;
        using (tunnel)
        {
            Assert.Equal(0, await Natkit.StopAsync(server));
            Assert.Contains("stopped: 1 connection(s) cut, 0 finished while draining", server.Output, StringComparison.Ordinal);
            // the proxy closed its side: the client reads the end of the stream (or a reset)
            var buffer = new byte[16];
            try
            {
                Assert.Equal(0, await tunnel.GetStream().ReadAsync(buffer, _stop.Token));
            }
            catch (IOException)
            {
            }
        }
    }

    [Fact]
    public async Task ABadDrainTimeout_IsRefusedAtStart()
    {
        Natkit.AssertRefused(await Natkit.RunAsync("proxy", "serve", "--listen", "127.0.0.1:0", "--drain-timeout", "-1"),
            "--drain-timeout -1: must be 0 to 86400 seconds");
        Natkit.AssertRefused(await Natkit.RunAsync("turn", "serve", "--user", "a:b", "--listen", "127.0.0.1:0", "--drain-timeout", "x"),
            "--drain-timeout x: expected a number");
    }
}
