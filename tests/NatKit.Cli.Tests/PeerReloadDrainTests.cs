using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;

namespace NatKit.Cli.Tests;

/// <summary>`natkit peer run` as an operator runs it: SIGHUP applies a changed config's forwards live (and refuses
/// what needs a restart, or a bad file, keeping the running node), SIGTERM drains open pipes, `--metrics-listen`
/// counts the pipes' bytes, and flags win over the config's keys. Real processes on loopback: a rendezvous, bob
/// exposing services that all reach an echo server of the test, alice forwarding ports to them.</summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
// xunit 2 disposes a test class through IAsyncLifetime (never IAsyncDisposable): the processes and the directory
// go when each test ends, also when it fails.
public sealed partial class PeerReloadDrainTests : IAsyncLifetime
{
    private readonly string _dir = Directory.CreateTempSubdirectory("natkit-peerreload-").FullName;
    private readonly TcpListener _echo = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly List<IAsyncDisposable> _processes = [];
    private readonly Task _echoing;
    private string _aliceId = "";
    private string _bobId = "";
    private int _rendezvousPort;

    public PeerReloadDrainTests()
    {
        _echo.Start();
        _echoing = EchoAsync();
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var p in _processes)
        {
            await p.DisposeAsync();
        }

        await _stop.CancelAsync();
        _echo.Stop();
        await _echoing;
        _stop.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private string F(string name) => Path.Combine(_dir, name);

    /// <summary>Every connection gets its bytes back, and its FIN once the client's arrives.</summary>
    private async Task EchoAsync()
    {
        var connections = new List<Task>();
        try
        {
            while (true)
            {
                var client = await _echo.AcceptTcpClientAsync(_stop.Token);
                connections.Add(Task.Run(async () =>
                {
                    using (client)
                    {
                        var s = client.GetStream();
                        try
                        {
                            await s.CopyToAsync(s, _stop.Token);
                            client.Client.Shutdown(SocketShutdown.Send);
                        }
                        catch (Exception e) when (e is IOException or OperationCanceledException or SocketException)
                        {
                        }
                    }
                }));
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }

        await Task.WhenAll(connections);
    }

    private async Task<ExternalProcess> StartAsync(string ready, params string[] arguments)
    {
        var p = await Natkit.StartAsync(ready, arguments);
        _processes.Add(p);
        return p;
    }

    private static string Id(string initOutput) => Regex.Match(initOutput, "node id ([a-z2-7]{32})").Groups[1].Value;

    /// <summary>A rendezvous and bob (exposing keep, old and new, all to the echo server) running; alice's key made.</summary>
    private async Task<ExternalProcess> StartBobAsync()
    {
        _aliceId = Id((await Natkit.RunAsync("peer", "init", "--key", F("alice.pem"))).Output);
        _bobId = Id((await Natkit.RunAsync("peer", "init", "--key", F("bob.pem"))).Output);
        Assert.NotEqual("", _aliceId);
        var rendezvous = await StartAsync("Ctrl+C stops", "rendezvous", "serve", "--listen", "127.0.0.1:0");
        _rendezvousPort = Natkit.PortAfter(rendezvous.Output, "127.0.0.1:");
        var echo = ((IPEndPoint)_echo.LocalEndpoint).Port;
        await File.WriteAllTextAsync(F("bob.yaml"), $$"""
            key: {{F("bob.pem")}}
            name: bob
            listen: 127.0.0.1:0
            rendezvous: 127.0.0.1:{{_rendezvousPort}}
            peers: [{id: {{_aliceId}}, name: alice}]
            expose:
              - {name: keep, target: 127.0.0.1:{{echo}}}
              - {name: old, target: 127.0.0.1:{{echo}}}
              - {name: new, target: 127.0.0.1:{{echo}}}
            control: {{F("bob.sock")}}
            """);
        return await StartAsync(" ready;", "peer", "run", "--config", F("bob.yaml"));
    }

    /// <summary>Alice's config: <paramref name="forwards"/> are `listen -> service` on bob; <paramref name="extra"/>
    /// more lines.</summary>
    private Task WriteAliceAsync(string extra, params (string Listen, string Service)[] forwards) =>
        File.WriteAllTextAsync(F("alice.yaml"), $$"""
            key: {{F("alice.pem")}}
            name: alice
            rendezvous: 127.0.0.1:{{_rendezvousPort}}
            peers: [{id: {{_bobId}}, name: bob}]
            control: {{F("alice.sock")}}
            forward:
            {{string.Concat(forwards.Select(f => $"  - {{listen: '{f.Listen}', peer: bob, service: {f.Service}}}\n"))}}
            {{extra}}
            """);

    /// <summary>The local port of alice's forward to <paramref name="service"/>, from the last line naming it.</summary>
    private static int ForwardPort(string output, string service)
    {
        var all = Regex.Matches(output, @"127\.0\.0\.1:([0-9]+) -> bob/" + service + @"\b");
        Assert.True(all.Count > 0, $"no forward to {service} in: {output}");
        return int.Parse(all[^1].Groups[1].Value, CultureInfo.InvariantCulture);
    }

    private static async Task<TcpClient> ConnectAsync(int port)
    {
        var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, port);
        return client;
    }

    /// <summary>Sends a line through the pipe and reads it back from the echo server.</summary>
    private static async Task AssertEchoesAsync(TcpClient client, string text)
    {
        var bytes = Encoding.ASCII.GetBytes(text);
        var s = client.GetStream();
        await s.WriteAsync(bytes);
        var back = new byte[bytes.Length];
        await s.ReadExactlyAsync(back).AsTask().WaitAsync(Natkit.Deadline);
        Assert.Equal(text, Encoding.ASCII.GetString(back));
    }

    private static async Task AssertRefusedAsync(int port)
    {
        using var client = new TcpClient();
        var e = await Assert.ThrowsAsync<SocketException>(() => client.ConnectAsync(IPAddress.Loopback, port));
        Assert.Equal(SocketError.ConnectionRefused, e.SocketErrorCode);
    }

    [Fact]
    public async Task Sighup_OpensANewForward_ClosesARemovedOne_KeepsAnUnchangedOnesPipe_AndRefusesWhatWouldNeedARestart()
    {
        await StartBobAsync();
        await WriteAliceAsync("listen: 127.0.0.1:0", ("127.0.0.1:0", "keep"), ("127.0.0.1:0", "old"));
        var alice = await StartAsync(" ready;", "peer", "run", "--config", F("alice.yaml"));
        var keep = ForwardPort(alice.Output, "keep");
        var old = ForwardPort(alice.Output, "old");
        using var kept = await ConnectAsync(keep);
        await AssertEchoesAsync(kept, "before the reload\n");

        // old removed, new added, keep unchanged: keep's open pipe carries on, old's port closes, new's carries bytes
        await WriteAliceAsync("listen: 127.0.0.1:0", ("127.0.0.1:0", "keep"), ("127.0.0.1:0", "new"));
        alice.Signal(Natkit.SigHup);
        await alice.WaitForOutputAsync("forwards 1 opened, 1 closed, 0 changed, 1 kept; 0 pipe(s) closed by the change", Natkit.Deadline);
        var added = ForwardPort(alice.Output, "new");
        Assert.Equal(keep, ForwardPort(alice.Output, "keep"));
        await AssertRefusedAsync(old);
        using (var fresh = await ConnectAsync(added))
        {
            await AssertEchoesAsync(fresh, "through the new forward\n");
        }

        await AssertEchoesAsync(kept, "after the reload\n");

        // what needs a restart, a bad file, and a forward whose port is taken: each refused in one logged sentence,
        // and the node runs on as it was (keep's pipe, new's listener)
        async Task AssertRefusedReloadAsync(string refusal)
        {
            alice.Signal(Natkit.SigHup);
            await alice.WaitForOutputAsync(refusal, Natkit.Deadline);
            await AssertEchoesAsync(kept, $"after a refused reload ({refusal})\n");
            using var again = await ConnectAsync(added);
            await AssertEchoesAsync(again, "the new forward still listens\n");
        }

        await WriteAliceAsync("listen: 127.0.0.1:0", ("127.0.0.1:0", "keep"), ("127.0.0.1:0", "new"));
        await File.WriteAllTextAsync(F("alice.yaml"), (await File.ReadAllTextAsync(F("alice.yaml")))
            .Replace($"rendezvous: 127.0.0.1:{_rendezvousPort}", "rendezvous: 127.0.0.1:1", StringComparison.Ordinal));
        await AssertRefusedReloadAsync("rendezvous cannot change while the node runs; restart it for that.");

        await WriteAliceAsync("listen: 127.0.0.1:0\nbogus: 1", ("127.0.0.1:0", "keep"));
        await AssertRefusedReloadAsync("bogus: unknown key 'bogus'");

        using var busy = new TcpListener(IPAddress.Loopback, 0);
        busy.Start();
        var taken = ((IPEndPoint)busy.LocalEndpoint).Port;
        await WriteAliceAsync("listen: 127.0.0.1:0", ($"127.0.0.1:{taken}", "old"));
        await AssertRefusedReloadAsync($"cannot listen on TCP 127.0.0.1:{taken}");
        Assert.Contains("nothing was changed.", alice.Output, StringComparison.Ordinal);

        Assert.Equal(3, Regex.Matches(alice.Output, "reload refused, the running settings stay").Count);
        Assert.Single(Regex.Matches(alice.Output, "reloaded: "));
    }

    /// <summary>Bob's config stops listing alice: her open pipe closes, and with known-peers-only her next one is
    /// refused; listing her again lets her in.</summary>
    [Fact]
    public async Task Sighup_RemovingAPeer_ClosesItsPipes_AndRefusesItUntilListedAgain()
    {
        var bob = await StartBobAsync();
        await WriteAliceAsync("listen: 127.0.0.1:0", ("127.0.0.1:0", "keep"));
        var alice = await StartAsync(" ready;", "peer", "run", "--config", F("alice.yaml"));
        var keep = ForwardPort(alice.Output, "keep");
        using var open = await ConnectAsync(keep);
        await AssertEchoesAsync(open, "before alice is forgotten\n");

        var listed = await File.ReadAllTextAsync(F("bob.yaml"));
        await File.WriteAllTextAsync(F("bob.yaml"), listed.Replace($"peers: [{{id: {_aliceId}, name: alice}}]", "peers: []", StringComparison.Ordinal));
        bob.Signal(Natkit.SigHup);
        await bob.WaitForOutputAsync("reloaded: 0 peer(s), 1 removed (1 of their pipe(s) closed)", Natkit.Deadline);
        var buffer = new byte[64];
        var stream = open.GetStream();
        try
        {
            Assert.Equal(0, await stream.ReadAsync(buffer).AsTask().WaitAsync(Natkit.Deadline)); // the pipe's end
        }
        catch (IOException)
        {
        }

        using (var refused = await ConnectAsync(keep)) // alice accepts locally, bob refuses the pipe
        {
            var refusedStream = refused.GetStream();
            refused.Client.Shutdown(SocketShutdown.Send);
            Assert.Equal(0, await refusedStream.ReadAsync(buffer).AsTask().WaitAsync(Natkit.Deadline));
        }

        await File.WriteAllTextAsync(F("bob.yaml"), listed);
        bob.Signal(Natkit.SigHup);
        await bob.WaitForOutputAsync("reloaded: 1 peer(s), 0 removed", Natkit.Deadline);
        using var again = await ConnectAsync(keep);
        await AssertEchoesAsync(again, "listed again\n");
    }

    [Fact]
    public async Task Sigterm_DrainsAnOpenPipe_RefusesNewConnections_AndExits0WithTheSummary_FlagsWinOverConfigKeys()
    {
        await StartBobAsync();
        // the config asks for debug logs, another UDP address and a 1 s drain; the flags win
        await WriteAliceAsync("listen: 127.0.0.2:0\nlog-level: debug\ndrain-timeout: 1", ("127.0.0.1:0", "keep"));
        var alice = await StartAsync(" ready;", "peer", "run", "--config", F("alice.yaml"), "--listen", "127.0.0.1:0",
            "--log-level", "warning", "--drain-timeout", "60");
        Assert.Contains("ready; udp 127.0.0.1:", alice.Output, StringComparison.Ordinal);
        var keep = ForwardPort(alice.Output, "keep");
        using var open = await ConnectAsync(keep);
        await AssertEchoesAsync(open, "before SIGTERM\n");

        alice.Signal(Natkit.SigTerm);
        await alice.WaitForOutputAsync("natkit peer: draining: 1 pipe(s) may finish within 60 s", Natkit.Deadline);
        await AssertRefusedAsync(keep);
        await AssertEchoesAsync(open, "while draining\n");
        Assert.False(alice.HasExited);

        var stream = open.GetStream();
        open.Client.Shutdown(SocketShutdown.Send);
        Assert.Equal(0, await stream.ReadAsync(new byte[1]).AsTask().WaitAsync(Natkit.Deadline));
        Assert.Equal(0, await alice.WaitForExitAsync(Natkit.Deadline));
        Assert.Contains("natkit peer: stopped; 0 pipe(s) cut, 1 finished while draining", alice.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("dbug:", alice.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("info:", alice.Output, StringComparison.Ordinal);
        Assert.False(File.Exists(F("alice.sock")));
    }

    [Fact]
    public async Task Sigterm_WithAZeroDrainTimeoutFromTheConfig_CutsTheOpenPipe()
    {
        await StartBobAsync();
        await WriteAliceAsync("listen: 127.0.0.1:0\ndrain-timeout: 0", ("127.0.0.1:0", "keep"));
        var alice = await StartAsync(" ready;", "peer", "run", "--config", F("alice.yaml"));
        using var open = await ConnectAsync(ForwardPort(alice.Output, "keep"));
        await AssertEchoesAsync(open, "before SIGTERM\n");
        Assert.Equal(0, await Natkit.StopAsync(alice));
        Assert.Contains("natkit peer: stopped; 1 pipe(s) cut, 0 finished while draining", alice.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Run_ABadOperatorKey_IsOneSentenceNamingTheConfigAndTheKey_Exit2()
    {
        var key = F("node.pem");
        Assert.Equal(0, (await Natkit.RunAsync("peer", "init", "--key", key)).ExitCode);
        foreach (var (line, expected) in new[]
                 {
                     ("log-level: loud", "log-level loud: use trace, debug, information, warning, error, critical or none."),
                     ("drain-timeout: soon", "drain-timeout soon: expected a number of seconds (0: stop at once)."),
                     ("metrics-listen: 127.0.0.1:99999", "metrics-listen 127.0.0.1:99999: port 99999 is out of range"),
                 })
        {
            await File.WriteAllTextAsync(F("node.yaml"), $"key: {key}\nrendezvous: 127.0.0.1\nlisten: 127.0.0.1:0\n{line}\n");
            Natkit.AssertRefused(await Natkit.RunAsync("peer", "run", "--config", F("node.yaml")), $"--config {F("node.yaml")}: {expected}");
        }

        Natkit.AssertRefused(await Natkit.RunAsync("peer", "run", "--config", F("node.yaml"), "--listen", "127.0.0.1:99999"),
            "--listen 127.0.0.1:99999: port 99999 is out of range");
    }

    /// <summary>The node's meters scraped from `--metrics-listen`: promtool accepts the text, and the pipe byte
    /// counters equal what the client sent and got back through the pipe.</summary>
    [PeerFact("promtool")]
    public async Task MetricsListen_PipeByteCountersMatchTheBytesSent_AndPromtoolAcceptsThem()
    {
        await StartBobAsync();
        await WriteAliceAsync("listen: 127.0.0.1:0\nmetrics-listen: 127.0.0.1:0", ("127.0.0.1:0", "keep"));
        var alice = await StartAsync(" ready;", "peer", "run", "--config", F("alice.yaml"));
        var metricsPort = Natkit.PortAfter(alice.Output, "metrics: http://127.0.0.1:");
        var payload = RandomNumberGenerator.GetBytes(300_000);
        using (var client = await ConnectAsync(ForwardPort(alice.Output, "keep")))
        {
            var s = client.GetStream();
            var reading = Task.Run(async () =>
            {
                var back = new MemoryStream();
                await s.CopyToAsync(back);
                return back.ToArray();
            });
            await s.WriteAsync(payload);
            client.Client.Shutdown(SocketShutdown.Send);
            Assert.Equal(payload, await reading.WaitAsync(Natkit.Deadline)); // all of it back, then the FIN
        }

        using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(10) };
        var text = await http.GetStringAsync(new Uri($"http://127.0.0.1:{metricsPort}/metrics"));
        Assert.Equal(payload.Length, Value(text, "natkit_peer_pipe_bytes_total{direction=\"to_peer\",path=\"direct\"}"));
        Assert.Equal(payload.Length, Value(text, "natkit_peer_pipe_bytes_total{direction=\"from_peer\",path=\"direct\"}"));
        Assert.Equal(0, Value(text, "natkit_peer_pipe_bytes_total{direction=\"to_peer\",path=\"relay\"}"));
        Assert.Equal(1, Value(text, "natkit_peer_pipes_opened_total{kind=\"forward\",path=\"direct\"}"));
        Assert.Equal(1, Value(text, "natkit_peer_traversals_total{path=\"direct\",result=\"succeeded\"}"));
        Assert.Equal(1, Value(text, "natkit_peer_links_active{path=\"direct\"}"));
        Assert.Contains("# TYPE natkit_peer_pipes_active gauge", text, StringComparison.Ordinal);

        var file = F("scrape.txt");
        await File.WriteAllTextAsync(file, text);
        var check = await ExternalProcess.RunAsync("sh", ["-c", "promtool check metrics < \"$0\"", file], Natkit.Deadline);
        Assert.True(check.ExitCode == 0, check.Output + check.Errors);
        Assert.Equal(0, await Natkit.StopAsync(alice));
    }

    private static long Value(string text, string series)
    {
        var m = Regex.Match(text, "(?m)^" + Regex.Escape(series) + " ([0-9.e+]+)$");
        Assert.True(m.Success, $"no {series} in:\n{text}");
        return (long)double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
    }
}
