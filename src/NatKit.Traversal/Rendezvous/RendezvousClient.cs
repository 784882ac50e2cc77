using System.Net;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using NatKit.Net;
using NatKit.Stun;
using NatKit.Stun.Transactions;
using NatKit.Traversal.Identity;

namespace NatKit.Traversal.Rendezvous;

/// <summary>
/// A node's side of the rendezvous protocol, on a UDP socket its caller hands it (the node's one socket, shared with
/// STUN, ICE checks and uTP): register and keep the registration and its NAT mapping alive, look peers up, connect
/// (send an offer, get the answer and the start time), and receive offers (<see cref="OfferReceived"/>).
/// <para>
/// Datagrams reach it through <see cref="TryReceive"/> (the shape of a push receiver on a shared socket: it claims
/// the service's responses and requests and leaves everything else); <see cref="StartReceiving"/> runs a receive
/// loop of its own for a socket nothing else reads. Its requests are retransmitted on RFC 8489's schedule from a
/// <see cref="StunTransactionTable"/>, timed by the socket's network clock, so it runs in the lab unchanged.
/// </para>
/// </summary>
public sealed partial class RendezvousClient : IAsyncDisposable
{
    private const int MaxNonceRetries = 2;
    private const int RecentRequests = 32;

    private readonly IDatagramSocket _socket;
    private readonly NodeIdentity _identity;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();
    private readonly StunTransactionTable _transactions = new(256);
    private readonly StunRetransmitPolicy _policy;
    private readonly List<StunTransactionDue> _due = [];
    private readonly ITimer _timer;
    private readonly long _origin;
    private readonly CancellationTokenSource _stop = new();
    private readonly Dictionary<ulong, PendingConnection> _connections = [];
    private readonly (StunTransactionId Id, byte[] Response)[] _recent = new (StunTransactionId, byte[])[RecentRequests];
    private int _recentNext;
    private byte[] _nonce = [];
    private long _lastTimestamp;
    private IReadOnlyList<string> _candidates = [];
    private Task _keepAlive = Task.CompletedTask;
    private Task _receive = Task.CompletedTask;
    private bool _disposed;

    public RendezvousClient(IDatagramSocket socket, IPEndPoint server, NodeIdentity identity, TimeProvider time,
        RendezvousClientOptions? options = null, ILogger? logger = null)
    {
        _socket = socket ?? throw new ArgumentNullException(nameof(socket));
        Server = server ?? throw new ArgumentNullException(nameof(server));
        _identity = identity ?? throw new ArgumentNullException(nameof(identity));
        _time = time ?? throw new ArgumentNullException(nameof(time));
        Options = options ?? new RendezvousClientOptions();
        Options.Validate();
        _logger = logger ?? NullLogger.Instance;
        _policy = StunRetransmitPolicy.Udp(Options.InitialRto, Options.RequestCount, lastWaitMultiplier: 4);
        _origin = time.GetTimestamp();
        _timer = time.CreateTimer(_ => OnTimer(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    /// <summary>The service's endpoint.</summary>
    public IPEndPoint Server { get; }

    public RendezvousClientOptions Options { get; }

    public NodeId Id => _identity.Id;

    /// <summary>Where the service sees this node (its server-reflexive address), once registered.</summary>
    public IPEndPoint? ReflexiveEndPoint { get; private set; }

    /// <summary>The lifetime the service granted to the last registration.</summary>
    public TimeSpan GrantedLifetime { get; private set; }

    /// <summary>
    /// Raised, on the thread that delivered the datagram, for each verified offer from a peer. Answer it with
    /// <see cref="RendezvousOffer.AnswerAsync"/>; an offer nobody answers times out at the initiator.
    /// </summary>
    public event Action<RendezvousOffer>? OfferReceived;

    private TimeSpan Now => _time.GetElapsedTime(_origin);

    /// <summary>Runs a receive loop on the socket that hands every datagram to <see cref="TryReceive"/> (for a
    /// socket nothing else reads; a shared socket's multiplexer calls <see cref="TryReceive"/> instead).</summary>
    public void StartReceiving()
    {
        if (_receive.IsCompleted)
        {
            _receive = ReceiveLoopAsync();
        }
    }

    private async Task ReceiveLoopAsync()
    {
        var buffer = new byte[2048];
        while (!_stop.IsCancellationRequested)
        {
            ReceivedDatagram d;
            try
            {
                d = await _socket.ReceiveFromAsync(buffer, _stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
#pragma warning disable CA1031 // A receive error (an ICMP error for an earlier send) must not end the loop.
            catch (Exception e)
#pragma warning restore CA1031
            {
                LogReceiveFailed(_logger, e.Message);
                continue;
            }

            TryReceive(buffer.AsSpan(0, d.Length), d.RemoteEndPoint);
        }
    }

    /// <summary>
    /// Offers one datagram to the client: true when it was the service's (a response to one of this client's
    /// requests, or the service's Offer, Answer or Start request), false for anything else, which the caller hands
    /// to whoever else shares the socket. Never throws on untrusted bytes.
    /// </summary>
    public bool TryReceive(ReadOnlySpan<byte> datagram, IPEndPoint source)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (!StunMessageReader.LooksLikeStun(datagram) || !source.Equals(Server))
        {
            return false;
        }

        if (StunTransactionTable.IsResponse(datagram))
        {
            TaskCompletionSource<byte[]?>? done = null;
            lock (_gate)
            {
                if (_transactions.TryMatch(datagram, Now, out var match))
                {
                    done = (TaskCompletionSource<byte[]?>)match.Owner!;
                }
            }

            if (done is null)
            {
                return false;
            }

            done.TrySetResult(datagram.ToArray());
            Rearm();
            return true;
        }

        if (!StunMessageReader.TryParse(datagram, out var msg) || msg.Class != StunClass.Request ||
            msg.Method is not (RendezvousMethods.Offer or RendezvousMethods.Answer or RendezvousMethods.Start))
        {
            return false;
        }

        OnServiceRequest(msg);
        return true;
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Register and keep alive

    /// <summary>
    /// Registers this node with <paramref name="candidates"/> (opaque to the service: the ICE agent's candidate
    /// lines) and keeps the registration and the NAT mapping toward the service alive until disposal. Calling it
    /// again replaces the candidates.
    /// </summary>
    /// <exception cref="RendezvousException">The service refused (its code) or did not answer.</exception>
    public async Task RegisterAsync(IReadOnlyList<string> candidates, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(candidates);
        _candidates = candidates.ToArray();
        await RegisterOnceAsync((uint)Options.Lifetime.TotalSeconds, cancellationToken);
        if (_keepAlive.IsCompleted)
        {
            _keepAlive = KeepAliveAsync();
        }
    }

    private async Task RegisterOnceAsync(uint lifetime, CancellationToken cancellationToken)
    {
        var candidates = _candidates;
        var response = await RequestAsync((buffer, id, nonce) => RendezvousRequests.Register(buffer, id, _identity,
            candidates, NextTimestamp(), lifetime, nonce), cancellationToken);
        StunMessageReader.TryParse(response, out var msg);
        if (!msg.TryGetXorAddress(StunAttributeType.XorMappedAddress, out var mapped))
        {
            throw new RendezvousException("the service's Register response has no XOR-MAPPED-ADDRESS", 0);
        }

        msg.TryGetUInt32(RendezvousAttributes.Lifetime, out var granted);
        ReflexiveEndPoint = mapped.ToEndPoint();
        GrantedLifetime = TimeSpan.FromSeconds(granted);
    }

    private async Task KeepAliveAsync()
    {
        var registeredAt = _time.GetTimestamp();
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(Options.KeepAliveInterval, _time, _stop.Token);
                var moved = false;
                var binding = await BindingAsync(_stop.Token);
                if (binding is not null && !binding.Equals(ReflexiveEndPoint))
                {
                    // The NAT gave this node a new mapping: the service must send to the new one.
                    moved = true;
                }

                var refreshEvery = (GrantedLifetime > TimeSpan.Zero ? GrantedLifetime : Options.Lifetime) / 2;
                if (moved || _time.GetElapsedTime(registeredAt) >= refreshEvery)
                {
                    await RegisterOnceAsync((uint)Options.Lifetime.TotalSeconds, _stop.Token);
                    registeredAt = _time.GetTimestamp();
                }
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                // Disposal: the loop ends.
                return;
            }
            catch (RendezvousException e)
            {
                LogKeepAliveFailed(_logger, e.Message);
            }
        }
    }

    /// <summary>A STUN Binding to the service (it answers Binding on the same port): the reflexive address, or null
    /// when no answer came.</summary>
    public async Task<IPEndPoint?> BindingAsync(CancellationToken cancellationToken = default)
    {
        var buffer = new byte[StunMessageReader.HeaderLength];
        var id = StunTransactionId.NewRandom();
        var w = new StunMessageWriter(buffer, StunMethods.Binding, StunClass.Request, id);
        var response = await TransactAsync(id, buffer.AsMemory(0, w.Length), cancellationToken);
        return response is not null && StunMessageReader.TryParse(response, out var msg) &&
               msg.TryGetXorAddress(StunAttributeType.XorMappedAddress, out var mapped)
            ? mapped.ToEndPoint()
            : null;
    }

    private long NextTimestamp()
    {
        lock (_gate)
        {
            // Strictly increasing, so two requests in one millisecond are not a replay of each other.
            _lastTimestamp = Math.Max(_lastTimestamp + 1, _time.GetUtcNow().ToUnixTimeMilliseconds());
            return _lastTimestamp;
        }
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Lookup and connect

    /// <summary>The registration of <paramref name="peer"/>, verified against its id and signature; null when the
    /// service knows no such node.</summary>
    public async Task<RendezvousPeer?> LookupAsync(NodeId peer, CancellationToken cancellationToken = default)
    {
        byte[] response;
        try
        {
            response = await RequestAsync((buffer, id, nonce) => RendezvousRequests.Lookup(buffer, id, peer, nonce),
                cancellationToken);
        }
        catch (RendezvousException e) when (e.Code == RendezvousErrors.UnknownNode)
        {
            return null;
        }

        return RendezvousPeer.TryRead(response, peer, out var found)
            ? found
            : throw new RendezvousException($"the service's record of {peer} does not verify", 0);
    }

    /// <summary>
    /// Sends <paramref name="offer"/> to <paramref name="peer"/> through the service and waits for its answer and
    /// for the service's Start (when to send the first punch, so that both sides punch at the same moment).
    /// </summary>
    /// <exception cref="RendezvousException">The service refused, the peer declined or did not answer in time.</exception>
    public async Task<RendezvousConnection> ConnectAsync(NodeId peer, string offer,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(offer);
        var offerBytes = Encoding.UTF8.GetBytes(offer);
        if (offerBytes.Length > RendezvousLimits.MaxSessionLength)
        {
            throw new ArgumentException($"an offer is at most {RendezvousLimits.MaxSessionLength} bytes", nameof(offer));
        }

        var response = await RequestAsync((buffer, id, nonce) => RendezvousRequests.Connect(buffer, id, _identity,
            peer, offerBytes, NextTimestamp(), nonce), cancellationToken);
        StunMessageReader.TryParse(response, out var msg);
        if (!msg.TryGetUInt64(RendezvousAttributes.ConnectionId, out var cid))
        {
            throw new RendezvousException("the service's Connect response has no CONNECTION-ID", 0);
        }

        var pending = new PendingConnection(peer, initiator: true);
        lock (_gate)
        {
            _connections[cid] = pending;
        }

        using var timeout = new CancellationTokenSource(Options.ConnectTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, cancellationToken, _stop.Token);
        using var registration = linked.Token.Register(() => pending.Cancel());
        try
        {
            var answer = await pending.Answer.Task;
            var start = await pending.Start.Task;
            return new RendezvousConnection(answer, start);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new RendezvousException($"no answer from {peer} within {Options.ConnectTimeout}", 0);
        }
        finally
        {
            lock (_gate)
            {
                _connections.Remove(cid);
            }
        }
    }

    private async Task<RendezvousStart> AnswerAsync(RendezvousOffer offer, PendingConnection pending, string answer,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(answer);
        var answerBytes = Encoding.UTF8.GetBytes(answer);
        if (answerBytes.Length > RendezvousLimits.MaxSessionLength)
        {
            throw new ArgumentException($"an answer is at most {RendezvousLimits.MaxSessionLength} bytes",
                nameof(answer));
        }

        using var timeout = new CancellationTokenSource(Options.ConnectTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, cancellationToken, _stop.Token);
        using var registration = linked.Token.Register(() => pending.Cancel());
        try
        {
            await RequestAsync((buffer, id, nonce) => RendezvousRequests.Answer(buffer, id, _identity, offer.From,
                offer.ConnectionId, answerBytes, NextTimestamp(), nonce), linked.Token);
            return await pending.Start.Task;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new RendezvousException($"no Start for the connection with {offer.From} in time", 0);
        }
        finally
        {
            lock (_gate)
            {
                _connections.Remove(offer.ConnectionId);
            }
        }
    }

    // ---------------------------------------------------------------------------------------------------------------
    // The service's requests

    private void OnServiceRequest(StunMessageReader msg)
    {
        var id = msg.TransactionId;
        byte[]? cached = null;
        lock (_gate)
        {
            foreach (var (recentId, response) in _recent)
            {
                if (response is not null && recentId == id)
                {
                    cached = response;
                    break;
                }
            }
        }

        if (cached is not null)
        {
            // A retransmission: our response was lost. Same response, nothing done twice.
            Send(cached);
            return;
        }

        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        RendezvousOffer? offer = null;
        int code;
        switch (msg.Method)
        {
            case RendezvousMethods.Offer:
                code = RendezvousOffer.TryRead(msg.Message, Id, now, Options.SignatureWindow, out offer)
                    ? 0
                    : RendezvousErrors.Forbidden;
                if (offer is not null)
                {
                    var pending = new PendingConnection(offer.From, initiator: false);
                    lock (_gate)
                    {
                        if (!_connections.TryAdd(offer.ConnectionId, pending))
                        {
                            code = RendezvousErrors.Replayed;
                            offer = null;
                        }
                    }

                    if (offer is not null)
                    {
                        var o = offer;
                        offer.Answerer = (answer, ct) => AnswerAsync(o, pending, answer, ct);
                    }
                }

                break;
            case RendezvousMethods.Answer:
                code = OnAnswer(msg, now);
                break;
            default:
                code = OnStart(msg);
                break;
        }

        if (code < 0)
        {
            // Not known yet (the Connect response is still on its way): silence makes the service send it again.
            return;
        }

        var reply = new byte[96];
        var n = code == 0
            ? RendezvousRequests.Acknowledge(reply, msg.Method, id)
            : RendezvousRequests.Refuse(reply, msg.Method, id, code);
        var bytes = reply[..n];
        lock (_gate)
        {
            _recent[_recentNext] = (id, bytes);
            _recentNext = (_recentNext + 1) % RecentRequests;
        }

        Send(bytes);
        if (offer is not null)
        {
            try
            {
                OfferReceived?.Invoke(offer);
            }
#pragma warning disable CA1031 // The application's handler must not break the receive path.
            catch (Exception e)
#pragma warning restore CA1031
            {
                LogKeepAliveFailed(_logger, "offer handler: " + e.Message);
            }
        }
    }

    private int OnAnswer(StunMessageReader msg, long nowUnixMs)
    {
        if (!msg.TryGetUInt64(RendezvousAttributes.ConnectionId, out var cid))
        {
            return RendezvousErrors.BadRequest;
        }

        PendingConnection? pending;
        lock (_gate)
        {
            _connections.TryGetValue(cid, out pending);
        }

        if (pending is null || !pending.Initiator)
        {
            return -1;
        }

        if (RendezvousAnswer.TryReadFailure(msg.Message, out _, out var failure))
        {
            pending.Fail(new RendezvousException($"{pending.Peer} did not answer (the service says " +
                                                 $"{failure} {RendezvousErrors.Reason(failure)})", failure));
            return 0;
        }

        if (!RendezvousAnswer.TryRead(msg.Message, Id, pending.Peer, nowUnixMs, Options.SignatureWindow,
                out var answer))
        {
            return RendezvousErrors.Forbidden;
        }

        pending.Answer.TrySetResult(answer);
        return 0;
    }

    private int OnStart(StunMessageReader msg)
    {
        if (!RendezvousStart.TryRead(msg.Message, _time.GetTimestamp(), out var start))
        {
            return RendezvousErrors.BadRequest;
        }

        PendingConnection? pending;
        lock (_gate)
        {
            _connections.TryGetValue(start.ConnectionId, out pending);
        }

        if (pending is null)
        {
            return -1;
        }

        pending.Start.TrySetResult(start);
        return 0;
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Transactions

    private delegate int RequestBuilder(Span<byte> buffer, StunTransactionId id, ReadOnlySpan<byte> nonce);

    /// <summary>
    /// One request to the service with its nonce: a 401 or 438 teaches the client a fresh NONCE and the request is
    /// built again with it. Returns the success response.
    /// </summary>
    private async Task<byte[]> RequestAsync(RequestBuilder build, CancellationToken cancellationToken)
    {
        for (var attempt = 0; ; attempt++)
        {
            var buffer = new byte[RendezvousLimits.MaxMessageLength + 128];
            var id = StunTransactionId.NewRandom();
            var n = build(buffer, id, _nonce);
            var response = await TransactAsync(id, buffer.AsMemory(0, n), cancellationToken)
                           ?? throw new RendezvousException($"no answer from the rendezvous service {Server}", 0);
            StunMessageReader.TryParse(response, out var msg);
            if (msg.Class == StunClass.SuccessResponse)
            {
                return response;
            }

            msg.TryGetErrorCode(out var code, out var reason);
            if (code is StunErrorCode.Unauthenticated or StunErrorCode.StaleNonce && attempt < MaxNonceRetries &&
                msg.TryGet(StunAttributeType.Nonce, out var nonce))
            {
                _nonce = nonce.ToArray();
                continue;
            }

            throw new RendezvousException(
                $"the rendezvous service refused {RendezvousMethods.Name(msg.Method)}: {code} " +
                Encoding.UTF8.GetString(reason), code);
        }
    }

    /// <summary>Sends a request and retransmits it until a response comes (its bytes) or the transaction times out
    /// (null).</summary>
    private async Task<byte[]?> TransactAsync(StunTransactionId id, ReadOnlyMemory<byte> request,
        CancellationToken cancellationToken)
    {
        // Completed inline by the receive path or the timer (the lab's rule: no asynchronous continuations).
        var done = new TaskCompletionSource<byte[]?>();
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_transactions.TryAdd(id, request, Server, Now, _policy, done))
            {
                throw new RendezvousException("too many rendezvous requests in flight", 0);
            }
        }

        Rearm();
        await SendAsync(request);
        using var registration = cancellationToken.Register(() =>
        {
            lock (_gate)
            {
                _transactions.TryRemove(id, out _);
            }

            done.TrySetCanceled(cancellationToken);
        });
        return await done.Task;
    }

    private void OnTimer()
    {
        _due.Clear();
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _transactions.Poll(Now, _due);
        }

        foreach (var due in _due)
        {
            if (due.Kind == StunTransactionDueKind.Retransmit)
            {
                _ = SendAsync(due.Request);
            }
            else
            {
                ((TaskCompletionSource<byte[]?>)due.Owner!).TrySetResult(null);
            }
        }

        Rearm();
    }

    private void Rearm()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            var next = _transactions.NextDeadline;
            _timer.Change(next == TimeSpan.MaxValue ? Timeout.InfiniteTimeSpan : Max(next - Now, TimeSpan.Zero),
                Timeout.InfiniteTimeSpan);
        }
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    private void Send(byte[] datagram) => _ = SendAsync(datagram);

    private async Task SendAsync(ReadOnlyMemory<byte> datagram)
    {
        try
        {
            await _socket.SendToAsync(datagram, Server, CancellationToken.None);
        }
        catch (ObjectDisposedException)
        {
        }
#pragma warning disable CA1031 // A send the OS refuses is a lost datagram: retransmission covers it.
        catch (Exception e)
#pragma warning restore CA1031
        {
            LogSendFailed(_logger, e.Message);
        }
    }

    /// <summary>Stops keeping the registration alive, tells the service to drop it (one try, not waited for), and
    /// fails whatever still waits. The socket stays open: it belongs to the caller.</summary>
    public async ValueTask DisposeAsync()
    {
        List<StunTransactionDue> pending = [];
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _transactions.Clear(pending);
        }

        if (ReflexiveEndPoint is not null && _nonce.Length > 0)
        {
            var buffer = new byte[RendezvousLimits.MaxMessageLength + 128];
            var n = RendezvousRequests.Register(buffer, StunTransactionId.NewRandom(), _identity, _candidates,
                NextTimestamp(), 0, _nonce);
            await SendAsync(buffer.AsMemory(0, n));
        }

        // Cancel, not CancelAsync: the callbacks must run here, on the caller's thread (the lab's loop).
        _stop.Cancel();
        await _timer.DisposeAsync();
        foreach (var p in pending)
        {
            ((TaskCompletionSource<byte[]?>)p.Owner!).TrySetResult(null);
        }

        List<PendingConnection> connections;
        lock (_gate)
        {
            connections = [.. _connections.Values];
            _connections.Clear();
        }

        foreach (var c in connections)
        {
            c.Cancel();
        }

        await _keepAlive;
        await _receive;
        _stop.Dispose();
    }

    /// <summary>A connection attempt this node takes part in, by connection id.</summary>
    private sealed class PendingConnection(NodeId peer, bool initiator)
    {
        public NodeId Peer { get; } = peer;

        public bool Initiator { get; } = initiator;

        public TaskCompletionSource<RendezvousAnswer> Answer { get; } = new();

        public TaskCompletionSource<RendezvousStart> Start { get; } = new();

        public void Fail(Exception e)
        {
            Answer.TrySetException(e);
            Start.TrySetException(e);
        }

        public void Cancel()
        {
            Answer.TrySetCanceled();
            Start.TrySetCanceled();
        }
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "rendezvous receive failed: {Reason}")]
    private static partial void LogReceiveFailed(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Debug, Message = "rendezvous send failed: {Reason}")]
    private static partial void LogSendFailed(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "rendezvous keep-alive failed: {Reason}")]
    private static partial void LogKeepAliveFailed(ILogger logger, string reason);
}
