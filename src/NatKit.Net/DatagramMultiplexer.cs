using System.Net;
using System.Net.Sockets;
using NatKit.Net.Internal;

namespace NatKit.Net;

/// <summary>
/// Shares one UDP socket among protocols: owns the socket's one receive loop and offers each datagram, in place, to
/// the receivers registered on it, the most specific kind first (<see cref="DatagramClaim"/>): push receivers
/// (<see cref="IDatagramReceiver"/>: a STUN transaction table, a TURN client, uTP) and pull sub-sockets
/// (<see cref="CreateSocket"/>: an <see cref="IDatagramSocket"/> for the datagrams a rule matches). What no one
/// claims goes to the one unclaimed-traffic socket (<see cref="CreateUnclaimedSocket"/>), or is dropped and counted.
/// Sends from anyone go straight to the shared socket.
/// </summary>
/// <remarks>
/// The loop starts in the constructor: register receivers before sending anything that draws an answer. It is an
/// async method with no thread, timer or <c>Task.Run</c> of its own, so it runs unchanged in the lab. Dispatch
/// allocates nothing (bench <c>MultiplexerBenchmarks</c>). Receivers and sub-sockets may be added and removed from
/// any thread at any time; a removed one is not offered datagrams the loop has not started dispatching.
/// </remarks>
public sealed class DatagramMultiplexer : IAsyncDisposable, IDisposable
{
    /// <summary>The receive buffer: large enough for any UDP datagram over IPv4 or IPv6.</summary>
    public const int MaxDatagramSize = 65536;

    /// <summary>Datagrams a sub-socket holds for its reader by default.</summary>
    public const int DefaultQueueCapacity = 256;

    private readonly IDatagramSocket _socket;
    private readonly bool _ownsSocket;
    private readonly Lock _gate = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly byte[] _buffer;
    private readonly Task _loop;
    private volatile Entry[] _receivers = [];
    private volatile DatagramSubSocket? _unclaimed;
    private volatile bool _closed;
    private long _received;
    private long _unclaimedCount;
    private long _faults;

    /// <param name="socket">The shared socket. No one else may receive on it while the multiplexer runs.</param>
    /// <param name="ownsSocket">Dispose the socket with the multiplexer; when false, disposing only cancels the
    /// receive loop and the caller may use the socket again once <see cref="DisposeAsync"/> has completed.</param>
    /// <param name="receiveBufferSize">The loop's one receive buffer: datagrams larger than it are dropped (as
    /// <see cref="IDatagramSocket.ReceiveFromAsync"/> drops them), so a client holding thousands of sockets whose
    /// traffic is known to be small (a TURN load generator's allocations) can save the 64 KiB each.</param>
    public DatagramMultiplexer(IDatagramSocket socket, bool ownsSocket = true, int receiveBufferSize = MaxDatagramSize)
    {
        ArgumentNullException.ThrowIfNull(socket);
        ArgumentOutOfRangeException.ThrowIfLessThan(receiveBufferSize, 1);
        _buffer = new byte[Math.Min(receiveBufferSize, MaxDatagramSize)];
        _socket = socket;
        _ownsSocket = ownsSocket;
        LocalEndPoint = socket.LocalEndPoint;
        _loop = socket is IPushDatagramSocket pushed ? RunPushedAsync(pushed) : RunAsync();
    }

    public IPEndPoint LocalEndPoint { get; }

    /// <summary>Datagrams the shared socket received.</summary>
    public long Received => Volatile.Read(ref _received);

    /// <summary>Datagrams no receiver claimed, dropped because no unclaimed-traffic socket was open.</summary>
    public long Unclaimed => Volatile.Read(ref _unclaimedCount);

    /// <summary>Exceptions receivers threw on the loop (each one's datagram was dropped).</summary>
    public long ReceiverFaults => Volatile.Read(ref _faults);

    /// <summary>Completes when the receive loop has ended (the multiplexer was disposed or the socket closed).</summary>
    public Task Completion => _loop;

    /// <summary>Sends one datagram from the shared socket.</summary>
    /// <exception cref="ObjectDisposedException">The multiplexer was disposed.</exception>
    public ValueTask<int> SendToAsync(ReadOnlyMemory<byte> datagram, IPEndPoint remoteEndPoint,
        CancellationToken cancellationToken = default)
    {
        if (_closed)
        {
            throw new ObjectDisposedException(nameof(DatagramMultiplexer));
        }

        return _socket.SendToAsync(datagram, remoteEndPoint, cancellationToken);
    }

    /// <summary>Sends one datagram from the shared socket with a hop limit of its own
    /// (<see cref="IHopLimitDatagramSocket"/>); 0 and nothing sent when the shared socket cannot limit hops.</summary>
    /// <exception cref="ObjectDisposedException">The multiplexer was disposed.</exception>
    public ValueTask<int> SendToAsync(ReadOnlyMemory<byte> datagram, IPEndPoint remoteEndPoint, byte hopLimit,
        CancellationToken cancellationToken = default)
    {
        if (_closed)
        {
            throw new ObjectDisposedException(nameof(DatagramMultiplexer));
        }

        ArgumentOutOfRangeException.ThrowIfZero(hopLimit);
        return _socket is IHopLimitDatagramSocket limited
            ? limited.SendToAsync(datagram, remoteEndPoint, hopLimit, cancellationToken)
            : ValueTask.FromResult(0);
    }

    /// <summary>Registers a push receiver; it is offered datagrams after every receiver of a more specific
    /// <paramref name="claim"/> and after those of the same kind added before it.</summary>
    /// <exception cref="InvalidOperationException">It is registered already.</exception>
    /// <exception cref="ObjectDisposedException">The multiplexer was disposed.</exception>
    public void AddReceiver(IDatagramReceiver receiver, DatagramClaim claim = DatagramClaim.ByContent)
    {
        ArgumentNullException.ThrowIfNull(receiver);
        if (claim is < DatagramClaim.ByTransaction or > DatagramClaim.ByContent)
        {
            throw new ArgumentOutOfRangeException(nameof(claim));
        }

        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_closed, this);
            var current = _receivers;
            var at = current.Length;
            for (var i = 0; i < current.Length; i++)
            {
                if (ReferenceEquals(current[i].Receiver, receiver))
                {
                    throw new InvalidOperationException("the receiver is registered on this multiplexer already");
                }

                if (current[i].Claim > claim && at == current.Length)
                {
                    at = i;
                }
            }

            var next = new Entry[current.Length + 1];
            Array.Copy(current, next, at);
            next[at] = new Entry(receiver, claim);
            Array.Copy(current, at, next, at + 1, current.Length - at);
            _receivers = next;
        }
    }

    /// <summary>Unregisters a push receiver. False when it was not registered.</summary>
    public bool RemoveReceiver(IDatagramReceiver receiver)
    {
        ArgumentNullException.ThrowIfNull(receiver);
        lock (_gate)
        {
            var current = _receivers;
            var i = 0;
            while (i < current.Length && !ReferenceEquals(current[i].Receiver, receiver))
            {
                i++;
            }

            if (i == current.Length)
            {
                return false;
            }

            var next = new Entry[current.Length - 1];
            Array.Copy(current, next, i);
            Array.Copy(current, i + 1, next, i, current.Length - i - 1);
            _receivers = next;
            return true;
        }
    }

    /// <summary>
    /// A sub-socket for the datagrams <paramref name="match"/> accepts (asked in <paramref name="claim"/>'s turn, as
    /// a receiver would be): it keeps <see cref="IDatagramSocket"/>'s whole contract (oversize datagrams dropped,
    /// never cut short; one receive at a time; cancellation; <see cref="ObjectDisposedException"/> after close) over a
    /// queue of <paramref name="queueCapacity"/> datagrams (more are dropped and counted). Its sends go straight to
    /// the shared socket. Disposing it removes only it; disposing the multiplexer closes it.
    /// </summary>
    public DatagramSubSocket CreateSocket(DatagramMatch match, DatagramClaim claim = DatagramClaim.ByContent,
        int queueCapacity = DefaultQueueCapacity)
    {
        ArgumentNullException.ThrowIfNull(match);
        var socket = new DatagramSubSocket(this, match, queueCapacity);
        AddReceiver(socket, claim);
        return socket;
    }

    /// <summary>A sub-socket (as <see cref="CreateSocket"/>) for every datagram no receiver claims: hole-punching
    /// probes, a protocol with no receiver of its own. One at a time; once it is disposed, another may be created.</summary>
    /// <exception cref="InvalidOperationException">One is open already.</exception>
    public DatagramSubSocket CreateUnclaimedSocket(int queueCapacity = DefaultQueueCapacity)
    {
        var socket = new DatagramSubSocket(this, null, queueCapacity);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_closed, this);
            if (_unclaimed is not null)
            {
                throw new InvalidOperationException("this multiplexer has an unclaimed-traffic socket open already");
            }

            _unclaimed = socket;
        }

        return socket;
    }

    internal void Remove(DatagramSubSocket socket)
    {
        lock (_gate)
        {
            if (ReferenceEquals(_unclaimed, socket))
            {
                _unclaimed = null;
                return;
            }
        }

        RemoveReceiver(socket);
    }

    // ------------------------------------------------------------------ the loop

    private async Task RunAsync()
    {
        var token = _stop.Token;
        try
        {
            while (!token.IsCancellationRequested)
            {
                ReceivedDatagram got;
                try
                {
                    var pending = _socket.ReceiveFromAsync(_buffer, token);
                    if (!pending.IsCompleted)
                    {
                        Drained();
                    }

                    got = await pending;
                }
                catch (Exception e) when (e is ObjectDisposedException or OperationCanceledException)
                {
                    break;
                }
                catch (Exception e) when (e is NetworkException or SocketException)
                {
                    continue; // a failed receive (an ICMP error for an earlier send) does not end the socket
                }

                Dispatch(_buffer.AsSpan(0, got.Length), got.RemoteEndPoint);
            }
        }
        finally
        {
            Close();
        }
    }

    /// <summary>The loop over a socket that pushes (<see cref="IPushDatagramSocket"/>): no receive of its own, the
    /// socket calls <see cref="Dispatch"/> and <see cref="Drained"/> inline, no copy and no hand-off.</summary>
    private async Task RunPushedAsync(IPushDatagramSocket socket)
    {
        try
        {
            await socket.PushToAsync(new PushTarget(this), _stop.Token);
        }
        catch (Exception e) when (e is ObjectDisposedException or OperationCanceledException)
        {
        }
        finally
        {
            Close();
        }
    }

    private sealed class PushTarget(DatagramMultiplexer owner) : IDatagramReceiver
    {
        public bool TryReceive(ReadOnlySpan<byte> datagram, IPEndPoint source)
        {
            owner.Dispatch(datagram, source);
            return true;
        }

        public void OnDrained() => owner.Drained();
    }

    /// <summary>Offers one datagram to the receivers, then to the unclaimed-traffic socket. The loop's push path:
    /// allocates nothing.</summary>
    internal void Dispatch(ReadOnlySpan<byte> datagram, IPEndPoint source)
    {
        _received++;
        DatagramMetrics.Received();
        var receivers = _receivers;
        for (var i = 0; i < receivers.Length; i++)
        {
            try
            {
                if (receivers[i].Receiver.TryReceive(datagram, source))
                {
                    return;
                }
            }
#pragma warning disable CA1031 // a receiver's bug must not end the loop every other receiver depends on
            catch (Exception)
#pragma warning restore CA1031
            {
                _faults++;
                DatagramMetrics.Fault();
                return;
            }
        }

        var unclaimed = _unclaimed;
        if (unclaimed is not null)
        {
            unclaimed.Queue.TryWrite(datagram, source);
            return;
        }

        _unclaimedCount++;
        DatagramMetrics.Unclaimed();
    }

    private void Drained()
    {
        var receivers = _receivers;
        for (var i = 0; i < receivers.Length; i++)
        {
            try
            {
                receivers[i].Receiver.OnDrained();
            }
#pragma warning disable CA1031 // as in Dispatch
            catch (Exception)
#pragma warning restore CA1031
            {
                _faults++;
                DatagramMetrics.Fault();
            }
        }
    }

    /// <summary>Marks the multiplexer closed and tells everyone registered, once.</summary>
    private void Close()
    {
        Entry[] receivers;
        DatagramSubSocket? unclaimed;
        lock (_gate)
        {
            if (_closed)
            {
                return;
            }

            _closed = true;
            receivers = _receivers;
            unclaimed = _unclaimed;
        }

        foreach (var entry in receivers)
        {
            try
            {
                entry.Receiver.OnClosed();
            }
#pragma warning disable CA1031 // as in Dispatch: the others must still hear it
            catch (Exception)
#pragma warning restore CA1031
            {
                _faults++;
                DatagramMetrics.Fault();
            }
        }

        unclaimed?.Queue.Complete();
    }

    // ------------------------------------------------------------------ disposal

    /// <summary>Stops the loop, closes every sub-socket and tells every receiver (<see cref="IDatagramReceiver.OnClosed"/>);
    /// disposes the socket when the multiplexer owns it.</summary>
    public void Dispose()
    {
        if (_stop.IsCancellationRequested)
        {
            return;
        }

        Close();
        _stop.Cancel();
        if (_ownsSocket)
        {
            _socket.Dispose();
        }
    }

    /// <summary>As <see cref="Dispose"/>, then waits for the receive loop to end (so a socket the multiplexer does not
    /// own is free for its owner again).</summary>
    public async ValueTask DisposeAsync()
    {
        Dispose();
        await _loop;
    }

    private readonly record struct Entry(IDatagramReceiver Receiver, DatagramClaim Claim);
}

/// <summary>
/// A pull sub-socket of a <see cref="DatagramMultiplexer"/>: an <see cref="IDatagramSocket"/> over the datagrams its
/// rule matches (or every unclaimed one), with the interface's whole contract (see <see cref="DatagramQueue"/>).
/// Sends go straight to the shared socket; disposing it removes only it.
/// </summary>
public sealed class DatagramSubSocket : IDatagramSocket, IDatagramReceiver, IHopLimitDatagramSocket
{
    private readonly DatagramMultiplexer _owner;
    private readonly DatagramMatch? _match;
    private int _disposed;

    internal DatagramSubSocket(DatagramMultiplexer owner, DatagramMatch? match, int queueCapacity)
    {
        _owner = owner;
        _match = match;
        Queue = new DatagramQueue(queueCapacity, nameof(DatagramSubSocket));
    }

    internal DatagramQueue Queue { get; }

    public IPEndPoint LocalEndPoint => _owner.LocalEndPoint;

    /// <summary>Datagrams dropped because the queue was full.</summary>
    public long Dropped => Queue.Dropped;

    /// <summary>Datagrams dropped because they were larger than the receive's buffer.</summary>
    public long OversizeDropped => Queue.OversizeDropped;

    public ValueTask<int> SendToAsync(ReadOnlyMemory<byte> datagram, IPEndPoint remoteEndPoint,
        CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        return _owner.SendToAsync(datagram, remoteEndPoint, cancellationToken);
    }

    public ValueTask<int> SendToAsync(ReadOnlyMemory<byte> datagram, IPEndPoint remoteEndPoint, byte hopLimit,
        CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        return _owner.SendToAsync(datagram, remoteEndPoint, hopLimit, cancellationToken);
    }

    public ValueTask<ReceivedDatagram> ReceiveFromAsync(Memory<byte> buffer,
        CancellationToken cancellationToken = default) => Queue.ReceiveAsync(buffer, cancellationToken);

    bool IDatagramReceiver.TryReceive(ReadOnlySpan<byte> datagram, IPEndPoint source)
    {
        if (_match is null || !_match(datagram, source))
        {
            return false;
        }

        Queue.TryWrite(datagram, source);
        return true;
    }

    /// <summary>The multiplexer stopped: receives end with <see cref="ObjectDisposedException"/>.</summary>
    void IDatagramReceiver.OnClosed() => Queue.Complete();

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _owner.Remove(this);
        Queue.Complete();
    }

    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }
}
