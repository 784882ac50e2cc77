using System.Net;
using System.Threading.Tasks.Sources;
using BenchmarkDotNet.Attributes;
using NatKit.Net;

namespace NatKit.Benchmarks.Net;

/// <summary>
/// One datagram through <see cref="DatagramMultiplexer"/>'s whole loop (the receive completing, dispatch, the next
/// receive going pending, the drain hook), with the kernel left out: the shared socket is a stand-in whose pending
/// receive the benchmark completes inline. The push path must allocate 0 B.
/// </summary>
[MemoryDiagnoser]
public class MultiplexerBenchmarks
{
    private readonly byte[] _datagram = new byte[1200];
    private readonly byte[] _buffer = new byte[1500];
    private readonly IPEndPoint _peer = new(IPAddress.Parse("198.51.100.7"), 40000);
    private StandInSocket _push = null!;
    private StandInSocket _pull = null!;
    private DatagramMultiplexer _pushMux = null!;
    private DatagramMultiplexer _pullMux = null!;
    private DatagramSubSocket _sub = null!;

    [GlobalSetup]
    public void Setup()
    {
        _datagram[0] = 0x41; // shaped like a uTP SYN
        _push = new StandInSocket();
        _pushMux = new DatagramMultiplexer(_push);
        // A transaction table, a TURN client and uTP, as on a traversal node's socket: the third one claims it.
        _pushMux.AddReceiver(new Declines(), DatagramClaim.ByTransaction);
        _pushMux.AddReceiver(new Declines(), DatagramClaim.BySource);
        _pushMux.AddReceiver(new Claims(), DatagramClaim.ByContent);

        _pull = new StandInSocket();
        _pullMux = new DatagramMultiplexer(_pull);
        _pullMux.AddReceiver(new Declines(), DatagramClaim.ByTransaction);
        _sub = _pullMux.CreateUnclaimedSocket();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _pushMux.Dispose();
        _pullMux.Dispose();
    }

    /// <summary>Three push receivers asked in turn, the third claims it.</summary>
    [Benchmark(Baseline = true)]
    public long PushToThirdReceiver()
    {
        _push.Complete(_datagram, _peer);
        return _pushMux.Received;
    }

    /// <summary>Unclaimed, into a sub-socket whose receive waits: copied straight into the reader's buffer.</summary>
    [Benchmark]
    public int PullIntoAWaitingReceive()
    {
        var receive = _sub.ReceiveFromAsync(_buffer);
        _pull.Complete(_datagram, _peer);
        return receive.GetAwaiter().GetResult().Length;
    }

    /// <summary>Unclaimed, queued (a pooled copy), then received.</summary>
    [Benchmark]
    public int PullQueuedThenReceived()
    {
        _pull.Complete(_datagram, _peer);
        return _sub.ReceiveFromAsync(_buffer).GetAwaiter().GetResult().Length;
    }

    private sealed class Declines : IDatagramReceiver
    {
        public bool TryReceive(ReadOnlySpan<byte> datagram, IPEndPoint source) => false;
    }

    private sealed class Claims : IDatagramReceiver
    {
        public int Bytes;

        public bool TryReceive(ReadOnlySpan<byte> datagram, IPEndPoint source)
        {
            Bytes += datagram[0];
            return true;
        }

        public void OnDrained() => Bytes = 0;
    }

    /// <summary>A socket whose receive always waits until <see cref="Complete"/> hands it a datagram, completing
    /// it inline on the caller's thread (as a lab socket does).</summary>
    private sealed class StandInSocket : IDatagramSocket, IValueTaskSource<ReceivedDatagram>
    {
        private ManualResetValueTaskSourceCore<ReceivedDatagram> _core = new() { RunContinuationsAsynchronously = false };
        private Memory<byte> _buffer;
        private bool _disposed;

        public IPEndPoint LocalEndPoint { get; } = new(IPAddress.Loopback, 1);

        public void Complete(byte[] datagram, IPEndPoint source)
        {
            datagram.CopyTo(_buffer);
            _core.SetResult(new ReceivedDatagram(datagram.Length, source));
        }

        public ValueTask<int> SendToAsync(ReadOnlyMemory<byte> datagram, IPEndPoint remoteEndPoint,
            CancellationToken cancellationToken = default) => new(datagram.Length);

        public ValueTask<ReceivedDatagram> ReceiveFromAsync(Memory<byte> buffer,
            CancellationToken cancellationToken = default)
        {
            if (_disposed)
            {
                return ValueTask.FromException<ReceivedDatagram>(new ObjectDisposedException(nameof(StandInSocket)));
            }

            _core.Reset();
            _buffer = buffer;
            return new ValueTask<ReceivedDatagram>(this, _core.Version);
        }

        public ReceivedDatagram GetResult(short token) => _core.GetResult(token);

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token,
            ValueTaskSourceOnCompletedFlags flags) => _core.OnCompleted(continuation, state, token, flags);

        public void Dispose()
        {
            _disposed = true;
            _core.SetException(new ObjectDisposedException(nameof(StandInSocket)));
        }

        public ValueTask DisposeAsync()
        {
            Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
