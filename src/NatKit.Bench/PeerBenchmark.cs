using System.Buffers;
using System.Net;
using System.Net.Sockets;
using NatKit.Net;
using NatKit.Traversal;
using NatKit.Traversal.Identity;
using NatKit.Traversal.Peer;
using NatKit.Traversal.Rendezvous;
using NatKit.Turn.Policy;
using NatKit.Turn.Server;

namespace NatKit.Bench;

/// <summary>What one <see cref="PeerBenchmark"/> run measures.</summary>
public sealed record PeerBenchmarkOptions
{
    /// <summary>Bytes of each transfer through each contender.</summary>
    public long Bytes { get; init; } = 200L * 1000 * 1000;

    /// <summary>Interleaved rounds (each contender once per round); the figures are medians.</summary>
    public int Rounds { get; init; } = 3;

    /// <summary>Start-ups timed (StartAsync to the first piped byte, and ssh's start to its first byte).</summary>
    public int StartupSamples { get; init; } = 9;

    /// <summary>Run the `ssh -L` contender (when OpenSSH is installed).</summary>
    public bool Ssh { get; init; } = true;

    /// <summary>The cipher ssh asks for: AES-256-GCM, what the pipes' TLS 1.3 negotiates, like with like.</summary>
    public string SshCipher { get; init; } = "aes256-gcm@openssh.com";

    /// <summary>What the run is doing now (for a progress line).</summary>
    public Action<string>? Progress { get; init; }

    public PeerBenchmarkOptions Validate()
    {
        if (Bytes < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(Bytes), Bytes, $"{nameof(Bytes)}: at least 1");
        }

        if (Rounds < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(Rounds), Rounds, $"{nameof(Rounds)}: at least 1");
        }

        if (StartupSamples < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(StartupSamples), StartupSamples,
                $"{nameof(StartupSamples)}: at least 1");
        }

        return this;
    }
}

/// <summary>One contender's throughput: megabytes (10^6 bytes) per second of each round.</summary>
public sealed record PeerThroughput(string Name, string What, IReadOnlyList<double> MegabytesPerSecond)
{
    public double Median => BenchFigures.Median(MegabytesPerSecond);
}

/// <summary>Start-up times in milliseconds.</summary>
public sealed record PeerStartup(string Name, string What, IReadOnlyList<double> Milliseconds)
{
    public double Median => BenchFigures.Median(Milliseconds);
}

/// <summary>A run's figures, with what it ran against and the machine's load.</summary>
public sealed record PeerBenchmarkResult(long Bytes, int Rounds, IReadOnlyList<PeerThroughput> Throughput,
    IReadOnlyList<PeerStartup> Startup, string? SshVersion, string? SshSkipped, string LoadBefore, string LoadAfter);

/// <summary>
/// `natkit bench peer`: the peer network module's pipes side by side with `ssh -L` in one run, all on loopback.
/// A blob service sends each connection the same bytes; a client reads them (a) straight from the service (the
/// loopback ceiling), (b) through a forwarded port of node A piped to node B over the direct path, (c) through a
/// relay-only node whose datagrams all cross NatKit's TURN server, and (d) through `ssh -L` to Debian's sshd
/// (see <see cref="SshForward"/>). Rounds are interleaved and the figures are medians. Then the time from
/// <see cref="PeerNetwork.StartAsync"/> of a fresh node to the first byte through its forwarded port (B already
/// up; the rendezvous registration, the traversal, uTP, TLS 1.3 and the service request all count), and the same
/// for a fresh `ssh -N -L` process (its login and forward). The nodes, the rendezvous, the TURN server, the blob
/// service and the client share this process; sshd and ssh are their own processes.
/// </summary>
public static class PeerBenchmark
{
    private static readonly IPEndPoint Loopback = new(IPAddress.Loopback, 0);

    public static async Task<PeerBenchmarkResult> RunAsync(PeerBenchmarkOptions options,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var progress = options.Progress ?? (_ => { });
        var loadBefore = BenchFigures.LoadAverage();
        var network = SystemNetwork.Instance;
        await using var source = await BlobService.StartAsync(options.Bytes).ConfigureAwait(false);
        await using var rendezvous = await RendezvousServer.StartAsync(network,
            new RendezvousServerOptions { Listen = Loopback }, cancellationToken: cancellationToken).ConfigureAwait(false);
        await using var turn = await TurnServer.StartAsync(network, new TurnServerOptions
        {
            UdpListen = [Loopback],
            RelayAddress = IPAddress.Loopback,
            Users = new Dictionary<string, string> { ["bench"] = "bench-password" },
            Policy = new PeerPolicy(allow: [PeerRule.Parse("127.0.0.0/8")]),
            BandwidthBytesPerSecond = 0,
        }, cancellationToken: cancellationToken).ConfigureAwait(false);
        var traversal = new TraversalOptions
        {
            Rendezvous = rendezvous.LocalEndPoint,
            Turn = new TurnServerCredentials(turn.UdpEndPoints[0], "bench", "bench-password"),
            ConnectTimeout = TimeSpan.FromSeconds(20),
        };

        using var idB = NodeIdentity.Create();
        await using var b = new PeerNetwork(network, PeerNetworkHost.InMemory(idB, [], "b"), new PeerNetworkOptions
        {
            Listen = Loopback,
            Traversal = traversal,
            KnownPeersOnly = false, // the start-up samples are fresh nodes
            Expose = [new ExposedService("blob", source.EndPoint)],
        });
        await b.StartAsync(cancellationToken).ConfigureAwait(false);
        var known = new PeerInfo(idB.Id) { Name = "b" };
        PeerNetworkOptions Forwarding(TraversalOptions t) => new()
        {
            Listen = Loopback,
            Traversal = t,
            Forward = [new PortForward(Loopback, idB.Id, "blob")],
        };

        using var idDirect = NodeIdentity.Create();
        using var idRelay = NodeIdentity.Create();
        await using var direct = new PeerNetwork(network, PeerNetworkHost.InMemory(idDirect, [known], "direct"),
            Forwarding(traversal));
        await using var relay = new PeerNetwork(network, PeerNetworkHost.InMemory(idRelay, [known], "relay"),
            Forwarding(traversal with { RelayOnly = true }));
        await direct.StartAsync(cancellationToken).ConfigureAwait(false);
        await relay.StartAsync(cancellationToken).ConfigureAwait(false);

        string? sshSkipped = options.Ssh ? SshForward.WhyMissing() : "not asked for";
        await using var ssh = sshSkipped is null
            ? await SshForward.StartAsync(source.EndPoint, options.SshCipher, cancellationToken).ConfigureAwait(false)
            : null;
        IPEndPoint? sshLocal = null;
        if (ssh is not null)
        {
            var (client, local) = await ssh.ForwardAsync(cancellationToken).ConfigureAwait(false);
            await FirstByteAsync(local, client, options.Bytes, cancellationToken).ConfigureAwait(false); // up, and warm
            sshLocal = local;
        }

        List<(string Name, string What, IPEndPoint EndPoint, List<double> Runs)> contenders =
        [
            ("loopback", "TCP straight to the service (the ceiling)", source.EndPoint, []),
            ("natkit direct", "PeerNetwork pipe: TLS 1.3 over uTP, direct path", direct.Forwards[0].Listen, []),
            ("natkit relay", "PeerNetwork pipe through NatKit's TURN server (relay-only node)", relay.Forwards[0].Listen, []),
        ];
        if (ssh is not null)
        {
            contenders.Add(("ssh -L", $"OpenSSH local forward, {ssh.Cipher}", sshLocal!, []));
        }

        // A first pipe through each node makes its link (the traversal) before anything is timed, and says its path.
        foreach (var (node, path) in new[] { (direct, PathKind.Direct), (relay, PathKind.Relay) })
        {
            await FirstByteAsync(node.Forwards[0].Listen, null, options.Bytes, cancellationToken).ConfigureAwait(false);
            var link = node.Links.Count == 1 ? node.Links[0] : null;
            if (link?.Path != path)
            {
                throw new InvalidOperationException(
                    $"the {path} contender's link is {link?.Path.ToString() ?? "missing"}: its figure would be mislabelled");
            }
        }

        for (var round = 0; round < options.Rounds; round++)
        {
            foreach (var (name, _, endPoint, runs) in contenders)
            {
                progress($"round {round + 1}/{options.Rounds}: {name}");
                runs.Add(await TransferAsync(endPoint, options.Bytes, cancellationToken).ConfigureAwait(false));
            }
        }

        var startups = new List<PeerStartup>
        {
            new("natkit", "fresh node: StartAsync to the first byte through its forwarded port",
                await NodeStartupsAsync(network, traversal, known, options, progress, cancellationToken).ConfigureAwait(false)),
        };
        if (ssh is not null)
        {
            var samples = new List<double>();
            for (var i = 0; i < options.StartupSamples; i++)
            {
                progress($"ssh start-up {i + 1}/{options.StartupSamples}");
                var started = TimeProvider.System.GetTimestamp();
                var (client, local) = await ssh.ForwardAsync(cancellationToken).ConfigureAwait(false);
                await FirstByteAsync(local, client, options.Bytes, cancellationToken).ConfigureAwait(false);
                samples.Add(TimeProvider.System.GetElapsedTime(started).TotalMilliseconds);
                await ssh.StopAsync(client).ConfigureAwait(false);
            }

            startups.Add(new PeerStartup("ssh -L", "fresh `ssh -N -L` process to the first byte through its forward",
                samples));
        }

        return new PeerBenchmarkResult(options.Bytes, options.Rounds,
            contenders.ConvertAll(c => new PeerThroughput(c.Name, c.What, c.Runs)), startups, ssh?.Version,
            sshSkipped, loadBefore, BenchFigures.LoadAverage());
    }

    private static async Task<List<double>> NodeStartupsAsync(INetwork network, TraversalOptions traversal,
        PeerInfo b, PeerBenchmarkOptions options, Action<string> progress, CancellationToken cancellationToken)
    {
        var samples = new List<double>();
        for (var i = 0; i < options.StartupSamples; i++)
        {
            progress($"natkit start-up {i + 1}/{options.StartupSamples}");
            using var id = NodeIdentity.Create(); // made before the clock starts: a key pair is not start-up work
            await using var node = new PeerNetwork(network, PeerNetworkHost.InMemory(id, [b], "fresh"), new PeerNetworkOptions
            {
                Listen = Loopback,
                Traversal = traversal,
                Forward = [new PortForward(Loopback, b.Id, "blob")],
            });
            var started = TimeProvider.System.GetTimestamp();
            await node.StartAsync(cancellationToken).ConfigureAwait(false);
            await FirstByteAsync(node.Forwards[0].Listen, null, options.Bytes, cancellationToken).ConfigureAwait(false);
            samples.Add(TimeProvider.System.GetElapsedTime(started).TotalMilliseconds);
        }

        return samples;
    }

    /// <summary>Connects (retrying while the port refuses, as a forward that is not up yet does) and reads one
    /// byte. <paramref name="process"/>: the program behind the port; its exit ends the wait with its errors.</summary>
    private static async Task FirstByteAsync(IPEndPoint endPoint, NatKit.Linux.NamespaceProcess? process,
        long bytes, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(TimeSpan.FromSeconds(30));
        while (true)
        {
            IStreamConnection connection;
            try
            {
                connection = await SystemNetwork.Instance.ConnectTcpAsync(endPoint, null, deadline.Token)
                    .ConfigureAwait(false);
            }
            catch (NetworkException e) when (e.Error == SocketError.ConnectionRefused)
            {
                if (process is { HasExited: true })
                {
                    throw new IOException($"the forward's program ended: {process.Errors.Trim()}");
                }

                await Task.Delay(TimeSpan.FromMilliseconds(2), deadline.Token).ConfigureAwait(false);
                continue;
            }

            var one = new byte[1];
            int n;
            await using (connection.ConfigureAwait(false))
            {
                n = await connection.Stream.ReadAsync(one, deadline.Token).ConfigureAwait(false);
            }

            if (n == 1 || bytes == 0)
            {
                return;
            }

            // a forward that accepted before its far end was ready closes at once: try again
            if (process is { HasExited: true })
            {
                throw new IOException($"the forward's program ended: {process.Errors.Trim()}");
            }

            await Task.Delay(TimeSpan.FromMilliseconds(2), deadline.Token).ConfigureAwait(false);
        }
    }

    /// <summary>Reads the whole blob through <paramref name="endPoint"/>: MB/s from the connect to the last byte.</summary>
    private static async Task<double> TransferAsync(IPEndPoint endPoint, long bytes, CancellationToken cancellationToken)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(256 * 1024);
        try
        {
            var started = TimeProvider.System.GetTimestamp();
            var connection = await SystemNetwork.Instance.ConnectTcpAsync(endPoint, null, cancellationToken)
                .ConfigureAwait(false);
            await using var _ = connection.ConfigureAwait(false);
            long received = 0;
            while (true)
            {
                var n = await connection.Stream.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
                if (n == 0)
                {
                    break;
                }

                received += n;
            }

            var seconds = TimeProvider.System.GetElapsedTime(started).TotalSeconds;
            if (received != bytes)
            {
                throw new IOException($"{endPoint} gave {received} bytes of {bytes}");
            }

            return bytes / 1e6 / seconds;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>A TCP service on 127.0.0.1 that sends every connection the same number of bytes (a pseudo-random
    /// megabyte over and over), half-closes, and closes once the client has.</summary>
    private sealed class BlobService : IAsyncDisposable
    {
        private readonly IStreamListener _listener;
        private readonly byte[] _chunk = new byte[1 << 20];
        private readonly long _bytes;
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _accepting;
        private readonly List<Task> _clients = [];

        private BlobService(long bytes, IStreamListener listener)
        {
            _bytes = bytes;
            new Random(1315).NextBytes(_chunk);
            _listener = listener;
            EndPoint = listener.LocalEndPoint;
            _accepting = AcceptAsync();
        }

        public IPEndPoint EndPoint { get; }

        public static async Task<BlobService> StartAsync(long bytes) =>
            new(bytes, await SystemNetwork.Instance.ListenTcpAsync(Loopback, 128).ConfigureAwait(false));

        private async Task AcceptAsync()
        {
            try
            {
                while (true)
                {
                    var client = await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
                    lock (_clients)
                    {
                        _clients.RemoveAll(t => t.IsCompleted);
                        _clients.Add(ServeAsync(client));
                    }
                }
            }
            catch (Exception e) when (e is OperationCanceledException or NetworkException or ObjectDisposedException)
            {
            }
        }

        private async Task ServeAsync(IStreamConnection client)
        {
            await using var _ = client.ConfigureAwait(false);
            try
            {
                var left = _bytes;
                while (left > 0)
                {
                    var n = (int)Math.Min(left, _chunk.Length);
                    await client.Stream.WriteAsync(_chunk.AsMemory(0, n), _stop.Token).ConfigureAwait(false);
                    left -= n;
                }

                client.ShutdownSend();
                var sink = new byte[256];
                while (await client.Stream.ReadAsync(sink, _stop.Token).ConfigureAwait(false) > 0)
                {
                }
            }
            catch (Exception e) when (e is OperationCanceledException or IOException or ObjectDisposedException)
            {
                // a first-byte probe closes early
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync().ConfigureAwait(false);
            await _listener.DisposeAsync().ConfigureAwait(false);
            await _accepting.ConfigureAwait(false);
            Task[] clients;
            lock (_clients)
            {
                clients = [.. _clients];
            }

            await Task.WhenAll(clients).ConfigureAwait(false);
            _stop.Dispose();
        }
    }
}
