using System.Buffers;
using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using NatKit.Net;
using NatKit.Utp.Internal;

namespace NatKit.Utp;

/// <summary>
/// A uTP endpoint on one UDP socket: opens connections (<see cref="ConnectAsync"/>), accepts them
/// (<see cref="AcceptAsync"/>), and shares the socket with other protocols. It has no receive loop: it is a
/// <see cref="DatagramClaim.ByContent"/> receiver on the socket's <see cref="DatagramMultiplexer"/>, taking the
/// datagrams shaped like uTP (<see cref="DatagramClassifier"/>) and leaving STUN, TURN and probes to the others. On a
/// socket of its own (<see cref="UtpSocket(IDatagramSocket, TimeProvider, UtpOptions?, bool)"/>) it makes that
/// multiplexer itself and hands every non-uTP datagram to <see cref="OtherTraffic"/>. Timers come from the network's
/// <see cref="TimeProvider"/>; no thread or Task.Run of its own, so it runs unchanged in the lab.
/// </summary>
public sealed class UtpSocket : IAsyncDisposable, IDisposable, IDatagramReceiver
{
    private readonly DatagramMultiplexer _multiplexer;
    private readonly bool _ownsMultiplexer;
    private readonly DatagramSubSocket? _other;
    private readonly TimeProvider _time;
    private readonly UtpOptions _options;
    private readonly Dictionary<ConnectionKey, UtpConnection> _connections = [];
    private readonly List<UtpConnection> _tickList = [];
    private readonly List<UtpConnection> _deferredAcks = [];
    private readonly Queue<UtpConnection> _acceptQueue = new();
    private readonly AsyncSignal _acceptSignal;
    private readonly ITimer _timer;
    private readonly Random _random;
    private byte[] _scratch;
    private bool _timerRunning;
    private bool _listening;
    private bool _disposed; // no more traffic: disposed, or the socket closed
    private bool _released; // disposed: timer, meter and registration gone
    private readonly Meter _meter;
    private long _resetTokens;
    private long _resetRefill;

    /// <summary>uTP on a socket of its own (or one whose non-uTP traffic it hands out, <see cref="OtherTraffic"/>):
    /// makes the socket's multiplexer. <paramref name="ownsSocket"/>: dispose the socket with the endpoint.</summary>
    public UtpSocket(IDatagramSocket socket, TimeProvider timeProvider, UtpOptions? options = null,
        bool ownsSocket = true)
        : this(new DatagramMultiplexer(socket ?? throw new ArgumentNullException(nameof(socket)), ownsSocket),
            timeProvider, options, ownsMultiplexer: true)
    {
    }

    /// <summary>uTP on a shared socket: registers on <paramref name="multiplexer"/> for the datagrams shaped like uTP
    /// and sends through it. The multiplexer stays its owner's (disposing the endpoint only leaves it); the rest of
    /// its traffic is its other receivers' and its unclaimed-traffic socket's.</summary>
    public UtpSocket(DatagramMultiplexer multiplexer, TimeProvider timeProvider, UtpOptions? options = null)
        : this(multiplexer, timeProvider, options, ownsMultiplexer: false)
    {
    }

    private UtpSocket(DatagramMultiplexer multiplexer, TimeProvider timeProvider, UtpOptions? options,
        bool ownsMultiplexer)
    {
        ArgumentNullException.ThrowIfNull(multiplexer);
        ArgumentNullException.ThrowIfNull(timeProvider);
        _multiplexer = multiplexer;
        _ownsMultiplexer = ownsMultiplexer;
        _time = timeProvider;
        _options = (options ?? UtpOptions.Default).Validate();
        _random = _options.Random ?? Random.Shared;
        _scratch = new byte[_options.MaxDatagramSize + 64];
        _acceptSignal = new AsyncSignal(Gate);
        _timer = timeProvider.CreateTimer(static s => ((UtpSocket)s!).OnTick(), this, Timeout.InfiniteTimeSpan,
            Timeout.InfiniteTimeSpan);
        _meter = new Meter("NatKit.Utp");
        _meter.CreateObservableCounter("natkit.utp.datagrams.sent", () => DatagramsSent, "{datagram}", "uTP datagrams sent (data, control, retransmissions)");
        _meter.CreateObservableCounter("natkit.utp.datagrams.received", () => UtpReceived, "{datagram}", "uTP datagrams received");
        _meter.CreateObservableCounter("natkit.utp.datagrams.other", () => OtherReceived, "{datagram}", "Non-uTP datagrams handed to the owner");
        _meter.CreateObservableCounter("natkit.utp.retransmissions", () => RetransmissionsTotal, "{packet}", "Packets sent again");
        _meter.CreateObservableCounter("natkit.utp.timeouts", () => TimeoutsTotal, "{event}", "Retransmission timeouts");
        _meter.CreateObservableCounter("natkit.utp.connections.opened", () => ConnectionsOpened, "{connection}", "Connections opened or accepted");
        _meter.CreateObservableCounter("natkit.utp.connections.failed", () => ConnectionsFailed, "{connection}", "Connections that failed (timeout, reset)");
        _meter.CreateObservableCounter("natkit.utp.resets.sent", () => ResetsSent, "{packet}", "RESETs sent for unknown connections");
        _meter.CreateObservableUpDownCounter("natkit.utp.connections.active", () => _connections.Count, "{connection}", "Connections in the table");
        if (ownsMultiplexer)
        {
            _other = multiplexer.CreateUnclaimedSocket(_options.OtherTrafficQueue);
        }

        multiplexer.AddReceiver(this, DatagramClaim.ByContent);
    }

    internal long DatagramsSent { get; private set; }

    internal long UtpReceived { get; private set; }

    internal long OtherReceived { get; private set; }

    internal long RetransmissionsTotal { get; set; }

    internal long TimeoutsTotal { get; set; }

    internal long ConnectionsOpened { get; private set; }

    internal long ConnectionsFailed { get; set; }

    internal long ResetsSent { get; private set; }

    /// <summary>Binds a UDP socket on <paramref name="network"/> and runs uTP on it, with the network's clock.</summary>
    public static async ValueTask<UtpSocket> BindAsync(INetwork network, IPEndPoint localEndPoint,
        UtpOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(network);
        var socket = await network.BindUdpAsync(localEndPoint, cancellationToken);
        return new UtpSocket(socket, network.TimeProvider, options);
    }

    internal Lock Gate { get; } = new();

    public IPEndPoint LocalEndPoint => _multiplexer.LocalEndPoint;

    /// <summary>The multiplexer of the socket the endpoint runs on.</summary>
    public DatagramMultiplexer Multiplexer => _multiplexer;

    public UtpOptions Options => _options;

    /// <summary>Decides which datagrams are uTP; register TURN servers here.</summary>
    public DatagramClassifier Classifier { get; } = new();

    /// <summary>
    /// On a socket of the endpoint's own: everything on it that is not uTP, as a datagram socket (the multiplexer's
    /// unclaimed-traffic socket): receive yields those datagrams whole (new ones are dropped while
    /// <see cref="UtpOptions.OtherTrafficQueue"/> is full), send goes straight out of the shared socket. Disposing it
    /// does not close the uTP endpoint.
    /// </summary>
    /// <exception cref="InvalidOperationException">The endpoint runs on a caller's multiplexer: non-uTP traffic is
    /// that multiplexer's (<see cref="DatagramMultiplexer.CreateUnclaimedSocket"/>).</exception>
    public IDatagramSocket OtherTraffic => _other ?? throw new InvalidOperationException(
        "this uTP endpoint runs on a shared multiplexer: its other traffic is the multiplexer's own");

    /// <summary>Connections currently in the endpoint's table (including lingering closed ones).</summary>
    public int ConnectionCount
    {
        get
        {
            lock (Gate)
            {
                return _connections.Count;
            }
        }
    }

    /// <summary>Starts accepting incoming connections (AcceptAsync does this too). Until then SYNs are ignored.</summary>
    public void Listen()
    {
        lock (Gate)
        {
            _listening = true;
        }
    }

    /// <summary>Opens a connection. Fails with <see cref="NetworkException"/> (TimedOut) when the SYN and its
    /// <see cref="UtpOptions.SynRetries"/> retransmissions go unanswered (<see cref="UtpOptions.ConnectTimeoutBound"/>),
    /// (ConnectionRefused) when the peer answers with a RESET.</summary>
    public async ValueTask<UtpStream> ConnectAsync(IPEndPoint remoteEndPoint,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(remoteEndPoint);
        UtpConnection connection;
        lock (Gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_connections.Count >= _options.MaxConnections)
            {
                throw new NetworkException(SocketError.TooManyOpenSockets,
                    $"uTP endpoint {LocalEndPoint} has {_connections.Count} connections (MaxConnections)");
            }

            ushort recvId;
            do
            {
                recvId = (ushort)_random.Next(0x10000);
            }
            while (_connections.ContainsKey(new ConnectionKey(remoteEndPoint, recvId)) ||
                   _connections.ContainsKey(new ConnectionKey(remoteEndPoint, (ushort)(recvId + 1))));

            var now = Now();
            connection = new UtpConnection(this, _options, remoteEndPoint, recvId, (ushort)(recvId + 1), now);
            Add(connection);
            connection.StartConnect(now);
        }

        while (true)
        {
            ValueTask wait;
            lock (Gate)
            {
                if (connection.State == ConnectionState.Connected)
                {
                    return new UtpStream(this, connection);
                }

                if (connection.State != ConnectionState.SynSent)
                {
                    throw connection.Error ?? new NetworkException(SocketError.NotConnected, "uTP connect failed");
                }

                wait = connection.ConnectSignal.WaitAsync(cancellationToken);
            }

            try
            {
                await wait;
            }
            catch (OperationCanceledException)
            {
                lock (Gate)
                {
                    if (connection.State == ConnectionState.SynSent)
                    {
                        connection.Fail(new OperationCanceledException(cancellationToken));
                    }
                }

                throw;
            }
        }
    }

    /// <summary>Waits for the next incoming connection (and starts listening if not yet).</summary>
    public async ValueTask<UtpStream> AcceptAsync(CancellationToken cancellationToken = default)
    {
        while (true)
        {
            ValueTask wait;
            lock (Gate)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                _listening = true;
                while (_acceptQueue.TryDequeue(out var c))
                {
                    if (c.State is ConnectionState.Connected or ConnectionState.Closed)
                    {
                        return new UtpStream(this, c);
                    }
                }

                wait = _acceptSignal.WaitAsync(cancellationToken);
            }

            await wait;
        }
    }

    // ------------------------------------------------------------------ receive path

    /// <summary>The multiplexer offers a datagram: takes it when it is uTP (see <see cref="DatagramClassifier"/>),
    /// leaves it for the socket's other receivers otherwise.</summary>
    bool IDatagramReceiver.TryReceive(ReadOnlySpan<byte> datagram, IPEndPoint source) => Receive(datagram, source);

    /// <summary>The socket's queue is drained: send the ACKs held back to cover a batch of packets.</summary>
    void IDatagramReceiver.OnDrained() => FlushDeferredAcks();

    /// <summary>The socket closed under the endpoint: every connection fails.</summary>
    void IDatagramReceiver.OnClosed()
    {
        lock (Gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            FailAllLocked(new ObjectDisposedException(nameof(UtpSocket)));
        }
    }

    /// <summary>Hands one datagram to uTP as if it arrived on the socket from <paramref name="source"/>; a datagram
    /// that is not uTP is ignored (counted). For owners that unwrap traffic themselves; a multiplexer calls the
    /// receiver method instead.</summary>
    public void OnDatagram(ReadOnlySpan<byte> datagram, IPEndPoint source) => Receive(datagram, source);

    private bool Receive(ReadOnlySpan<byte> datagram, IPEndPoint source)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (Classifier.Classify(datagram, source, out var header) != DatagramKind.Utp)
        {
            OtherReceived++;
            return false;
        }

        UtpReceived++;
        lock (Gate)
        {
            if (_disposed)
            {
                return true;
            }

            var now = Now();
            var id = header.ConnectionId;
            switch (header.Type)
            {
                case UtpPacketType.Reset:
                    // A RESET carries the sender's send id: our receive id, or (if it lost track) our send id.
                    if (_connections.TryGetValue(new ConnectionKey(source, id), out var r) ||
                        (_connections.TryGetValue(new ConnectionKey(source, (ushort)(id + 1)), out r) &&
                         r.SendId == id) ||
                        (_connections.TryGetValue(new ConnectionKey(source, (ushort)(id - 1)), out r) &&
                         r.SendId == id))
                    {
                        r.OnReset();
                    }

                    return true;

                case UtpPacketType.Syn:
                    OnSyn(header, source, now);
                    return true;

                default:
                    if (_connections.TryGetValue(new ConnectionKey(source, id), out var c))
                    {
                        c.OnPacket(header, now);
                    }
                    else if (header.Type is UtpPacketType.Data or UtpPacketType.Fin)
                    {
                        SendResetLocked(source, id, header.SequenceNumber, now);
                    }

                    return true;
            }
        }
    }

    private void OnSyn(in UtpHeader syn, IPEndPoint source, long now)
    {
        var recvId = (ushort)(syn.ConnectionId + 1);
        if (_connections.TryGetValue(new ConnectionKey(source, recvId), out var existing))
        {
            existing.OnDuplicateSyn(now);
            return;
        }

        if (!_listening || _connections.Count >= _options.MaxConnections ||
            _acceptQueue.Count >= _options.AcceptBacklog)
        {
            return;
        }

        var connection = new UtpConnection(this, _options, source, recvId, syn.ConnectionId, now);
        Add(connection);
        connection.Accept(syn.SequenceNumber, (ushort)_random.Next(0x10000), now);
        _acceptQueue.Enqueue(connection);
        _acceptSignal.Set();
    }

    /// <summary>Answers a packet for no connection we know with a RESET, at most 100 a second (so a flood of forged
    /// packets cannot make us a reflector).</summary>
    private void SendResetLocked(IPEndPoint to, ushort connectionId, ushort seq, long now)
    {
        if (now - _resetRefill >= 1_000_000)
        {
            _resetRefill = now;
            _resetTokens = 100;
        }

        if (_resetTokens <= 0)
        {
            return;
        }

        _resetTokens--;
        ResetsSent++;
        UtpHeader.Write(_scratch, UtpPacketType.Reset, 0, connectionId, (uint)now, 0, 0,
            (ushort)_random.Next(0x10000), seq);
        SendScratch(UtpHeader.Size, to);
    }

    // ------------------------------------------------------------------ send path

    /// <summary>A buffer for control packets (STATE, RESET, probes), valid until the next SendScratch.</summary>
    internal byte[] Scratch => _scratch;

    internal void SendScratch(int length, IPEndPoint to) => _scratch = Send(_scratch, length, to);

    /// <summary>
    /// Sends <paramref name="length"/> bytes of <paramref name="buffer"/> and returns the buffer the caller may keep
    /// using (rewrite, resend, hand back to the pool): <paramref name="buffer"/> itself when the socket finished
    /// with it before returning (the usual case, which allocates nothing), otherwise a copy in a fresh pooled array.
    /// The original then belongs to the pending send: the caller must drop it, and it is left to the GC, never
    /// returned to the pool, since the socket may still read it.
    /// </summary>
    internal byte[] Send(byte[] buffer, int length, IPEndPoint to)
    {
        DatagramsSent++;
        ValueTask<int> pending;
        try
        {
            pending = _multiplexer.SendToAsync(buffer.AsMemory(0, length), to);
        }
        catch (Exception e) when (e is NetworkException or ObjectDisposedException)
        {
            return buffer;
        }

        if (pending.IsCompleted)
        {
            ObserveCompleted(pending);
            return buffer;
        }

        _ = ObserveAsync(pending);
        var copy = ArrayPool<byte>.Shared.Rent(buffer.Length);
        buffer.AsSpan(0, length).CopyTo(copy);
        return copy;
    }

    private static void ObserveCompleted(ValueTask<int> pending)
    {
        try
        {
            pending.GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is NetworkException or ObjectDisposedException
                                      or OperationCanceledException)
        {
            // UDP: a failed send is a lost packet; retransmission deals with it.
        }
    }

    private static async Task ObserveAsync(ValueTask<int> pending)
    {
        try
        {
            await pending;
        }
        catch (Exception e) when (e is NetworkException or ObjectDisposedException
                                      or OperationCanceledException)
        {
            // as above
        }
    }

    // ------------------------------------------------------------------ table and timers

    internal long Now()
    {
        var ts = _time.GetTimestamp();
        return (long)((Int128)ts * 1_000_000 / _time.TimestampFrequency);
    }

    private void Add(UtpConnection connection)
    {
        ConnectionsOpened++;
        _connections.Add(new ConnectionKey(connection.Remote, connection.RecvId), connection);
        if (!_timerRunning)
        {
            _timerRunning = true;
            _timer.Change(_options.TickInterval, _options.TickInterval);
        }
    }

    internal void Remove(UtpConnection connection)
    {
        var key = new ConnectionKey(connection.Remote, connection.RecvId);
        if (_connections.TryGetValue(key, out var c) && ReferenceEquals(c, connection))
        {
            _connections.Remove(key);
            connection.Release();
        }

        if (_connections.Count == 0 && _timerRunning)
        {
            _timerRunning = false;
            _timer.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        }
    }

    internal void DeferAck(UtpConnection connection) => _deferredAcks.Add(connection);

    private void FlushDeferredAcks()
    {
        lock (Gate)
        {
            FlushDeferredAcksLocked(Now());
        }
    }

    private void FlushDeferredAcksLocked(long now)
    {
        for (var i = 0; i < _deferredAcks.Count; i++)
        {
            _deferredAcks[i].FlushAck(now);
        }

        _deferredAcks.Clear();
    }

    private void OnTick()
    {
        lock (Gate)
        {
            if (_disposed)
            {
                return;
            }

            var now = Now();
            FlushDeferredAcksLocked(now);
            _tickList.Clear();
            foreach (var c in _connections.Values)
            {
                _tickList.Add(c);
            }

            foreach (var c in _tickList)
            {
                c.OnTick(now);
            }

            _tickList.Clear();
        }
    }

    private void FailAllLocked(Exception error)
    {
        _tickList.Clear();
        _tickList.AddRange(_connections.Values);
        foreach (var c in _tickList)
        {
            c.Fail(error);
        }

        _tickList.Clear();
        _acceptSignal.Set();
    }

    // ------------------------------------------------------------------ stream operations (under the gate)

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    internal async ValueTask<int> ReadAsync(UtpConnection c, Memory<byte> buffer, CancellationToken ct)
    {
        if (buffer.IsEmpty)
        {
            return 0;
        }

        while (true)
        {
            ValueTask wait;
            lock (Gate)
            {
                var n = c.Read(buffer.Span, Now());
                if (n > 0 || c.EndOfStream)
                {
                    return n;
                }

                if (c.State == ConnectionState.Failed)
                {
                    throw Wrap(c.Error);
                }

                if (c.State == ConnectionState.Closed)
                {
                    return 0;
                }

                wait = c.ReadSignal.WaitAsync(ct);
            }

            await wait;
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    internal async ValueTask WriteAsync(UtpConnection c, ReadOnlyMemory<byte> buffer, CancellationToken ct)
    {
        while (!buffer.IsEmpty)
        {
            ValueTask wait;
            lock (Gate)
            {
                if (c.State == ConnectionState.Failed)
                {
                    throw Wrap(c.Error);
                }

                if (c.WriteShutdown || c.State != ConnectionState.Connected)
                {
                    throw new InvalidOperationException("the uTP stream was shut down for writing");
                }

                var n = c.Write(buffer.Span, Now());
                buffer = buffer[n..];
                if (buffer.IsEmpty)
                {
                    return;
                }

                wait = c.WriteSignal.WaitAsync(ct);
            }

            await wait;
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    internal async ValueTask FlushAsync(UtpConnection c, CancellationToken ct)
    {
        while (true)
        {
            ValueTask wait;
            lock (Gate)
            {
                if (c.State == ConnectionState.Failed)
                {
                    throw Wrap(c.Error);
                }

                if (c.Drained || c.State == ConnectionState.Closed)
                {
                    return;
                }

                c.Uncork(Now()); // a flush sends everything
                wait = c.FlushSignal.WaitAsync(ct);
            }

            await wait;
        }
    }

    internal void Cork(UtpConnection c, bool corked)
    {
        lock (Gate)
        {
            if (corked)
            {
                c.Cork(Now());
            }
            else
            {
                c.Uncork(Now());
            }
        }
    }

    internal void ShutdownWrite(UtpConnection c)
    {
        lock (Gate)
        {
            if (c.State == ConnectionState.Connected)
            {
                c.ShutdownWrite(Now());
            }
        }
    }

    internal void Close(UtpConnection c)
    {
        lock (Gate)
        {
            c.Close(Now());
        }
    }

    internal UtpStatistics Statistics(UtpConnection c)
    {
        lock (Gate)
        {
            return c.Statistics;
        }
    }

    private static IOException Wrap(Exception? error) => error switch
    {
        IOException io => new NetworkException(io is NetworkException n ? n.Error : SocketError.SocketError,
            io.Message, io),
        ObjectDisposedException d => new NetworkException(SocketError.Shutdown, "the uTP endpoint was closed", d),
        OperationCanceledException o => new NetworkException(SocketError.OperationAborted, "the uTP connect was cancelled", o),
        null => new NetworkException(SocketError.SocketError, "uTP connection failed"),
        _ => new NetworkException(SocketError.SocketError, error.Message, error),
    };

    // ------------------------------------------------------------------ disposal

    /// <summary>Stops the endpoint: every connection fails (no FIN is sent), the socket closes if owned.</summary>
    public void Dispose()
    {
        lock (Gate)
        {
            if (_released)
            {
                return;
            }

            _released = true;
            if (!_disposed)
            {
                _disposed = true;
                FailAllLocked(new ObjectDisposedException(nameof(UtpSocket)));
            }
        }

        _timer.Dispose();
        _meter.Dispose();
        _multiplexer.RemoveReceiver(this);
        if (_ownsMultiplexer)
        {
            _multiplexer.Dispose();
        }
    }

    /// <summary>As <see cref="Dispose"/>; on a socket of its own, also waits for the multiplexer's loop to end.</summary>
    public async ValueTask DisposeAsync()
    {
        Dispose();
        if (_ownsMultiplexer)
        {
            await _multiplexer.DisposeAsync();
        }
    }

    private readonly record struct ConnectionKey(IPEndPoint Remote, ushort Id);
}
