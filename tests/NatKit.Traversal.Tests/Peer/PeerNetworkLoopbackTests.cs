using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using NatKit.Net;
using NatKit.Traversal.Identity;
using NatKit.Traversal.Peer;
using NatKit.Turn.Policy;
using NatKit.Turn.Protocol;
using NatKit.Turn.Server;
using NatKit.Utp;

namespace NatKit.Traversal.Tests.Peer;

/// <summary>The peer network module on real loopback sockets: two nodes that know each other find a path through a
/// real rendezvous, and a local TCP port of one reaches a service of the other through a TLS 1.3 pipe over uTP.</summary>
public sealed class PeerNetworkLoopbackTests
{
    private static CancellationTokenSource Deadline() => new(TimeSpan.FromSeconds(90));

    [PeerFact("curl")]
    public async Task Curl_ThroughAForwardedPort_Gets100MegabytesIntact()
    {
        var (body, sha) = TestService.Blob(100 * 1000 * 1000);
        await using var http = TestService.Http(body);
        await using var peers = await LoopbackPeers.StartAsync(http.EndPoint);
        var dir = Directory.CreateTempSubdirectory("natkit-peer-curl-");
        try
        {
            var file = Path.Combine(dir.FullName, "body");
            var (code, _, errors) = await ExternalProcess.RunAsync("curl",
                ["-sS", "--fail", "--max-time", "120", "-o", file, $"http://{peers.Forward}/blob"],
                TimeSpan.FromSeconds(150));
            Assert.True(code == 0, $"curl exit {code}: {errors}");
            await using (var f = File.OpenRead(file))
            {
                Assert.Equal(body.Length, f.Length);
                Assert.Equal(sha, Convert.ToHexStringLower(await SHA256.HashDataAsync(f)));
            }

            var link = Assert.Single(peers.A.Links);
            Assert.Equal(peers.IdentityB.Id, link.Peer);
            Assert.Equal(PathKind.Direct, link.Path);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task HalfClose_IsCarriedThrough_AndThePipeTableShowsBothEnds()
    {
        await using var echo = TestService.Echo();
        await using var peers = await LoopbackPeers.StartAsync(echo.EndPoint);
        using var cts = Deadline();
        var opened = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var closedA = new TaskCompletionSource<PipeInfo>(TaskCreationOptions.RunContinuationsAsynchronously);
        var closedB = new TaskCompletionSource<PipeInfo>(TaskCreationOptions.RunContinuationsAsynchronously);
        var openedCount = 0;
        void Opened(PipeInfo _)
        {
            if (Interlocked.Increment(ref openedCount) == 2)
            {
                opened.TrySetResult();
            }
        }

        peers.A.PipeOpened += Opened;
        peers.B.PipeOpened += Opened;
        peers.A.PipeClosed += p => closedA.TrySetResult(p);
        peers.B.PipeClosed += p => closedB.TrySetResult(p);
        using var client = new TcpClient();
        await client.ConnectAsync(peers.Forward, cts.Token);
        var stream = client.GetStream();
        var sent = RandomNumberGenerator.GetBytes(300_000);
        await stream.WriteAsync(sent, cts.Token);

        // While the echo waits for our FIN, the pipe is up on both nodes.
        await opened.Task.WaitAsync(cts.Token);
        var forward = Assert.Single(peers.A.Pipes);
        Assert.Equal((PipeKind.Forward, PathKind.Direct, "web"), (forward.Kind, forward.Path, forward.Service));
        Assert.Equal(peers.IdentityB.Id, forward.Peer);
        var exposed = Assert.Single(peers.B.Pipes);
        Assert.Equal((PipeKind.Exposed, peers.IdentityA.Id, PathKind.Direct), (exposed.Kind, exposed.Peer, exposed.Path));

        client.Client.Shutdown(SocketShutdown.Send); // the echo answers only after this FIN reached it
        var back = new MemoryStream();
        await stream.CopyToAsync(back, cts.Token);
        Assert.Equal(sent, back.ToArray());
        var doneA = await closedA.Task.WaitAsync(cts.Token);
        var doneB = await closedB.Task.WaitAsync(cts.Token);
        Assert.Equal((sent.Length, sent.Length), (doneA.BytesToPeer, doneA.BytesFromPeer));
        Assert.Equal((sent.Length, sent.Length), (doneB.BytesToPeer, doneB.BytesFromPeer));
        Assert.Empty(peers.A.Pipes);
        Assert.Empty(peers.B.Pipes);
    }

    [Fact]
    public async Task StopAsync_LeavesNoSocketTaskTimerOrPipeBehind()
    {
        var network = new TrackingNetwork();
        await using var echo = TestService.Echo();
        await using var peers = await LoopbackPeers.StartAsync(echo.EndPoint, network);
        using var cts = Deadline();
        var exposed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var forwarded = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        peers.B.PipeOpened += _ => exposed.TrySetResult();
        peers.A.PipeOpened += _ => forwarded.TrySetResult();
        using var client = new TcpClient();
        await client.ConnectAsync(peers.Forward, cts.Token);
        await client.GetStream().WriteAsync(new byte[1000], cts.Token);
        await Task.WhenAll(exposed.Task, forwarded.Task).WaitAsync(cts.Token);
        Assert.Single(peers.A.Pipes);
        Assert.Single(peers.B.Pipes);
        Assert.NotEmpty(network.Open);
        var udpA = peers.A.LocalEndPoint!;

        await peers.A.StopAsync();
        await peers.B.StopAsync();

        Assert.Empty(network.Open);
        Assert.Empty(peers.A.Pipes);
        Assert.Empty(peers.B.Pipes);
        Assert.Empty(peers.A.Links);
        Assert.Equal(0, peers.A.RunningTasks);
        Assert.Equal(0, peers.B.RunningTasks);
        Assert.Equal(0, await client.GetStream().ReadAsync(new byte[16], cts.Token)); // the pipe's TCP end closed
        using var again = new UdpClient(udpA); // the port is free again
    }

    [Fact]
    public async Task APeerPresentingAnotherKey_IsRefused()
    {
        await using var echo = TestService.Echo();
        await using var peers = await LoopbackPeers.StartAsync(echo.EndPoint);
        using var cts = Deadline();

        // A means B but dials A's own server (another key): the pin refuses it before any byte of the service.
        var e = await Assert.ThrowsAsync<PeerPipeException>(() =>
            peers.A.OpenServiceAsync(peers.IdentityB.Id, "web", peers.A.LocalEndPoint, cts.Token));
        Assert.Null(e.Status);
        Assert.Equal(0, echo.Accepted);

        // The real B at its address: accepted.
        await using var ok = await peers.A.OpenServiceAsync(peers.IdentityB.Id, "web", peers.B.LocalEndPoint,
            cts.Token);
        await ok.WriteAsync("hello"u8.ToArray(), cts.Token);
        await ((SslStream)ok).ShutdownAsync(); // close_notify: B half-closes the service, the echo answers
        var back = new MemoryStream();
        await ok.CopyToAsync(back, cts.Token);
        Assert.Equal("hello"u8.ToArray(), back.ToArray());
    }

    [Fact]
    public async Task ANodeTheServerDoesNotKnow_IsRefused()
    {
        await using var echo = TestService.Echo();
        await using var peers = await LoopbackPeers.StartAsync(echo.EndPoint);
        using var cts = Deadline();
        using var stranger = NodeIdentity.Create();
        using var cert = stranger.CreateCertificate();
        await using var utp = await UtpSocket.BindAsync(SystemNetwork.Instance, LoopbackPeers.Any);
        var stream = await utp.ConnectAsync(peers.B.LocalEndPoint!, cts.Token);
        await using var tls = new SslStream(stream);
        await tls.AuthenticateAsClientAsync(NodeTls.ClientOptions(cert, peers.IdentityB.Id), cts.Token);
        await tls.WriteAsync(new byte[] { 1, 3, (byte)'w', (byte)'e', (byte)'b' }, cts.Token);

        // TLS 1.3 checks the client's certificate after the client's Finished: the refusal shows on the next read.
        await Assert.ThrowsAnyAsync<Exception>(async () =>
        {
            var n = await tls.ReadAsync(new byte[16], cts.Token);
            Assert.Equal(0, n);
            throw new IOException("closed without an answer");
        });
        Assert.Equal(0, echo.Accepted);
        Assert.Empty(peers.B.Pipes);
    }

    [Fact]
    public async Task Tls12_IsRefused()
    {
        await using var echo = TestService.Echo();
        await using var peers = await LoopbackPeers.StartAsync(echo.EndPoint);
        using var cts = Deadline();
        using var cert = peers.IdentityA.CreateCertificate(); // a known node, but offering TLS 1.2 only
        await using var utp = await UtpSocket.BindAsync(SystemNetwork.Instance, LoopbackPeers.Any);
        var stream = await utp.ConnectAsync(peers.B.LocalEndPoint!, cts.Token);
        await using var tls = new SslStream(stream);
        var options = NodeTls.ClientOptions(cert, peers.IdentityB.Id);
        options.EnabledSslProtocols = SslProtocols.Tls12;
        await Assert.ThrowsAnyAsync<Exception>(() => tls.AuthenticateAsClientAsync(options, cts.Token));
        Assert.Equal(0, echo.Accepted);
        Assert.Empty(peers.B.Pipes);
    }

    /// <summary>The flood's pace: 20 a millisecond is 20,000 datagrams a second (about 100 Mbit/s of garbage);
    /// unpaced, one flooding thread on a two-core machine outruns any single receive loop and the kernel drops the
    /// pipe's own datagrams with the garbage, which tests the machine, not the node.</summary>
    private const int FloodPerMillisecond = 20;

    [Fact]
    public async Task AFloodOfGarbageDatagramsAtThePort_DoesNotDisturbAPipe()
    {
        await using var echo = TestService.Echo();
        await using var peers = await LoopbackPeers.StartAsync(echo.EndPoint);
        using var cts = Deadline();
        using var flood = CancellationTokenSource.CreateLinkedTokenSource(cts.Token);
        var target = peers.B.LocalEndPoint!;
        var underWay = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var flooding = Task.Run(async () =>
        {
            using var udp = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
            var random = new Random(14);
            var datagram = new byte[1200];
            long sent = 0;
            using var tick = new PeriodicTimer(TimeSpan.FromMilliseconds(1));
            while (!flood.IsCancellationRequested)
            {
                if (sent % FloodPerMillisecond == 0 && !await tick.WaitForNextTickAsync(CancellationToken.None))
                {
                    break;
                }

                var length = random.Next(1, datagram.Length);
                random.NextBytes(datagram.AsSpan(0, length));
                switch (sent % 4)
                {
                    case 1: // uTP-shaped: a DATA header for some connection
                        datagram[0] = 0x01;
                        datagram[1] = 0;
                        length = Math.Max(length, 20);
                        break;
                    case 2: // STUN-shaped: a Binding request with a right length
                        datagram[0] = 0;
                        datagram[1] = 1;
                        length = 20;
                        datagram[2] = 0;
                        datagram[3] = 0;
                        datagram[4] = 0x21;
                        datagram[5] = 0x12;
                        datagram[6] = 0xA4;
                        datagram[7] = 0x42;
                        break;
                }

                await udp.SendAsync(datagram.AsMemory(0, length), target);
                sent++;
                if (sent == 1000)
                {
                    underWay.TrySetResult();
                }
            }

            return sent;
        });

        // The pipe's transfer starts only once the flood is under way (a fast pipe could otherwise be done before
        // the flood had sent much), and the flood goes on through all of it.
        await underWay.Task.WaitAsync(cts.Token);
        var sent = RandomNumberGenerator.GetBytes(4_000_000);
        byte[] back;
        try
        {
            back = await EchoThroughAsync(peers.Forward, sent, cts.Token);
            Assert.False(flooding.IsCompleted, "the flood went on through the whole transfer");
        }
        finally
        {
            await flood.CancelAsync();
        }

        Assert.True(await flooding > 1000, "the flood was sent");
        Assert.Equal(sent, back);
    }

    [Fact]
    public async Task ThroughATurnRelayOnLoopback_APipeCarriesBytesIntact_InDatagramsUpToTheServersPayloadCap()
    {
        await using var echo = TestService.Echo();
        await using var turn = await TurnServer.StartAsync(SystemNetwork.Instance, new TurnServerOptions
        {
            UdpListen = [LoopbackPeers.Any],
            RelayAddress = IPAddress.Loopback,
            Users = new Dictionary<string, string> { ["t"] = "t-password" },
            Policy = new PeerPolicy(allow: [PeerRule.Parse("127.0.0.0/8")]),
            BandwidthBytesPerSecond = 0,
        });

        // The largest payload the server relays, and what it drops as too large (only this test's server relays more
        // than 1400 bytes a datagram in this process: the other relays here carry uTP's default size).
        var largest = 0L;
        var tooLarge = 0L;
        using var meters = new MeterListener();
        meters.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == TurnMetrics.MeterName &&
                instrument.Name is "natkit.turn.relay.bytes" or "natkit.turn.drops")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        meters.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            if (instrument.Name == "natkit.turn.drops")
            {
                foreach (var tag in tags)
                {
                    if (tag is { Key: "reason", Value: "too_large" })
                    {
                        Interlocked.Add(ref tooLarge, value);
                    }
                }

                return;
            }

            for (var seen = Interlocked.Read(ref largest); value > seen; seen = Interlocked.Read(ref largest))
            {
                Interlocked.CompareExchange(ref largest, value, seen);
            }
        });
        meters.Start();

        var credentials = new TurnServerCredentials(turn.UdpEndPoints[0], "t", "t-password");
        await using var peers = await LoopbackPeers.StartAsync(echo.EndPoint,
            tweak: o => o with { Traversal = o.Traversal with { Turn = credentials, RelayOnly = true } });
        using var cts = Deadline();
        var sent = RandomNumberGenerator.GetBytes(2_000_000);
        Assert.Equal(sent, await EchoThroughAsync(peers.Forward, sent, cts.Token));
        Assert.Equal(PathKind.Relay, Assert.Single(peers.A.Links).Path);
        Assert.InRange(Interlocked.Read(ref largest), UtpOptions.Default.MaxDatagramSize + 1,
            TurnLimits.DefaultMaxRelayPayload);
        Assert.Equal(0, Interlocked.Read(ref tooLarge));
    }

    /// <summary>Sends <paramref name="sent"/> through a forwarded port to an echo service and half-closes; returns
    /// what came back until the far end closed.</summary>
    private static async Task<byte[]> EchoThroughAsync(IPEndPoint forward, byte[] sent, CancellationToken token)
    {
        var back = new MemoryStream();
        using var client = new TcpClient();
        await client.ConnectAsync(forward, token);
        var stream = client.GetStream();
        var write = Task.Run(async () =>
        {
            await stream.WriteAsync(sent, token);
            client.Client.Shutdown(SocketShutdown.Send);
        }, token);
        await stream.CopyToAsync(back, token);
        await write;
        return back.ToArray();
    }

    [Fact]
    public void Options_NameTheBadField()
    {
        var traversal = new TraversalOptions { Rendezvous = new IPEndPoint(IPAddress.Loopback, 3479) };
        var e = Assert.Throws<ArgumentException>(() => new PeerNetworkOptions
        {
            Traversal = traversal,
            Expose = [new ExposedService("", new IPEndPoint(IPAddress.Loopback, 80))],
        }.Validate());
        Assert.Contains("Expose", e.Message, StringComparison.Ordinal);
        foreach (var size in new[] { 100, 70_000 }) // below a uTP header and payload, above a UDP datagram
        {
            var bad = new PeerNetworkOptions { Traversal = traversal, RelayLoopbackMaxDatagramSize = size };
            Assert.Contains("RelayLoopbackMaxDatagramSize",
                Assert.ThrowsAny<ArgumentException>(() => bad.Validate()).Message, StringComparison.Ordinal);
        }

        Assert.Equal(PeerNetworkOptions.DefaultListen,
            new PeerNetworkOptions { Traversal = traversal }.Validate().Listen);
        Assert.Equal(1315, PeerNetworkOptions.DefaultListen.Port);
    }
}
