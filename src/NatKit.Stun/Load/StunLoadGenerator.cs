using System.Net;
using NatKit.Net;

namespace NatKit.Stun.Load;

/// <summary>How <see cref="StunLoadGenerator"/> loads a server.</summary>
public sealed record StunLoadOptions
{
    /// <summary>UDP sockets, each a closed loop with one request outstanding.</summary>
    public int Sockets { get; init; } = 32;

    /// <summary>Stop after this long.</summary>
    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Stop after this many requests in all (0: no limit).</summary>
    public long MaxRequests { get; init; }

    /// <summary>A request unanswered this long counts as lost and the socket moves on.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Local address to bind the sockets to (null: the wildcard of the server's family).</summary>
    public IPAddress? LocalAddress { get; init; }

    public void Validate()
    {
        if (Sockets is < 1 or > 10_000)
        {
            throw new ArgumentException("Sockets: 1-10000", nameof(Sockets));
        }

        if (Duration <= TimeSpan.Zero || Timeout <= TimeSpan.Zero)
        {
            throw new ArgumentException("Duration/Timeout: must be positive", nameof(Duration));
        }

        if (MaxRequests < 0)
        {
            throw new ArgumentException("MaxRequests: must be >= 0", nameof(MaxRequests));
        }
    }
}

/// <summary>What a load run measured.</summary>
public sealed record StunLoadResult(long Requests, long Responses, long Lost, TimeSpan Elapsed, TimeSpan P50,
    TimeSpan P90, TimeSpan P99, TimeSpan Max)
{
    /// <summary>Answered Binding requests per second.</summary>
    public double ResponsesPerSecond => Elapsed > TimeSpan.Zero ? Responses / Elapsed.TotalSeconds : 0;
}

/// <summary>
/// Sends Binding requests from many sockets as fast as the server answers (closed loop: each socket sends its
/// next request when the previous is answered or lost) and records latency in a microsecond histogram. The same
/// generator measures any STUN server, so NatKit's and coturn's numbers are comparable.
/// </summary>
public sealed class StunLoadGenerator
{
    private const int HistogramMicros = 1_000_000;

    private readonly INetwork _network;
    private readonly IPEndPoint _server;
    private readonly StunLoadOptions _options;
    private readonly long[] _histogram = new long[HistogramMicros + 1];
    private long _requests;
    private long _responses;
    private long _lost;

    public StunLoadGenerator(INetwork network, IPEndPoint server, StunLoadOptions? options = null)
    {
        _network = network ?? throw new ArgumentNullException(nameof(network));
        _server = server ?? throw new ArgumentNullException(nameof(server));
        _options = options ?? new StunLoadOptions();
        _options.Validate();
    }

    /// <summary>Live counters for progress displays.</summary>
    public long Responses => Interlocked.Read(ref _responses);

    public async Task<StunLoadResult> RunAsync(CancellationToken cancellationToken = default)
    {
        var time = _network.TimeProvider;
        var address = _options.LocalAddress ?? (_server.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6
            ? IPAddress.IPv6Any
            : IPAddress.Any);
        var sockets = new List<IDatagramSocket>();
        try
        {
            for (var i = 0; i < _options.Sockets; i++)
            {
                sockets.Add(await _network.BindUdpAsync(new IPEndPoint(address, 0), cancellationToken));
            }

            using var stop = new CancellationTokenSource(_options.Duration, time);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(stop.Token, cancellationToken);
            var start = time.GetTimestamp();
            var workers = sockets.Select(s => WorkerAsync(s, linked)).ToArray();
            await Task.WhenAll(workers);
            var elapsed = time.GetElapsedTime(start);
            cancellationToken.ThrowIfCancellationRequested();
            return new StunLoadResult(_requests, _responses, _lost, elapsed, Percentile(0.50), Percentile(0.90),
                Percentile(0.99), Percentile(1.0));
        }
        finally
        {
            foreach (var s in sockets)
            {
                await s.DisposeAsync();
            }
        }
    }

    private async Task WorkerAsync(IDatagramSocket socket, CancellationTokenSource stop)
    {
        var time = _network.TimeProvider;
        var request = new byte[StunMessageReader.HeaderLength];
        var receive = new byte[1500];
        var timeout = new CancellationTokenSource(Timeout.InfiniteTimeSpan, time);
        try
        {
            while (!stop.IsCancellationRequested)
            {
                if (Interlocked.Increment(ref _requests) > _options.MaxRequests && _options.MaxRequests > 0)
                {
                    Interlocked.Decrement(ref _requests);
                    return;
                }

                var id = StunTransactionId.NewRandom();
                _ = new StunMessageWriter(request, StunMethods.Binding, StunClass.Request, id);
                var sent = time.GetTimestamp();
                await socket.SendToAsync(request, _server, stop.Token);
                if (!timeout.TryReset())
                {
                    timeout.Dispose();
                    timeout = new CancellationTokenSource(Timeout.InfiniteTimeSpan, time);
                }

                timeout.CancelAfter(_options.Timeout);
                using var either = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, stop.Token);
                var answered = false;
                while (!answered)
                {
                    ReceivedDatagram d;
                    try
                    {
                        d = await socket.ReceiveFromAsync(receive, either.Token);
                    }
                    catch (OperationCanceledException)
                    {
                        break;
                    }

                    answered = StunMessageReader.TryParse(receive.AsSpan(0, d.Length), out var r) &&
                               r.TransactionId == id;
                }

                if (answered)
                {
                    Interlocked.Increment(ref _responses);
                    var micros = (long)time.GetElapsedTime(sent).TotalMicroseconds;
                    Interlocked.Increment(ref _histogram[Math.Clamp(micros, 0, HistogramMicros)]);
                }
                else if (!stop.IsCancellationRequested)
                {
                    Interlocked.Increment(ref _lost);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
        finally
        {
            timeout.Dispose();
        }
    }

    private TimeSpan Percentile(double p)
    {
        var total = 0L;
        foreach (var c in _histogram)
        {
            total += c;
        }

        if (total == 0)
        {
            return TimeSpan.Zero;
        }

        var target = (long)Math.Ceiling(total * p);
        var seen = 0L;
        for (var i = 0; i < _histogram.Length; i++)
        {
            seen += _histogram[i];
            if (seen >= target)
            {
                return TimeSpan.FromMicroseconds(i);
            }
        }

        return TimeSpan.FromMicroseconds(HistogramMicros);
    }
}
