using System.Buffers.Binary;
using System.Net;
using NatKit.Net;
using NatKit.Turn.Client;

namespace NatKit.Turn.Load;

/// <summary>What a TURN relay load run does.</summary>
public sealed record TurnLoadOptions
{
    /// <summary>Pairs of allocations; each side binds a channel to the other's relayed address and sends to it,
    /// so every packet crosses the relay twice (client A -> relay A -> relay B -> client B).</summary>
    public int Pairs { get; init; } = 16;

    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Payload bytes per packet (at least 8: a sequence number rides in it).</summary>
    public int PayloadSize { get; init; } = 160;

    /// <summary>Packets each sender may have in flight (sent, not yet received at the other end).</summary>
    public int Window { get; init; } = 16;

    /// <summary>How long to wait for stragglers after sending stops before counting the rest as lost.</summary>
    public TimeSpan Drain { get; init; } = TimeSpan.FromSeconds(1);

    public void Validate()
    {
        if (Pairs < 1)
        {
            throw new ArgumentException("--pairs must be at least 1.");
        }

        if (PayloadSize is < 8 or > 1400)
        {
            throw new ArgumentException("--size must be 8-1400 bytes.");
        }

        if (Window < 1)
        {
            throw new ArgumentException("--window must be at least 1.");
        }

        if (Duration <= TimeSpan.Zero)
        {
            throw new ArgumentException("--duration must be positive.");
        }
    }
}

/// <summary>The outcome of a run: packets relayed end to end, per second, and lost.</summary>
public sealed record TurnLoadResult(long Sent, long Received, long ReceivedWhileSending, TimeSpan Elapsed)
{
    public long Lost => Math.Max(0, Sent - Received);

    /// <summary>Packets that crossed the relay (both hops) per second while the senders ran.</summary>
    public double ReceivedPerSecond => ReceivedWhileSending / Math.Max(Elapsed.TotalSeconds, 1e-9);

    public double LossPercent => Sent == 0 ? 0 : 100.0 * Lost / Sent;
}

/// <summary>
/// Relays ChannelData between pairs of allocations on one TURN server, with a window per sender so the
/// measure is what the relay sustains, not how fast sockets overflow. The same generator loads NatKit's server
/// and coturn's (`natkit bench turn`). The server must allow relaying to its own relayed addresses (NatKit:
/// an allow rule for them, e.g. 127.0.0.0/8 on loopback; coturn: --allow-loopback-peers).
/// </summary>
public sealed class TurnLoadGenerator(INetwork network, TurnClientOptions client, TurnLoadOptions options)
{
    public async Task<TurnLoadResult> RunAsync(IProgress<long>? progress = null,
        CancellationToken cancellationToken = default)
    {
        options.Validate();
        var clients = new List<TurnClient>();
        try
        {
            for (var i = 0; i < options.Pairs * 2; i++)
            {
                clients.Add(await TurnClient.AllocateAsync(network, client with { KeepAlive = false }, cancellationToken));
            }

            for (var i = 0; i < clients.Count; i += 2)
            {
                await clients[i].BindChannelAsync(clients[i + 1].RelayedEndPoint, cancellationToken);
                await clients[i + 1].BindChannelAsync(clients[i].RelayedEndPoint, cancellationToken);
            }

            var time = network.TimeProvider;
            using var stopSending = new CancellationTokenSource();
            using var stopAll = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var flows = new List<Flow>();
            for (var i = 0; i < clients.Count; i += 2)
            {
                flows.Add(new Flow(clients[i], clients[i + 1], options));
                flows.Add(new Flow(clients[i + 1], clients[i], options));
            }

            var start = time.GetTimestamp();
            var tasks = new List<Task>();
            foreach (var f in flows)
            {
                tasks.Add(f.SendLoopAsync(stopSending.Token, stopAll.Token));
                tasks.Add(f.ReceiveLoopAsync(stopAll.Token));
            }

            var deadline = options.Duration;
            while (time.GetElapsedTime(start) < deadline && !cancellationToken.IsCancellationRequested)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(250), time, cancellationToken);
                progress?.Report(flows.Sum(f => Volatile.Read(ref f.Received)));
            }

            await stopSending.CancelAsync();
            var elapsed = time.GetElapsedTime(start);
            var received = flows.Sum(f => Volatile.Read(ref f.Received));
            await Task.Delay(options.Drain, time, CancellationToken.None);
            await stopAll.CancelAsync();
            try
            {
                await Task.WhenAll(tasks);
            }
            catch (OperationCanceledException)
            {
            }

            // Throughput counts what arrived while sending; loss counts what never arrived at all.
            var sent = flows.Sum(f => f.Sent);
            var total = flows.Sum(f => f.Received);
            return new TurnLoadResult(sent, total, received, elapsed);
        }
        finally
        {
            await ReleaseAsync(clients, cancellationToken);
        }
    }

    /// <summary>
    /// Deletes the clients' allocations (Refresh with LIFETIME 0) and closes them, all at once and best effort:
    /// a server that does not answer within a second keeps them until they expire. A load run must not leave
    /// allocations behind: a later socket that happens to reuse one's source port would get 437.
    /// </summary>
    public async Task ReleaseAsync(IEnumerable<TurnClient?> clients, CancellationToken cancellationToken = default)
    {
        async Task ReleaseOne(TurnClient c)
        {
            using var second = new CancellationTokenSource(TimeSpan.FromSeconds(1), network.TimeProvider);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, second.Token);
            try
            {
                await c.DeallocateAsync(timeout.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or TimeoutException or TurnException
                                          or IOException or ObjectDisposedException)
            {
                // best effort: the client is closed either way (DeallocateAsync disposes it)
            }
        }

        await Task.WhenAll(clients.OfType<TurnClient>().Select(ReleaseOne));
    }

    /// <summary>Makes <paramref name="count"/> allocations (each from its own socket, <paramref name="parallel"/>
    /// at a time) and returns the clients holding them, for measuring what an allocation costs the server.</summary>
    public async Task<IReadOnlyList<TurnClient>> HoldAsync(int count, int parallel = 32,
        IProgress<int>? progress = null, CancellationToken cancellationToken = default)
    {
        var clients = new TurnClient[count];
        var next = -1;
        var made = 0;
        var lean = client with { KeepAlive = false, ReceiveBufferSize = 2048 };
        async Task Worker()
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < count)
            {
                clients[i] = await TurnClient.AllocateAsync(network, lean, cancellationToken);
                progress?.Report(Interlocked.Increment(ref made));
            }
        }

        try
        {
            await Task.WhenAll(Enumerable.Range(0, Math.Min(parallel, count)).Select(_ => Worker()));
        }
        catch
        {
            await ReleaseAsync(clients, CancellationToken.None);
            throw;
        }

        return clients;
    }

    private sealed class Flow(TurnClient from, TurnClient to, TurnLoadOptions options)
    {
        private readonly SemaphoreSlim _window = new(options.Window, options.Window);
        public long Sent;
        public long Received;

        public async Task SendLoopAsync(CancellationToken stopSending, CancellationToken stopAll)
        {
            var payload = new byte[options.PayloadSize];
            try
            {
                while (!stopSending.IsCancellationRequested)
                {
                    // A lost packet never frees its slot: after a wait, send anyway, so loss cannot stall the flow.
                    await _window.WaitAsync(TimeSpan.FromMilliseconds(200), stopSending);

                    BinaryPrimitives.WriteInt64BigEndian(payload, Sent);
                    await from.SendAsync(payload, to.RelayedEndPoint, stopAll);
                    Sent++;
                }
            }
            catch (OperationCanceledException)
            {
            }
        }

        public async Task ReceiveLoopAsync(CancellationToken stopAll)
        {
            var buffer = new byte[2048];
            try
            {
                while (true)
                {
                    await to.ReceiveAsync(buffer, stopAll);
                    Interlocked.Increment(ref Received);
                    if (_window.CurrentCount < options.Window)
                    {
                        try
                        {
                            _window.Release();
                        }
                        catch (SemaphoreFullException)
                        {
                        }
                    }
                }
            }
            catch (Exception e) when (e is OperationCanceledException or System.Threading.Channels.ChannelClosedException)
            {
            }
        }
    }
}
