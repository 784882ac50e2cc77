using System.Buffers;
using System.Net;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using NatKit.Net;

namespace NatKit.Traversal.Ice;

/// <summary>
/// Runs an <see cref="IceAgent"/> on datagram sockets (real ones or the lab's): datagrams in, the agent's
/// transmits out, one timer on the network's <see cref="TimeProvider"/> for its deadlines, and the application's
/// datagrams to and from the peer over the selected pair (<see cref="DataSocket"/>, which follows the selected pair
/// when it changes, relay to direct included). A socket is either read by this transport's own receive loop
/// (<see cref="AddSocket"/>), or fed by whoever owns its receive loop through <see cref="Deliver"/> (a datagram
/// multiplexer sharing the socket with uTP and the STUN client). Thread-safe: one lock around the agent; sends,
/// events and task completions happen outside it.
/// </summary>
public sealed partial class IceTransport : IAsyncDisposable
{
    private const int ReceiveBufferSize = 65536;

    private readonly object _gate = new();
    private readonly IceAgent _agent;
    private readonly TimeProvider _time;
    private readonly long _origin;
    private readonly ILogger _logger;
    private readonly List<IDatagramSocket> _sockets = [];
    private readonly List<bool> _ownLoop = [];
    private readonly List<Task> _loops = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly ITimer _timer;
    private readonly TaskCompletionSource<IceCandidatePair> _connected = new();
    private readonly Channel<Inbound> _data;
    private readonly List<IceTransmit> _sending = [];
    private readonly List<IceEvent> _raising = [];
    private static readonly IPEndPoint Unspecified = new(IPAddress.Any, 0);
    private readonly DatagramPush _push = new(); // DataSocket's push: one receiver, the queue's hand-over under its lock
    private TimeSpan _armedFor = TimeSpan.MaxValue;
    private IPEndPoint? _peerEndPoint;
    private bool _started;
    private bool _disposed;

    /// <param name="agent">The agent; this transport is the only caller from now on.</param>
    /// <param name="time">The network's clock (<see cref="INetwork.TimeProvider"/>).</param>
    /// <param name="logger">Where failures to send and receive are logged.</param>
    /// <param name="dataQueue">Most application datagrams held until <see cref="DataSocket"/> is read; the oldest
    /// go first.</param>
    public IceTransport(IceAgent agent, TimeProvider time, ILogger? logger = null, int dataQueue = 256)
    {
        _agent = agent ?? throw new ArgumentNullException(nameof(agent));
        _time = time ?? throw new ArgumentNullException(nameof(time));
        _logger = logger ?? NullLogger.Instance;
        _origin = time.GetTimestamp();
        _timer = time.CreateTimer(static s => ((IceTransport)s!).OnTimer(), this, Timeout.InfiniteTimeSpan,
            Timeout.InfiniteTimeSpan);
        _data = Channel.CreateBounded<Inbound>(new BoundedChannelOptions(dataQueue)
        {
            FullMode = BoundedChannelFullMode.DropOldest,
            SingleReader = true,
            AllowSynchronousContinuations = true,
        }, static dropped => ArrayPool<byte>.Shared.Return(dropped.Buffer));
        DataSocket = new IcePeerSocket(this);
    }

    public IceAgent Agent => _agent;

    /// <summary>The selected pair's datagram path (see <see cref="IcePeerSocket"/>).</summary>
    public IcePeerSocket DataSocket { get; }

    /// <summary>Completes with the first selected pair; faults with <see cref="IceFailedException"/> when the
    /// agent fails first, or is cancelled when the transport is disposed.</summary>
    public Task<IceCandidatePair> Connected => _connected.Task;

    /// <summary>Every agent event, raised outside the lock on the thread that caused it.</summary>
    public event Action<IceEvent>? EventRaised;

    /// <summary>The selected pair now (null before connection or after consent was lost).</summary>
    public IceCandidatePair? SelectedPair
    {
        get
        {
            lock (_gate)
            {
                return _agent.SelectedPair;
            }
        }
    }

    /// <summary>
    /// Adds a socket the agent sends from; returns the index to use in <see cref="IceAgent.AddLocalCandidate"/>
    /// (through <see cref="Update"/>). With <paramref name="receive"/> this transport reads the socket itself once
    /// started; without it the socket's owner hands datagrams in through <see cref="Deliver"/>.
    /// </summary>
    public int AddSocket(IDatagramSocket socket, bool receive = true)
    {
        ArgumentNullException.ThrowIfNull(socket);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _sockets.Add(socket);
            _ownLoop.Add(receive);
            if (_started && receive)
            {
                _loops.Add(ReceiveLoopAsync(_sockets.Count - 1, socket));
            }

            return _sockets.Count - 1;
        }
    }

    /// <summary>The selected path's report (see <see cref="IceAgent.SelectedPath"/>); null while none is selected.</summary>
    public IcePathReport? SelectedPath
    {
        get
        {
            lock (_gate)
            {
                return _agent.SelectedPath;
            }
        }
    }

    /// <summary>
    /// Adds a local candidate on socket <paramref name="socket"/> (from <see cref="AddSocket"/>), before or after
    /// the checks started (trickle): a port mapping's external address, a birthday set's socket, a relayed
    /// address. Its pairs join the check list at once; after a relayed pair was selected, the relay-to-direct
    /// upgrade checks them. False when the agent refuses it (see <see cref="IceAgent.AddLocalCandidate"/>).
    /// </summary>
    public bool AddLocalCandidate(IceCandidate candidate, int socket) =>
        Update(a => a.AddLocalCandidate(candidate, socket));

    /// <summary>
    /// Adds a remote candidate, before or after the checks started (trickle): the peer's signaled candidates, or
    /// the hard-NAT methods' guesses (predicted ports, birthday probes) with their <see cref="IceCandidateOrigin"/>,
    /// so that <see cref="SelectedPath"/> names the method that found the path. False when the agent refuses it
    /// (see <see cref="IceAgent.AddRemoteCandidate"/>).
    /// </summary>
    public bool AddRemoteCandidate(IceCandidate candidate) => Update(a => a.AddRemoteCandidate(candidate));

    /// <summary>Runs <paramref name="change"/> on the agent under the lock (add candidates, set credentials,
    /// end of candidates), then sends what it produced.</summary>
    public T Update<T>(Func<IceAgent, T> change)
    {
        ArgumentNullException.ThrowIfNull(change);
        T result;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            result = change(_agent);
        }

        Flush();
        return result;
    }

    /// <summary>Starts the receive loops of the sockets this transport reads, and the agent's timer.</summary>
    public void Start()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_started)
            {
                return;
            }

            _started = true;
            for (var i = 0; i < _sockets.Count; i++)
            {
                if (_ownLoop[i])
                {
                    _loops.Add(ReceiveLoopAsync(i, _sockets[i]));
                }
            }
        }

        Flush();
    }

    /// <summary>
    /// Hands in a datagram that arrived on socket <paramref name="socket"/> from <paramref name="source"/>. True
    /// when it was the agent's (a check, a response) or the peer's application data (queued for
    /// <see cref="DataSocket"/>); false for anything else, which the caller passes on.
    /// </summary>
    public bool Deliver(ReadOnlySpan<byte> datagram, IPEndPoint source, int socket)
    {
        bool taken;
        var data = false;
        IPEndPoint? peer = null;
        lock (_gate)
        {
            if (_disposed)
            {
                return false;
            }

            var result = _agent.Receive(datagram, source, socket, Now);
            taken = result is IceInputResult.Handled or IceInputResult.Dropped;
            if (result == IceInputResult.NotStun && _agent.IsPeer(socket, source))
            {
                taken = true;
                data = true;
                peer = _peerEndPoint;
            }
        }

        // Outside the gate: the reader (inline, or the channel reader's continuation) is uTP, which takes its own lock
        // and sends through Route, which takes this gate; holding it here would order the two locks both ways and
        // deadlock with uTP's timer thread.
        if (data)
        {
            _push.Deliver(datagram, peer ?? Unspecified, this, static (t, d, _) => t.Enqueue(d));
        }

        Flush();
        return taken;
    }

    /// <summary>The socket the peer's datagrams arrive on has nothing more queued: a receiver pushed to
    /// (<see cref="IPushDatagramSocket"/>: uTP) flushes what it batched per burst (its delayed ACKs).</summary>
    public void OnDrained() => _push.Drained();

    /// <summary>No receiver is pushed to: a pooled copy waits in the channel for <see cref="DataSocket"/>'s reader
    /// (the oldest dropped when it is full).</summary>
    private void Enqueue(ReadOnlySpan<byte> datagram)
    {
        var data = ArrayPool<byte>.Shared.Rent(Math.Max(1, datagram.Length));
        datagram.CopyTo(data);
        if (!_data.Writer.TryWrite(new Inbound(data, datagram.Length)))
        {
            ArrayPool<byte>.Shared.Return(data);
        }
    }

    /// <summary><see cref="IcePeerSocket"/>'s push: the peer's datagrams go to <paramref name="receiver"/> inline
    /// from <see cref="Deliver"/>, after those queued before.</summary>
    internal Task PushToAsync(IDatagramReceiver receiver, CancellationToken cancellationToken) =>
        _push.Start(receiver, r =>
        {
            lock (_gate)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
            }

            while (_data.Reader.TryRead(out var queued))
            {
                try
                {
                    r.TryReceive(queued.Buffer.AsSpan(0, queued.Length), PeerEndPoint ?? Unspecified);
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(queued.Buffer);
                }
            }
        }, cancellationToken);

    public async ValueTask DisposeAsync()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _agent.Close();
        }

        // Cancel, not CancelAsync: the receive loops' cancellation must run here, on the caller's thread (the lab's
        // loop), not on the thread pool.
        _stop.Cancel();
        await _timer.DisposeAsync().ConfigureAwait(false);
        foreach (var loop in _loops)
        {
            try
            {
                await loop.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }

        _push.End();
        _data.Writer.TryComplete();
        while (_data.Reader.TryRead(out var left))
        {
            ArrayPool<byte>.Shared.Return(left.Buffer);
        }

        _connected.TrySetCanceled();
        _stop.Dispose();
    }

    internal TimeSpan Now => _time.GetElapsedTime(_origin);

    private void OnTimer()
    {
        lock (_gate)
        {
            _armedFor = TimeSpan.MaxValue;
        }

        Flush();
    }

    /// <summary>Polls the agent if it is due, takes its transmits and events under the lock, then sends and raises
    /// them outside it, until nothing is left; the timer is armed for the agent's next deadline.</summary>
    private void Flush()
    {
        while (true)
        {
            lock (_gate)
            {
                if (_disposed)
                {
                    return;
                }

                var now = Now;
                if (_agent.NextDeadline <= now)
                {
                    _agent.Poll(now);
                }

                while (_agent.TryTakeTransmit(out var t))
                {
                    _sending.Add(t);
                }

                while (_agent.TryTakeEvent(out var e))
                {
                    _raising.Add(e);
                }

                var deadline = _agent.NextDeadline;
                if (deadline != TimeSpan.MaxValue && deadline != _armedFor)
                {
                    // A deadline still due after a poll (nothing more to do yet) waits a millisecond, never spins.
                    var due = deadline > now ? deadline - now : TimeSpan.FromMilliseconds(1);
                    _timer.Change(due, Timeout.InfiniteTimeSpan);
                    _armedFor = deadline;
                }

                if (_sending.Count == 0 && _raising.Count == 0)
                {
                    return;
                }
            }

            IceTransmit[] sends;
            IceEvent[] events;
            lock (_gate)
            {
                sends = [.. _sending];
                events = [.. _raising];
                _sending.Clear();
                _raising.Clear();
            }

            foreach (var t in sends)
            {
                Send(t.Socket, t.Datagram, t.Destination);
            }

            foreach (var e in events)
            {
                Raise(e);
            }
        }
    }

    private void Raise(IceEvent e)
    {
        switch (e)
        {
            case IceSelectedPairChanged { Pair: { } pair }:
                _peerEndPoint ??= pair.Remote.EndPoint;
                _connected.TrySetResult(pair);
                break;
            case IceStateChanged { State: IceAgentState.Failed }:
                _connected.TrySetException(new IceFailedException(
                    "ICE failed: every candidate pair failed, or consent was lost"));
                break;
        }

        EventRaised?.Invoke(e);
    }

    internal void Send(int socket, ReadOnlyMemory<byte> datagram, IPEndPoint destination)
    {
        IDatagramSocket s;
        lock (_gate)
        {
            if (_disposed || socket < 0 || socket >= _sockets.Count)
            {
                return;
            }

            s = _sockets[socket];
        }

        try
        {
            var pending = s.SendToAsync(datagram, destination, _stop.Token);
            if (!pending.IsCompletedSuccessfully)
            {
                _ = ObserveAsync(pending, destination);
            }
        }
        catch (Exception ex) when (ex is NetworkException or ObjectDisposedException or OperationCanceledException)
        {
            LogSendFailed(_logger, destination, ex.Message);
        }
    }

    private async Task ObserveAsync(ValueTask<int> pending, IPEndPoint destination)
    {
        try
        {
            await pending.ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is NetworkException or ObjectDisposedException or OperationCanceledException)
        {
            LogSendFailed(_logger, destination, ex.Message);
        }
    }

    private async Task ReceiveLoopAsync(int index, IDatagramSocket socket)
    {
        var buffer = new byte[ReceiveBufferSize];
        var token = _stop.Token;
        while (!token.IsCancellationRequested)
        {
            ReceivedDatagram r;
            try
            {
                r = await socket.ReceiveFromAsync(buffer, token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (ObjectDisposedException)
            {
                return;
            }
            catch (NetworkException ex)
            {
                // An ICMP error for an earlier send (a dead candidate): the socket goes on.
                LogReceiveFailed(_logger, index, ex.Message);
                continue;
            }

            Deliver(buffer.AsSpan(0, r.Length), r.RemoteEndPoint, index);
        }
    }

    internal IPEndPoint? PeerEndPoint
    {
        get
        {
            lock (_gate)
            {
                return _peerEndPoint;
            }
        }
    }

    internal IPEndPoint LocalEndPoint
    {
        get
        {
            lock (_gate)
            {
                if (_agent.SelectedPair is { } p)
                {
                    return _sockets[p.Socket].LocalEndPoint;
                }

                return _sockets.Count > 0 ? _sockets[0].LocalEndPoint : new IPEndPoint(IPAddress.Any, 0);
            }
        }
    }

    /// <summary>The selected pair's socket and destination, noting the send for keepalives; null without one.</summary>
    internal (int Socket, IPEndPoint Destination)? Route()
    {
        lock (_gate)
        {
            if (_agent.SelectedPair is not { } p)
            {
                return null;
            }

            _agent.RecordDataSent(Now);
            return (p.Socket, p.Remote.EndPoint);
        }
    }

    internal ChannelReader<Inbound> Inbox => _data.Reader;

    internal readonly record struct Inbound(byte[] Buffer, int Length);

    [LoggerMessage(Level = LogLevel.Debug, Message = "ICE send to {Destination} failed: {Reason}")]
    private static partial void LogSendFailed(ILogger logger, IPEndPoint destination, string reason);

    [LoggerMessage(Level = LogLevel.Debug, Message = "ICE receive on socket {Socket} failed: {Reason}")]
    private static partial void LogReceiveFailed(ILogger logger, int socket, string reason);
}

/// <summary>ICE ended without a usable pair.</summary>
public sealed class IceFailedException : Exception
{
    public IceFailedException()
    {
    }

    public IceFailedException(string message)
        : base(message)
    {
    }

    public IceFailedException(string message, Exception inner)
        : base(message, inner)
    {
    }
}
