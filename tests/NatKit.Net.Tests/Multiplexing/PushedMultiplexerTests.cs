using System.Net;

namespace NatKit.Net.Tests.Multiplexing;

/// <summary>A <see cref="DatagramMultiplexer"/> over a socket that pushes (<see cref="IPushDatagramSocket"/>): no
/// receive loop of its own; each pushed datagram reaches the receivers whole and in place, drains are passed on, and
/// the end of the push (the socket closing, or the multiplexer disposed) closes it.</summary>
public sealed class PushedMultiplexerTests
{
    private static readonly IPEndPoint Peer = new(IPAddress.Parse("192.0.2.7"), 7000);

    [Fact]
    public async Task PushedDatagrams_ReachTheClaimingReceiver_Whole_InOrder_WithDrains_AndNoReceiveIsEverCalled()
    {
        var socket = new PushingSocket();
        await using var mux = new DatagramMultiplexer(socket, ownsSocket: false);
        var first = new Recorder(d => d.Length > 0 && d[0] == 1);
        var second = new Recorder(_ => true);
        mux.AddReceiver(first);
        mux.AddReceiver(second);

        Assert.True(socket.Push([1, 2, 3]));
        Assert.True(socket.Push(new byte[60_000]));
        Assert.True(socket.Push([1]));
        socket.Drain();

        Assert.Equal([[1, 2, 3], [1]], first.Datagrams);
        Assert.Equal(60_000, Assert.Single(second.Datagrams).Length);
        Assert.All(first.Sources.Concat(second.Sources), s => Assert.Equal(Peer, s));
        Assert.Equal(1, first.Drains);
        Assert.Equal(1, second.Drains);
        Assert.Equal(3, mux.Received);
        Assert.Equal(0, socket.Receives);
    }

    [Fact]
    public async Task TheSocketEndingItsPush_ClosesTheMultiplexer_AndTellsTheReceivers()
    {
        var socket = new PushingSocket();
        var mux = new DatagramMultiplexer(socket, ownsSocket: false);
        var receiver = new Recorder(_ => true);
        mux.AddReceiver(receiver);

        socket.End();
        await mux.Completion;

        Assert.Equal(1, receiver.Closed);
        Assert.Throws<ObjectDisposedException>(() => mux.SendToAsync(new byte[1], Peer));
    }

    [Fact]
    public async Task DisposingTheMultiplexer_CancelsThePush_AndLeavesAnUnownedSocketOpen()
    {
        var socket = new PushingSocket();
        var mux = new DatagramMultiplexer(socket, ownsSocket: false);
        var receiver = new Recorder(_ => true);
        mux.AddReceiver(receiver);

        await mux.DisposeAsync();

        Assert.False(socket.Push([9]), "nothing may be pushed once the multiplexer is gone");
        Assert.Empty(receiver.Datagrams);
        Assert.Equal(1, receiver.Closed);
        Assert.False(socket.Disposed);
    }

    [Fact]
    public async Task AThrowingReceiver_IsCounted_AndTheNextDatagramStillArrives()
    {
        var socket = new PushingSocket();
        await using var mux = new DatagramMultiplexer(socket, ownsSocket: false);
        var receiver = new Recorder(d => d[0] == 0 ? throw new InvalidOperationException("bug") : true);
        mux.AddReceiver(receiver);

        socket.Push([0]);
        socket.Push([5]);

        Assert.Equal(1, mux.ReceiverFaults);
        Assert.Equal([[5]], receiver.Datagrams);
    }

    private sealed class Recorder(Func<byte[], bool> claim) : IDatagramReceiver
    {
        public List<byte[]> Datagrams { get; } = [];

        public List<IPEndPoint> Sources { get; } = [];

        public int Drains { get; private set; }

        public int Closed { get; private set; }

        public bool TryReceive(ReadOnlySpan<byte> datagram, IPEndPoint source)
        {
            var copy = datagram.ToArray();
            if (!claim(copy))
            {
                return false;
            }

            Datagrams.Add(copy);
            Sources.Add(source);
            return true;
        }

        public void OnDrained() => Drains++;

        public void OnClosed() => Closed++;
    }

    /// <summary>Pushes what the test hands it, synchronously, to the one receiver attached.</summary>
    private sealed class PushingSocket : IPushDatagramSocket
    {
        private IDatagramReceiver? _receiver;
        private TaskCompletionSource? _ended;

        public IPEndPoint LocalEndPoint { get; } = new(IPAddress.Parse("192.0.2.1"), 1000);

        public int Receives { get; private set; }

        public bool Disposed { get; private set; }

        public Task PushToAsync(IDatagramReceiver receiver, CancellationToken cancellationToken)
        {
            if (_receiver is not null)
            {
                throw new InvalidOperationException("one receiver at a time");
            }

            _receiver = receiver;
            _ended = new TaskCompletionSource();
            cancellationToken.Register(End);
            return _ended.Task;
        }

        public bool Push(byte[] datagram)
        {
            if (_receiver is not { } r)
            {
                return false;
            }

            r.TryReceive(datagram, Peer);
            return true;
        }

        public void Drain() => _receiver?.OnDrained();

        public void End()
        {
            _receiver = null;
            _ended?.TrySetResult();
        }

        public ValueTask<int> SendToAsync(ReadOnlyMemory<byte> datagram, IPEndPoint remoteEndPoint,
            CancellationToken cancellationToken = default) => ValueTask.FromResult(datagram.Length);

        public ValueTask<ReceivedDatagram> ReceiveFromAsync(Memory<byte> buffer,
            CancellationToken cancellationToken = default)
        {
            Receives++;
            return ValueTask.FromException<ReceivedDatagram>(new InvalidOperationException("a pushed socket is not read"));
        }

        public void Dispose() => Disposed = true;

        public ValueTask DisposeAsync()
        {
            Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
