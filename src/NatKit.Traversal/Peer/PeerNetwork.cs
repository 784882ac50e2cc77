using System.Net;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging;
using NatKit.Net;
using NatKit.Traversal.Ice;
using NatKit.Traversal.Identity;
using NatKit.Traversal.Rendezvous;
using NatKit.Turn.Client;
using NatKit.Utp;

namespace NatKit.Traversal.Peer;

/// <summary>What a <see cref="PeerNetwork"/> holds now: the node, its endpoints, links and pipes.</summary>
public sealed record PeerNetworkStatus(NodeId Id, string? Name, IPEndPoint LocalEndPoint, IPEndPoint? PublicEndPoint,
    string Nat, IPEndPoint? Relay, IReadOnlyList<PeerLinkInfo> Links, IReadOnlyList<PipeInfo> Pipes,
    IReadOnlyList<PortForward> Forwards, IReadOnlyList<ExposedService> Exposed);

/// <summary>
/// The peer network module (docs/peer.md): one UDP socket carries a uTP server and the NAT traversal service, and
/// every uTP connection between nodes is a TLS 1.3 session between pinned node ids that carries one TCP socket pipe.
/// <see cref="StartAsync"/> binds the uTP server on <see cref="PeerNetworkOptions.Listen"/>, then starts the
/// traversal (STUN profile, TURN allocation, rendezvous registration) on that same socket, then the forwarded
/// ports' listeners. Peers that connect through the traversal get a uTP endpoint over the path found (direct or
/// relayed); each uTP connection that arrives on it, or on the server itself, becomes a pipe to an exposed service,
/// recorded in <see cref="Pipes"/>. <see cref="StopAsync"/> undoes all of it and waits for every task it started.
/// </summary>
public sealed partial class PeerNetwork : IAsyncDisposable
{
    private enum State
    {
        Created,
        Running,
        Stopped,
    }

    private readonly INetwork _network;
    private readonly PeerNetworkHost _host;
    private readonly PeerNetworkOptions _options;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();
    private readonly Dictionary<long, SocketPipe> _pipes = [];
    private readonly List<PeerLink> _links = [];
    private readonly Dictionary<NodeId, Task<PeerLink>> _dialing = [];
    private readonly HashSet<Task> _tasks = [];
    private readonly List<ForwardPort> _forwardPorts = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly PeerNetworkMetrics _metrics;
    private readonly long[] _closedBytes = new long[2 * (int)(PathKind.Relay + 1)];
    private IReadOnlyList<ExposedService> _expose;
    private TaskCompletionSource? _drained;
    private DatagramMultiplexer? _mux;
    private UtpSocket? _server;
    private TraversalNode? _traversal;
    private NodeIdentity? _identity;
    private X509Certificate2? _certificate;
    private long _nextPipe;
    private State _state;

    /// <summary>The module, not started: nothing is bound until <see cref="StartAsync"/>.</summary>
    public PeerNetwork(INetwork network, PeerNetworkHost host, PeerNetworkOptions options)
    {
        ArgumentNullException.ThrowIfNull(network);
        ArgumentNullException.ThrowIfNull(host);
        ArgumentNullException.ThrowIfNull(options);
        _network = network;
        _host = host;
        _options = options.Validate();
        _expose = _options.Expose;
        _logger = host.Logger;
        _metrics = new PeerNetworkMetrics(() => Pipes, () => Links, ClosedBytes);
    }

    private TimeProvider Time => _network.TimeProvider;

    /// <summary>This node's id (once started).</summary>
    public NodeId Id => _identity?.Id ?? default;

    /// <summary>The UDP endpoint the uTP server and the traversal share (once started).</summary>
    public IPEndPoint? LocalEndPoint => _mux?.LocalEndPoint;

    /// <summary>The traversal service on the shared socket (once started).</summary>
    public TraversalNode? Traversal => _traversal;

    /// <summary>The forwarded ports' local endpoints, in <see cref="PeerNetworkOptions.Forward"/>'s order (with
    /// the port the system chose for port 0).</summary>
    public IReadOnlyList<PortForward> Forwards
    {
        get
        {
            lock (_gate)
            {
                return _forwardPorts.ConvertAll(p => p.Bound!);
            }
        }
    }

    /// <summary>The pipe table now.</summary>
    public IReadOnlyList<PipeInfo> Pipes
    {
        get
        {
            lock (_gate)
            {
                var rows = new List<PipeInfo>(_pipes.Count);
                foreach (var p in _pipes.Values)
                {
                    rows.Add(p.Snapshot());
                }

                rows.Sort((a, b) => a.Id.CompareTo(b.Id));
                return rows;
            }
        }
    }

    /// <summary>The paths to peers now.</summary>
    public IReadOnlyList<PeerLinkInfo> Links
    {
        get
        {
            lock (_gate)
            {
                return _links.ConvertAll(l => l.Snapshot());
            }
        }
    }

    /// <summary>A pipe was added to the table (raised on the pipe's task: keep handlers short).</summary>
    public event Action<PipeInfo>? PipeOpened;

    /// <summary>A pipe ended and left the table, with its final counts.</summary>
    public event Action<PipeInfo>? PipeClosed;

    /// <summary>Background tasks still running (accept loops, dials, pipes): zero once stopped.</summary>
    public int RunningTasks
    {
        get
        {
            lock (_gate)
            {
                return _tasks.Count;
            }
        }
    }

    /// <summary>Where the traversal service saw this node from (its server-reflexive endpoint), or null before
    /// start or when no STUN server answered.</summary>
    public IPEndPoint? GetPublicEndPoint() => _traversal?.PublicEndPoint;

    public PeerNetworkStatus Status()
    {
        var node = _traversal;
        return new PeerNetworkStatus(Id, _host.GetSelf().Name, LocalEndPoint ?? _options.Listen,
            GetPublicEndPoint(), node?.Profile.ToString() ?? "unknown", node?.Relay?.RelayedEndPoint, Links, Pipes,
            Forwards, Exposed);
    }

    /// <summary>
    /// Binds the uTP server on <see cref="PeerNetworkOptions.Listen"/>; once it listens, starts the traversal service
    /// on the socket the server uses, then the forwarded ports' listeners. A failure undoes what was done.
    /// </summary>
    /// <exception cref="InvalidOperationException">Started before.</exception>
    /// <exception cref="NetworkException">The UDP endpoint or a forwarded port is in use.</exception>
    /// <exception cref="RendezvousException">The rendezvous refused or did not answer.</exception>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            if (_state != State.Created)
            {
                throw new InvalidOperationException("the peer network was started before; make a new one");
            }

            _state = State.Running;
        }

        try
        {
            _identity = _host.GetPrivateKey();
            _certificate = _identity.CreateCertificate(Time);
            var socket = await _network.BindUdpAsync(_options.Listen, cancellationToken);
            if (_options.SocketBufferSize > 0)
            {
                (socket as ISocketBuffers)?.TrySetBufferSizes(_options.SocketBufferSize, _options.SocketBufferSize);
            }

            _mux = new DatagramMultiplexer(socket);

            // The uTP server takes what no protocol on the socket claims (the traversal's checks, its TURN traffic
            // and the paths it selects are claimed first), so a peer that knows the address can dial it straight.
            _server = new UtpSocket(_mux.CreateUnclaimedSocket(), Time, _options.Utp);
            _server.Listen();
            Track(AcceptStreamsAsync(_server, link: null));
            LogListening(_logger, _identity.Id, _mux.LocalEndPoint);

            _traversal = await TraversalNode.StartAsync(_network, _mux, _identity, _options.Traversal, _logger,
                cancellationToken);
            Track(AcceptPeersAsync(_traversal));

            foreach (var f in _options.Forward)
            {
                AddForwardPort(await OpenForwardPortAsync(f, cancellationToken));
            }
        }
        catch
        {
            await StopCoreAsync();
            throw;
        }
    }

    /// <summary>
    /// Stops the traversal service and the uTP server, closes every pipe and link, clears the pipe table, and
    /// returns once every task the module started has ended and its socket and listeners are closed.
    /// </summary>
    /// <exception cref="InvalidOperationException">Not started.</exception>
    public Task StopAsync()
    {
        lock (_gate)
        {
            if (_state == State.Created)
            {
                throw new InvalidOperationException("the peer network was not started");
            }
        }

        return StopCoreAsync();
    }

    public async ValueTask DisposeAsync()
    {
        bool started;
        lock (_gate)
        {
            started = _state != State.Created;
            _state = State.Stopped;
        }

        if (started)
        {
            await StopCoreAsync();
        }

        _metrics.Dispose();
        _reconfiguring.Dispose();
        _stop.Dispose();
    }

    private async Task StopCoreAsync()
    {
        ForwardPort[] ports;
        lock (_gate)
        {
            _state = State.Stopped;
            ports = [.. _forwardPorts];
        }

        if (!_stop.IsCancellationRequested)
        {
            // Synchronously, on the caller's loop: CancelAsync runs the callbacks on the thread pool, and in the lab
            // the loop moves virtual time on (keepalives, consent) instead of waiting for them.
            _stop.Cancel();
        }

        foreach (var p in ports)
        {
            await p.CloseAsync();
        }

        if (_traversal is { } traversal)
        {
            await traversal.DisposeAsync();
        }

        if (_server is { } server)
        {
            await server.DisposeAsync();
        }

        // Links and pipes made while this ran see the state and close themselves.
        PeerLink[] links;
        SocketPipe[] pipes;
        lock (_gate)
        {
            links = [.. _links];
            pipes = [.. _pipes.Values];
        }

        foreach (var p in pipes)
        {
            await p.CloseAsync();
        }

        foreach (var l in links)
        {
            await l.DisposeAsync();
        }

        while (true)
        {
            Task[] running;
            lock (_gate)
            {
                running = [.. _tasks];
            }

            if (running.Length == 0)
            {
                break;
            }

            await Task.WhenAll(running);
        }

        lock (_gate)
        {
            _pipes.Clear();
            _links.Clear();
            _forwardPorts.Clear();
        }

        if (_mux is { } mux)
        {
            await mux.DisposeAsync();
        }

        _certificate?.Dispose();
    }

    /// <summary>Runs <paramref name="work"/> as one of the module's tasks (<see cref="StopAsync"/> waits for it);
    /// it must catch its own errors.</summary>
    private void Track(Task work)
    {
        lock (_gate)
        {
            if (work.IsCompleted)
            {
                return;
            }

            _tasks.Add(work);
        }

        _ = work.ContinueWith(static (t, s) =>
        {
            var self = (PeerNetwork)s!;
            lock (self._gate)
            {
                self._tasks.Remove(t);
            }
        }, this, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    private bool Stopped
    {
        get
        {
            lock (_gate)
            {
                return _state == State.Stopped;
            }
        }
    }

    /// <summary>True for a node the module lets in (every node unless <see cref="PeerNetworkOptions.KnownPeersOnly"/>).</summary>
    private bool Admits(NodeId peer) => !_options.KnownPeersOnly || _host.GetPeer(peer) is not null;

    private void Seen(PeerConnection connection)
    {
        var known = _host.GetPeer(connection.Peer) ?? new PeerInfo(connection.Peer);
        _host.UpdatePeer(known with
        {
            EndPoint = connection.RemoteEndPoint,
            Path = connection.Path,
            LastSeen = Time.GetUtcNow(),
        });
    }

    // -----------------------------------------------------------------------------------------------------------
    // Links: a uTP endpoint over each peer connection the traversal gives

    private async Task AcceptPeersAsync(TraversalNode traversal)
    {
        while (true)
        {
            PeerConnection connection;
            try
            {
                connection = await traversal.AcceptAsync(_stop.Token);
            }
            catch (Exception e) when (e is ObjectDisposedException or OperationCanceledException)
            {
                return;
            }

            if (!Admits(connection.Peer))
            {
                LogRefusedPeer(_logger, connection.Peer);
                await connection.DisposeAsync();
                continue;
            }

            await AddLinkAsync(connection);
        }
    }

    private async Task<PeerLink> AddLinkAsync(PeerConnection connection)
    {
        await BindRelayChannelAsync(connection);

        // Through a relay the TURN server's payload cap (4096 bytes by default) bounds a datagram: a relay on this
        // host gets that much (uTP applies it only when the peer's end is loopback too), any other relay 1400 bytes.
        var utpOptions = connection.Path != PathKind.Relay ? _options.Utp : _options.Utp with
        {
            LoopbackMaxDatagramSize = _options.Traversal.Turn is { } turn && IPAddress.IsLoopback(turn.Server.Address)
                ? _options.RelayLoopbackMaxDatagramSize
                : 0,
        };
        var link = new PeerLink(connection, new UtpSocket(connection.Socket, Time, utpOptions, ownsSocket: false));
        link.Utp.Listen();
        bool stopped;
        lock (_gate)
        {
            stopped = _state == State.Stopped;
            if (!stopped)
            {
                _links.Add(link);
            }
        }

        if (stopped)
        {
            await link.DisposeAsync();
            throw new ObjectDisposedException(nameof(PeerNetwork));
        }

        Seen(connection);
        _metrics.LinkOpened(connection.Path);
        LogLink(_logger, connection);
        Track(AcceptStreamsAsync(link.Utp, link));
        return link;
    }

    /// <summary>A path that leaves through this node's own TURN allocation goes as ChannelData (4 bytes a datagram,
    /// the server's fast path, both ways) rather than Send and Data indications (36 bytes, a STUN message parsed and
    /// written per datagram). The client refreshes the channel with the allocation; a failure leaves the indications.</summary>
    private async Task BindRelayChannelAsync(PeerConnection connection)
    {
        if (connection.SelectedPair.Local.Type != IceCandidateType.Relayed || _traversal?.Relay is not { } relay)
        {
            return;
        }

        try
        {
            await relay.BindChannelAsync(connection.RemoteEndPoint, _stop.Token);
        }
        catch (Exception e) when (e is TurnException or TimeoutException or InvalidOperationException)
        {
            LogChannelFailed(_logger, connection.Peer, e.Message);
        }
    }

    private async Task RemoveLinkAsync(PeerLink link)
    {
        lock (_gate)
        {
            _links.Remove(link);
        }

        await link.DisposeAsync();
    }

    /// <summary>A live link to <paramref name="peer"/>, or a new one through the caller's
    /// <see cref="PeerNetworkHost.ConnectToPeer"/> (one dial at a time per peer).</summary>
    private async Task<PeerLink> GetLinkAsync(NodeId peer, CancellationToken cancellationToken)
    {
        Task<PeerLink>? dial;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_state != State.Running, this);
            var live = _links.Find(l => l.Peer == peer && !l.IsDisposed);
            if (live is not null)
            {
                return live;
            }

            if (!_dialing.TryGetValue(peer, out dial))
            {
                dial = DialAsync(peer);
                _dialing[peer] = dial;
            }
        }

        Track(dial);
        return await dial.WaitAsync(cancellationToken);
    }

    private async Task<PeerLink> DialAsync(NodeId peer)
    {
        await Task.Yield(); // the caller registers the dial before it can end
        try
        {
            var traversal = _traversal ?? throw new ObjectDisposedException(nameof(PeerNetwork));
            PeerConnection connection;
            try
            {
                connection = await _host.ConnectToPeer(peer, traversal.ConnectAsync, _stop.Token);
            }
            catch (Exception e) when (e is TraversalException or RendezvousException or NetworkException)
            {
                _metrics.Traversal(null);
                throw;
            }

            _metrics.Traversal(connection.Path);
            return await AddLinkAsync(connection);
        }
        finally
        {
            lock (_gate)
            {
                _dialing.Remove(peer);
            }
        }
    }

    // -----------------------------------------------------------------------------------------------------------
    // Incoming pipes: each uTP connection is TLS, a service request, then a pipe to the service

    private async Task AcceptStreamsAsync(UtpSocket utp, PeerLink? link)
    {
        while (true)
        {
            UtpStream stream;
            try
            {
                stream = await utp.AcceptAsync(_stop.Token);
            }
            catch (Exception e) when (e is ObjectDisposedException or OperationCanceledException or NetworkException)
            {
                if (link is not null && !Stopped)
                {
                    await RemoveLinkAsync(link);
                }

                return;
            }

            Track(ServeAsync(stream, link));
        }
    }

    private async Task ServeAsync(UtpStream stream, PeerLink? link)
    {
        var tls = new SslStream(_network.ForForeignAwaiters(stream), leaveInnerStreamOpen: false);
        using var deadline = Deadline();
        NodeId peer = default;
        IStreamConnection? tcp = null;
        try
        {
            // A pipe over a peer's link must come from that peer (the rendezvous verified it); one to the server
            // directly from anyone the module admits. Either way TLS proves the key.
            await tls.AuthenticateAsServerAsync(NodeTls.ServerOptions(_certificate!, id =>
            {
                peer = id;
                return (link is null || id == link.Peer) && Admits(id);
            }), deadline.Token);
            var (service, status) = await PipeRequest.ReadRequestAsync(tls, deadline.Token);
            var exposed = service is null ? null : FindService(service);
            var reason = "ok";
            if (status == PipeStatus.Ok && exposed is null)
            {
                (status, reason) = (PipeStatus.UnknownService, $"no service {service} here");
            }
            else if (status == PipeStatus.Ok && !exposed!.Allows(peer))
            {
                (status, reason) = (PipeStatus.NotAllowed, $"service {service} is not exposed to {peer}");
            }
            else if (status == PipeStatus.Ok && PipeCount >= _options.MaxPipes)
            {
                (status, reason) = (PipeStatus.TooManyPipes, $"{_options.MaxPipes} pipes open");
            }
            else if (status == PipeStatus.Ok && Draining)
            {
                (status, reason) = (PipeStatus.TooManyPipes, "the node is stopping");
            }
            else if (status != PipeStatus.Ok)
            {
                reason = "bad request";
            }

            if (status == PipeStatus.Ok)
            {
                try
                {
                    tcp = await _network.ConnectTcpAsync(exposed!.Target, cancellationToken: deadline.Token);
                }
                catch (NetworkException e)
                {
                    (status, reason) = (PipeStatus.TargetUnreachable, $"service {service}: {e.Message}");
                }
            }

            await PipeRequest.WriteAnswerAsync(tls, status, reason, deadline.Token);
            if (status != PipeStatus.Ok)
            {
                LogPipeRefused(_logger, peer, service ?? "?", reason);
                await tls.DisposeAsync();
                return;
            }

            var path = link?.Connection.Path ?? PathKind.Direct;
            var pipe = AddPipe(peer, PipeKind.Exposed, service!, path, tcp!, tls, stream);
            tcp = null;
            await RunPipeAsync(pipe);
        }
        catch (Exception e) when (e is AuthenticationException or IOException or OperationCanceledException
                                      or ObjectDisposedException or InvalidOperationException)
        {
            LogHandshakeFailed(_logger, link?.Peer.ToString() ?? stream.RemoteEndPoint.ToString(), e.Message);
            await tls.DisposeAsync();
            if (tcp is not null)
            {
                await tcp.DisposeAsync();
            }
        }
    }

    private ExposedService? FindService(string name)
    {
        foreach (var e in Exposed)
        {
            if (e.Name == name)
            {
                return e;
            }
        }

        return null;
    }

    // -----------------------------------------------------------------------------------------------------------
    // Outgoing pipes

    /// <summary>
    /// Opens a TLS stream to <paramref name="service"/> on <paramref name="peer"/>: over the path the traversal finds
    /// (or the live one), or straight to the peer's uTP server at <paramref name="address"/>. The peer must present
    /// the key of <paramref name="peer"/> over TLS 1.3 and accept the request. The caller owns the stream (it is not
    /// a pipe of the table).
    /// </summary>
    /// <exception cref="PeerPipeException">No path, the peer presented another key, refused TLS 1.3 or the request.</exception>
    public async Task<Stream> OpenServiceAsync(NodeId peer, string service, IPEndPoint? address = null,
        CancellationToken cancellationToken = default)
    {
        var (tls, _, _) = await OpenAsync(peer, service, address, cancellationToken);
        return tls;
    }

    private async Task<(SslStream Tls, UtpStream Utp, PathKind Path)> OpenAsync(NodeId peer, string service,
        IPEndPoint? address, CancellationToken cancellationToken)
    {
        using var deadline = Deadline(cancellationToken);
        UtpStream utp;
        PathKind path;
        try
        {
            if (address is not null)
            {
                ObjectDisposedException.ThrowIf(_server is null || Stopped, this);
                utp = await _server.ConnectAsync(address, deadline.Token);
                path = PathKind.Direct;
            }
            else
            {
                (utp, path) = await ConnectOverLinkAsync(peer, cancellationToken, deadline.Token);
            }
        }
        catch (Exception e) when (e is NetworkException or TraversalException or RendezvousException
                                      or OperationCanceledException)
        {
            throw new PeerPipeException($"no uTP connection to {peer}: {e.Message}", e);
        }

        var tls = new SslStream(_network.ForForeignAwaiters(utp), leaveInnerStreamOpen: false);
        try
        {
            await tls.AuthenticateAsClientAsync(NodeTls.ClientOptions(_certificate!, peer), deadline.Token);
            await PipeRequest.WriteRequestAsync(tls, service, deadline.Token);
            var (status, reason) = await PipeRequest.ReadAnswerAsync(tls, deadline.Token);
            if (status != PipeStatus.Ok)
            {
                throw new PeerPipeException(status, $"{peer} refused {service}: {reason}");
            }

            return (tls, utp, path);
        }
        catch (Exception e) when (e is AuthenticationException or IOException or OperationCanceledException)
        {
            await tls.DisposeAsync();
            throw new PeerPipeException(
                $"TLS 1.3 with {peer} failed (another key, an older TLS, or the peer refused us): {e.Message}", e);
        }
        catch
        {
            await tls.DisposeAsync();
            throw;
        }
    }

    /// <summary>A uTP stream over the live link to <paramref name="peer"/>; a link whose uTP connect fails (the
    /// path died) is dropped and dialed again once.</summary>
    private async Task<(UtpStream, PathKind)> ConnectOverLinkAsync(NodeId peer, CancellationToken dialToken,
        CancellationToken connectToken)
    {
        for (var round = 0; ; round++)
        {
            var link = await GetLinkAsync(peer, dialToken);
            try
            {
                var utp = await link.Utp.ConnectAsync(link.Connection.RemoteEndPoint, connectToken);
                return (utp, link.Connection.Path);
            }
            catch (NetworkException) when (round == 0 && !connectToken.IsCancellationRequested)
            {
                await RemoveLinkAsync(link);
            }
        }
    }

    private async Task AcceptForwardsAsync(ForwardPort port)
    {
        while (true)
        {
            IStreamConnection connection;
            try
            {
                connection = await port.Listener.AcceptAsync(_stop.Token);
            }
            catch (Exception e) when (e is ObjectDisposedException or OperationCanceledException or NetworkException)
            {
                return;
            }

            Track(ForwardAsync(port, connection));
        }
    }

    private async Task ForwardAsync(ForwardPort port, IStreamConnection tcp)
    {
        PortForward? forward;
        lock (_gate)
        {
            forward = port.Bound;
        }

        if (forward is null)
        {
            await tcp.DisposeAsync(); // removed by a reconfiguration as this connection arrived
            return;
        }

        SocketPipe pipe;
        try
        {
            var (tls, utp, path) = await OpenAsync(forward.Peer, forward.Service, forward.Address, _stop.Token);
            pipe = AddPipe(forward.Peer, PipeKind.Forward, forward.Service, path, tcp, tls, utp);
        }
        catch (Exception e) when (e is PeerPipeException or ObjectDisposedException)
        {
            LogForwardFailed(_logger, forward.Listen, forward.Peer, e.Message);
            await tcp.DisposeAsync();
            return;
        }

        bool held;
        lock (_gate)
        {
            held = port.Hold(pipe.Id, forward);
        }

        if (!held)
        {
            await pipe.CloseAsync(); // the forward was removed or changed while this pipe was being opened
        }

        await RunPipeAsync(pipe);
        lock (_gate)
        {
            port.Release(pipe.Id);
        }
    }

    // -----------------------------------------------------------------------------------------------------------
    // The pipe table

    private int PipeCount
    {
        get
        {
            lock (_gate)
            {
                return _pipes.Count;
            }
        }
    }

    private SocketPipe AddPipe(NodeId peer, PipeKind kind, string service, PathKind path, IStreamConnection tcp,
        SslStream tls, UtpStream utp)
    {
        var pipe = new SocketPipe(Interlocked.Increment(ref _nextPipe), peer, kind, service, path, tcp, tls, utp,
            Time);
        lock (_gate)
        {
            if (_state == State.Running)
            {
                _pipes.Add(pipe.Id, pipe);
                return pipe;
            }
        }

        _ = pipe.CloseAsync(); // stopping: the pipe ends at once (RunPipeAsync sees it closed)
        return pipe;
    }

    private async Task RunPipeAsync(SocketPipe pipe)
    {
        LogPipeOpened(_logger, pipe.Id, pipe.Kind, pipe.Peer, pipe.Service, pipe.Path);
        var opened = pipe.Snapshot();
        PipeOpened?.Invoke(opened);
        _metrics.PipeOpened(opened);
        await pipe.RunAsync(_options.PipeBufferSize);
        var done = pipe.Snapshot();
        lock (_gate)
        {
            _pipes.Remove(pipe.Id);
            _closedBytes[2 * (int)done.Path] += done.BytesToPeer;
            _closedBytes[(2 * (int)done.Path) + 1] += done.BytesFromPeer;
            if (_drained is { } drained && _pipes.Count == 0)
            {
                drained.TrySetResult();
            }
        }

        _metrics.PipeClosed(done);
        LogPipeClosed(_logger, done.Id, done.BytesToPeer, done.BytesFromPeer, pipe.Transport);
        PipeClosed?.Invoke(done);
    }

    /// <summary>The handshake's deadline on the network's clock, ended early by stop or the caller.</summary>
    private HandshakeDeadline Deadline(CancellationToken cancellationToken = default) =>
        new(_options.HandshakeTimeout, Time, _stop.Token, cancellationToken);

    /// <summary>A token cancelled after a time on a <see cref="TimeProvider"/>, or by either of two tokens; disposing
    /// it releases its timer and registrations.</summary>
    private sealed class HandshakeDeadline : IDisposable
    {
        private readonly CancellationTokenSource _timeout;
        private readonly CancellationTokenSource _linked;

        public HandshakeDeadline(TimeSpan timeout, TimeProvider time, CancellationToken a, CancellationToken b)
        {
            _timeout = new CancellationTokenSource(timeout, time);
            _linked = CancellationTokenSource.CreateLinkedTokenSource(_timeout.Token, a, b);
        }

        public CancellationToken Token => _linked.Token;

        public void Dispose()
        {
            _linked.Dispose();
            _timeout.Dispose();
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "node {Id}: uTP server on {EndPoint}")]
    private static partial void LogListening(ILogger logger, NodeId id, IPEndPoint endPoint);

    [LoggerMessage(Level = LogLevel.Information, Message = "{Peer} is not a known node: refused")]
    private static partial void LogRefusedPeer(ILogger logger, NodeId peer);

    [LoggerMessage(Level = LogLevel.Information, Message = "link {Connection}")]
    private static partial void LogLink(ILogger logger, PeerConnection connection);

    [LoggerMessage(Level = LogLevel.Information, Message = "pipe from {Peer} refused ({Service}): {Reason}")]
    private static partial void LogPipeRefused(ILogger logger, NodeId peer, string service, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "pipe handshake with {Peer} failed: {Error}")]
    private static partial void LogHandshakeFailed(ILogger logger, string peer, string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "forward {Listen} -> {Peer}: {Error}")]
    private static partial void LogForwardFailed(ILogger logger, IPEndPoint listen, NodeId peer, string error);

    [LoggerMessage(Level = LogLevel.Debug, Message = "pipe {Id} open: {Kind} {Peer} {Service} over {Path}")]
    private static partial void LogPipeOpened(ILogger logger, long id, PipeKind kind, NodeId peer, string service,
        PathKind path);

    [LoggerMessage(Level = LogLevel.Debug, Message = "pipe {Id} closed: {ToPeer} bytes to the peer, {FromPeer} back ({Transport})")]
    private static partial void LogPipeClosed(ILogger logger, long id, long toPeer, long fromPeer,
        UtpStatistics transport);

    [LoggerMessage(Level = LogLevel.Information, Message = "{Peer}: no TURN channel for the relayed path ({Error}); Send indications carry it")]
    private static partial void LogChannelFailed(ILogger logger, NodeId peer, string error);
}
