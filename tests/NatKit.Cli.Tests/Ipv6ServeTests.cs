namespace NatKit.Cli.Tests;

/// <summary>Every serve and probe verb on IPv6 loopback: it binds where it was told (the port included), prints
/// its banner as plain text when piped, and on SIGTERM or SIGINT drains, prints its summary and exits 0.</summary>
public sealed class Ipv6ServeTests
{
    [Fact]
    public async Task StunServe_OnIpv6Loopback_AnswersStunProbe_AndSigtermPrintsTheSummary()
    {
        await using var server = await Natkit.StartAsync("Ctrl+C stops", "stun", "serve", "--listen", "[::1]:0", "--no-tcp");
        var port = Natkit.PortAfter(server.Output, "udp       │ [::1]:");
        Assert.NotEqual(3478, port);

        var probe = await Natkit.RunAsync("stun", "probe", $"[::1]:{port}", "--requests", "3", "--rto", "200");
        Assert.True(probe.ExitCode == 0, probe.Output + probe.Errors);
        Assert.Contains($"[::1]:{port}", probe.Output, StringComparison.Ordinal);
        Assert.Matches("mapped endpoint +│ \\[::1\\]:[0-9]+", probe.Output);
        Natkit.AssertPlain(probe.Output);

        Assert.Equal(0, await Natkit.StopAsync(server));
        Assert.Matches("stopped: requests [1-9]", server.Output);
        Natkit.AssertPlain(server.Output);
    }

    [Fact]
    public async Task StunServe_TcpOnlyOnIpv6Loopback_AndSigintExits0()
    {
        await using var server = await Natkit.StartAsync("Ctrl+C stops", "stun", "serve", "--listen", "[::1]:0", "--no-udp");
        Assert.Contains("tcp       │ [::1]:", server.Output, StringComparison.Ordinal);
        Assert.Equal(0, await Natkit.StopAsync(server, Natkit.SigInt));
        Assert.Contains("stopped:", server.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TurnServe_OnIpv6Loopback_UdpAndTcp_AndSigtermReleasesAndExits0()
    {
        await using var server = await Natkit.StartAsync("Ctrl+C stops", "turn", "serve", "--user", "a:b", "--listen",
            "[::1]:0", "--tcp", "[::1]:0");
        Assert.Contains("udp       │ [::1]:", server.Output, StringComparison.Ordinal);
        Assert.Contains("tcp       │ [::1]:", server.Output, StringComparison.Ordinal);
        Assert.Equal(0, await Natkit.StopAsync(server));
        Assert.Contains("stopped: 0 allocation(s) released", server.Output, StringComparison.Ordinal);
        Natkit.AssertPlain(server.Output);
    }

    [Fact]
    public async Task ProxyServe_OnIpv6Loopback_HttpAndSocks_AndSigtermExits0()
    {
        await using var server = await Natkit.StartAsync("socks5", "proxy", "serve", "--listen", "[::1]:0", "--socks",
            "[::1]:0", "--quiet");
        var port = Natkit.PortAfter(server.Output, "proxy http://[::1]:");
        Assert.Contains("socks5 [::1]:", server.Output, StringComparison.Ordinal);

        var status = await Natkit.RunAsync("proxy", "status", "--proxy", $"[::1]:{port}");
        Assert.True(status.ExitCode == 0, status.Output + status.Errors);
        Assert.Matches("[0-9]+ live flows", status.Output);
        // piped: the ten-column header on one line, not wrapped at 80 columns
        Assert.Matches("id +│ kind +│ client +│ proxy port +│ server +│ target +│ up +│ down +│ requests +│ age", status.Output);
        Natkit.AssertPlain(status.Output);

        Assert.Equal(0, await Natkit.StopAsync(server));
        Assert.Contains("stopped:", server.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StunProbe_OfABareIpv6Address_WithNoServer_SaysUnreachable_Exit1_NoCrash()
    {
        // a port nothing listens on: found by binding and releasing it
        int port;
        using (var s = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetworkV6,
                   System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp))
        {
            s.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.IPv6Loopback, 0));
            port = ((System.Net.IPEndPoint)s.LocalEndPoint!).Port;
        }

        var probe = await Natkit.RunAsync("stun", "probe", $"[::1]:{port}", "--requests", "1", "--rto", "50");
        Assert.True(probe.ExitCode == 1, probe.Output + probe.Errors);
        Assert.Contains("no answer", probe.Output, StringComparison.Ordinal);
        Natkit.AssertPlain(probe.Output);
    }
}
