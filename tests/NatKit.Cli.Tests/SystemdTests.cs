using System.Net;
using System.Net.Sockets;
using System.Text;

namespace NatKit.Cli.Tests;

/// <summary>The server verbs as systemd runs them: READY=1 on $NOTIFY_SOCKET only once the port is bound (a
/// Type=notify unit starts what depends on it then), STOPPING=1 on SIGTERM; and deploy/'s units pass
/// `systemd-analyze verify`.</summary>
public sealed class SystemdTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("natkit-systemd-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string, string, string[]> Servers => new()
    {
        // verb, the output line before the port, the arguments
        { "udp", "udp       │ 127.0.0.1:", ["stun", "serve", "--listen", "127.0.0.1:0", "--no-tcp"] },
        { "udp", "udp       │ 127.0.0.1:", ["turn", "serve", "--listen", "127.0.0.1:0", "--user", "a:b"] },
        { "tcp", "proxy http://127.0.0.1:", ["proxy", "serve", "--listen", "127.0.0.1:0"] },
    };

    [Theory]
    [MemberData(nameof(Servers))]
    public Task ReadyIsNotified_OnlyOnceThePortIsBound_AndStoppingOnSigterm(string transport, string before, string[] arguments) =>
        AssertNotifiedAsync("Ctrl+C stops", transport, before, arguments);

    /// <summary>`peer run` (deploy/natkit-peer.service is Type=notify too): READY=1 only once its node has started
    /// (the UDP port it prints is bound), STOPPING=1 on SIGTERM.</summary>
    [Fact]
    public async Task PeerRun_IsReadyOnlyOnceItsUdpPortIsBound_AndStoppingOnSigterm()
    {
        var key = Path.Combine(_dir, "node.pem");
        var init = await Natkit.RunAsync("peer", "init", "--key", key);
        Assert.True(init.ExitCode == 0, init.Output + init.Errors);
        await using var rendezvous = await Natkit.StartAsync("Ctrl+C stops", "rendezvous", "serve", "--listen", "127.0.0.1:0");
        var config = Path.Combine(_dir, "node.yaml");
        await File.WriteAllTextAsync(config, $"""
            key: {key}
            name: unit
            listen: 127.0.0.1:0
            rendezvous: 127.0.0.1:{Natkit.PortAfter(rendezvous.Output, "127.0.0.1:")}
            control: {Path.Combine(_dir, "unit.sock")}
            """);
        await AssertNotifiedAsync(" ready;", "udp", " ready; udp 127.0.0.1:", ["peer", "run", "--config", config]);
    }

    private async Task AssertNotifiedAsync(string ready, string transport, string before, string[] arguments)
    {
        var path = Path.Combine(_dir, "notify");
        using var notify = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        notify.Bind(new UnixDomainSocketEndPoint(path));
        using var cts = new CancellationTokenSource(Natkit.Deadline);
        var buffer = new byte[4096];
        var first = notify.ReceiveAsync(buffer, SocketFlags.None, cts.Token).AsTask();

        await using var server = await Natkit.StartAsync(ready,
            new Dictionary<string, string> { ["NOTIFY_SOCKET"] = path }, arguments);
        var readyMessage = Encoding.ASCII.GetString(buffer, 0, await first);
        Assert.Contains("READY=1", readyMessage, StringComparison.Ordinal);

        // READY=1 came: the port it names is bound (binding it again fails)
        var port = Natkit.PortAfter(server.Output, before);
        using var probe = transport == "udp"
            ? new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp)
            : new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var inUse = Assert.Throws<SocketException>(() => probe.Bind(new IPEndPoint(IPAddress.Loopback, port)));
        Assert.Equal(SocketError.AddressAlreadyInUse, inUse.SocketErrorCode);

        var next = notify.ReceiveAsync(buffer, SocketFlags.None, cts.Token).AsTask();
        Assert.Equal(0, await Natkit.StopAsync(server));
        Assert.Contains("STOPPING=1", Encoding.ASCII.GetString(buffer, 0, await next), StringComparison.Ordinal);
    }

    [Fact]
    public async Task WithoutNotifySocket_NothingIsSent_AndTheServerRunsAsBefore()
    {
        await using var server = await Natkit.StartAsync("Ctrl+C stops", "stun", "serve", "--listen", "127.0.0.1:0", "--no-tcp");
        Assert.Equal(0, await Natkit.StopAsync(server));
        Assert.Contains("stopped:", server.Output, StringComparison.Ordinal);
    }

    [PeerFact("systemd-analyze")]
    public async Task TheDeployUnits_PassSystemdAnalyzeVerify()
    {
        // systemd-analyze checks that ExecStart's program exists: point it at the natkit this test was built with
        var natkit = Path.Combine(AppContext.BaseDirectory, "natkit");
        var units = Directory.GetFiles(Path.Combine(Natkit.RepositoryRoot, "deploy"), "*.service");
        Assert.Equal(5, units.Length);
        var copies = new List<string>();
        foreach (var unit in units)
        {
            var name = Path.GetFileName(unit).Replace("@.service", "@test.service", StringComparison.Ordinal);
            var copy = Path.Combine(_dir, name);
            await File.WriteAllTextAsync(copy, (await File.ReadAllTextAsync(unit)).Replace("/opt/natkit/natkit", natkit, StringComparison.Ordinal));
            Assert.Contains("Type=notify", await File.ReadAllTextAsync(copy), StringComparison.Ordinal);
            copies.Add(copy);
        }

        var (code, output, errors) = await ExternalProcess.RunAsync("systemd-analyze", ["verify", "--man=no", .. copies], Natkit.Deadline);
        // verify exits 0 on unknown keys and bad values too, only warning: any line is a finding
        Assert.True(code == 0 && output.Trim().Length == 0 && errors.Trim().Length == 0, $"exit {code}: {output}{errors}");
    }
}
