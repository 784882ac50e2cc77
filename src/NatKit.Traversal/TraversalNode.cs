using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using NatKit.Net;
using NatKit.Stun;
using NatKit.Stun.Client;
using NatKit.Stun.Transactions;
using NatKit.Turn.Client;
using NatKit.Traversal.HardNat;
using NatKit.Traversal.Ice;
using NatKit.Traversal.Identity;
using NatKit.Traversal.Rendezvous;

namespace NatKit.Traversal;

/// <summary>
/// One peer-to-peer node on one UDP socket: it profiles its NAT against STUN servers, registers its node id with the
/// rendezvous, and connects to peers (or accepts them) by exchanging ICE sessions through the rendezvous and
/// running connectivity checks at the moment the rendezvous names, with port prediction or birthday probing when
/// the two NATs' profiles call for it, and a TURN relay when nothing direct works (see docs/traversal.md).
/// Everything the node and its checks do runs on the network it is given, so the same code runs on real sockets and
/// in the in-memory lab.
/// </summary>
public sealed partial class TraversalNode : IAsyncDisposable
{
    /// <summary>The main socket's index in every connection's ICE transport.</summary>
    private const int MainSocket = 0;

    /// <summary>The relay's index in every connection's ICE transport (when the node has one).</summary>
    private const int RelaySocket = 1;

    private Task _relayPump = Task.CompletedTask;
    private IAsyncDisposable? _portLease;

    private readonly INetwork _network;
    private readonly TraversalOptions _options;
    private readonly NodeIdentity _identity;
    private readonly ILogger _logger;
    private readonly DatagramMultiplexer _mux;
    private readonly bool _ownsMux;
    private readonly Receiver _rendezvousReceiver;
    private readonly Receiver _deliverReceiver;
    private readonly DatagramSubSocket _send;
    private readonly StunTransactions _transactions;
    private readonly RendezvousClient _rendezvous;
    private readonly Random _random;
    private readonly Lock _gate = new();
    /// <summary>The connections in progress or up: replaced whole under <see cref="_gate"/> (rare), read without a
    /// lock or a copy by the receive path (every datagram of the shared socket).</summary>
    private volatile Attempt[] _attempts = [];
    private readonly Channel<PeerConnection> _accepted = Channel.CreateUnbounded<PeerConnection>(
        new UnboundedChannelOptions { AllowSynchronousContinuations = true });
    private readonly CancellationTokenSource _stop = new();
    private bool _disposed;

    private TraversalNode(INetwork network, DatagramMultiplexer mux, bool ownsMux, NodeIdentity identity,
        TraversalOptions options, ILogger logger)
    {
        _network = network;
        _identity = identity;
        _options = options;
        _logger = logger;
        _random = options.Random ?? Random.Shared;
        _mux = mux;
        _ownsMux = ownsMux;
        _transactions = new StunTransactions(_mux, network.TimeProvider);
        _send = _mux.CreateSocket(static (_, _) => false, DatagramClaim.ByContent, queueCapacity: 1);
        _rendezvous = new RendezvousClient(_send, options.Rendezvous, identity, network.TimeProvider,
            options.RendezvousClient, logger);
        _rendezvousReceiver = new Receiver((d, s) => _rendezvous.TryReceive(d, s));
        _deliverReceiver = new Receiver((d, s) => Deliver(d, s, MainSocket), Drained);
        _mux.AddReceiver(_rendezvousReceiver, DatagramClaim.ByTransaction);
        _mux.AddReceiver(_deliverReceiver, DatagramClaim.ByContent);
        _rendezvous.OfferReceived += OnOffer;
    }

    /// <summary>This node's id (from its public key).</summary>
    public NodeId Id => _identity.Id;

    /// <summary>The shared socket's local endpoint.</summary>
    public IPEndPoint LocalEndPoint => _mux.LocalEndPoint;

    /// <summary>Where the first STUN server saw this node (its server-reflexive endpoint), or null.</summary>
    public IPEndPoint? PublicEndPoint { get; private set; }

    /// <summary>The external endpoint a port mapping protocol got for the node's socket (see
    /// <see cref="TraversalOptions.PortMap"/>), or null.</summary>
    public IPEndPoint? PortMappedEndPoint { get; private set; }

    /// <summary>The node's TURN allocation (on its one socket), or null with no relay.</summary>
    public TurnClient? Relay { get; private set; }

    /// <summary>What the node learned about its NAT when it started.</summary>
    public NatProfile Profile { get; private set; } = NatProfile.Unknown;

    public TraversalOptions Options => _options;

    /// <summary>
    /// Binds <paramref name="bind"/> on <paramref name="network"/>, profiles the NAT, and registers with the
    /// rendezvous; the node then answers offers (<see cref="AcceptAsync"/>) and connects (<see cref="ConnectAsync"/>).
    /// </summary>
    /// <exception cref="RendezvousException">The rendezvous refused or did not answer.</exception>
    public static async Task<TraversalNode> StartAsync(INetwork network, IPEndPoint bind, NodeIdentity identity,
        TraversalOptions options, ILogger? logger = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(network);
        ArgumentNullException.ThrowIfNull(bind);
        ArgumentNullException.ThrowIfNull(identity);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var socket = await network.BindUdpAsync(bind, cancellationToken);
        return await StartAsync(new TraversalNode(network, new DatagramMultiplexer(socket), ownsMux: true, identity,
            options, logger ?? NullLogger.Instance), cancellationToken);
    }

    /// <summary>
    /// As <see cref="StartAsync(INetwork, IPEndPoint, NodeIdentity, TraversalOptions, ILogger?, CancellationToken)"/>
    /// on a socket another protocol owns already (a uTP server's, say): the node registers its receivers on
    /// <paramref name="shared"/>, ahead of any receiver of the same kind added after it, and disposing the node only
    /// removes them; the multiplexer and its socket stay the caller's.
    /// </summary>
    /// <exception cref="RendezvousException">The rendezvous refused or did not answer.</exception>
    public static Task<TraversalNode> StartAsync(INetwork network, DatagramMultiplexer shared, NodeIdentity identity,
        TraversalOptions options, ILogger? logger = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(network);
        ArgumentNullException.ThrowIfNull(shared);
        ArgumentNullException.ThrowIfNull(identity);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        return StartAsync(new TraversalNode(network, shared, ownsMux: false, identity, options,
            logger ?? NullLogger.Instance), cancellationToken);
    }

    private static async Task<TraversalNode> StartAsync(TraversalNode node, CancellationToken cancellationToken)
    {
        try
        {
            await node.MapPortAsync(cancellationToken); // first: STUN then sees the mapped endpoint
            await node.ProfileAsync(cancellationToken);
            await node.AllocateRelayAsync(cancellationToken);
            await node._rendezvous.RegisterAsync(node.Registration(), cancellationToken);
            return node;
        }
        catch
        {
            await node.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Connects to <paramref name="peer"/>: looks it up, plans the hard-NAT method from both NAT profiles, sends the
    /// offer, and runs the checks from the moment the rendezvous names until a pair is selected.
    /// </summary>
    /// <exception cref="TraversalException">No path within <see cref="TraversalOptions.ConnectTimeout"/>, or every
    /// pair failed.</exception>
    /// <exception cref="RendezvousException">The rendezvous does not know the peer, or the peer did not answer.</exception>
    public async Task<PeerConnection> ConnectAsync(NodeId peer, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var began = _network.TimeProvider.GetTimestamp();
        var found = await _rendezvous.LookupAsync(peer, cancellationToken)
                    ?? throw new RendezvousException($"the rendezvous does not know {peer}", 404);
        var remoteProfile = NatProfile.Unknown;
        foreach (var c in found.Candidates)
        {
            if (c.StartsWith("nat:", StringComparison.Ordinal) && NatProfile.TryParse(c[4..], out var p))
            {
                remoteProfile = p;
            }
        }

        // Signaling gets a second try when the first gets no answer in time (a lost exchange the rendezvous'
        // retransmissions did not cover): the peer gave up on the first offer by then and takes the new one.
        for (var round = 0; ; round++)
        {
            var attempt = await CreateAttemptAsync(peer, initiator: true, remoteProfile, began, cancellationToken);
            try
            {
                var connection = await _rendezvous.ConnectAsync(peer, attempt.LocalSession.ToString(), cancellationToken);
                if (!TraversalSession.TryParse(connection.Answer.Session, out var remote, out var error))
                {
                    throw new TraversalException($"{peer} answered with a bad session: {error}");
                }

                return await attempt.RunAsync(remote, connection.Start, cancellationToken);
            }
            catch (RendezvousException e) when (e.Code == 0 && round == 0 && !cancellationToken.IsCancellationRequested)
            {
                LogSignalingRetry(_logger, peer, e.Message);
                await attempt.DisposeAsync();
            }
            catch
            {
                await attempt.DisposeAsync();
                throw;
            }
        }
    }

    /// <summary>The next peer that connected to this node.</summary>
    public async Task<PeerConnection> AcceptAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        try
        {
            return await _accepted.Reader.ReadAsync(cancellationToken);
        }
        catch (ChannelClosedException)
        {
            throw new ObjectDisposedException(nameof(TraversalNode));
        }
    }

    public async ValueTask DisposeAsync()
    {
        Attempt[] attempts;
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            attempts = _attempts;
            _attempts = [];
        }

        _accepted.Writer.TryComplete();
        _stop.Cancel(); // synchronously, on the caller's loop (CancelAsync would run the callbacks on the thread pool, outside a lab's)
        foreach (var a in attempts)
        {
            await a.DisposeAsync();
        }

        await _rendezvous.DisposeAsync();
        if (Relay is not null)
        {
            await Relay.DisposeAsync();
            await _relayPump;
        }

        if (_portLease is not null)
        {
            await _portLease.DisposeAsync(); // the mapping is deleted at the NAT
        }

        _transactions.Dispose();
        if (_ownsMux)
        {
            await _mux.DisposeAsync();
        }
        else
        {
            _mux.RemoveReceiver(_rendezvousReceiver);
            _mux.RemoveReceiver(_deliverReceiver);
            await _send.DisposeAsync();
        }

        _stop.Dispose();
    }

    // -----------------------------------------------------------------------------------------------------------
    // Start: profile and register

    private static IPEndPoint[] StunServers(TraversalOptions options) =>
        options.StunServers.Count > 0 ? [.. options.StunServers] : [options.Rendezvous];

    /// <summary>Asks the NAT for a mapping of the shared socket's port (NAT-PMP, PCP, UPnP), when a way to ask is
    /// configured; a refusal or no answer is logged and leaves the node without one.</summary>
    private async Task MapPortAsync(CancellationToken cancellationToken)
    {
        if (_options.PortMap is not { } map)
        {
            return;
        }

        try
        {
            if (await map(LocalEndPoint.Port, cancellationToken) is { } mapped)
            {
                PortMappedEndPoint = mapped.External;
                _portLease = mapped.Lease;
            }
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            LogPortMapFailed(_logger, e.Message);
        }
    }

    private async Task ProfileAsync(CancellationToken cancellationToken)
    {
        var client = new StunClient(_network);
        var observations = new List<MappingObservation>();
        foreach (var server in StunServers(_options))
        {
            var response = await client.BindingAsync(_transactions, server, cancellationToken: cancellationToken);
            if (response?.MappedAddress is { } mapped)
            {
                observations.Add(new MappingObservation(server, mapped));
            }
        }

        Profile = NatProfiler.Infer(LocalEndPoint, observations, _network.LocalAddresses);
        PublicEndPoint = observations.Count > 0 ? observations[0].Mapped : null;
        LogProfiled(_logger, Id, Profile, PublicEndPoint);
    }

    /// <summary>One allocation on the TURN server from the shared socket (a TURN server tells allocations apart by
    /// the client's address and port, so every connection of the node shares it); none, logged, when the server
    /// refuses or does not answer: connections then try direct paths only.</summary>
    private async Task AllocateRelayAsync(CancellationToken cancellationToken)
    {
        if (_options.Turn is not { } turn)
        {
            return;
        }

        try
        {
            Relay = await TurnClient.AllocateAsync(_transactions,
                new TurnClientOptions(turn.Server, turn.Username, turn.Password), cancellationToken);
            _relayPump = PumpRelayAsync(Relay.Socket);
        }
        catch (Exception e) when (e is TurnException or TimeoutException)
        {
            LogRelayFailed(_logger, turn.Server, e.Message);
        }
    }

    /// <summary>What peers send through the relay goes to the connection it is for (relay socket index 1), pushed
    /// inline from the shared socket's loop that unwrapped it (no queue, no second loop). No drain hook of its own:
    /// the relay's datagrams arrive on the shared socket, whose drain already reaches every connection.</summary>
    private Task PumpRelayAsync(IDatagramSocket relay) =>
        ((IPushDatagramSocket)relay).PushToAsync(new Receiver((d, s) => Deliver(d, s, RelaySocket)), _stop.Token);

    private List<string> Registration()
    {
        var lines = new List<string> { "nat:" + Profile };
        if (PublicEndPoint is { } p)
        {
            lines.Add($"srflx:{p}");
        }

        return lines;
    }

    // -----------------------------------------------------------------------------------------------------------
    // Accept

    private void OnOffer(RendezvousOffer offer)
    {
        _ = AcceptOfferAsync(offer);
    }

    private async Task AcceptOfferAsync(RendezvousOffer offer)
    {
        var began = _network.TimeProvider.GetTimestamp();
        if (!TraversalSession.TryParse(offer.Session, out var remote, out var error))
        {
            LogBadSession(_logger, offer.From, error);
            return;
        }

        Attempt? attempt = null;
        try
        {
            attempt = await CreateAttemptAsync(offer.From, initiator: false, remote.Nat, began, _stop.Token)
                ;
            var start = await offer.AnswerAsync(attempt.LocalSession.ToString(), _stop.Token);
            var connection = await attempt.RunAsync(remote, start, _stop.Token);
            if (!_accepted.Writer.TryWrite(connection))
            {
                await connection.DisposeAsync();
            }
        }
#pragma warning disable CA1031 // An offer that fails must not take the node down; it is logged.
        catch (Exception e)
#pragma warning restore CA1031
        {
            LogAcceptFailed(_logger, offer.From, e.Message);
            if (attempt is not null)
            {
                await attempt.DisposeAsync();
            }
        }
    }

    // -----------------------------------------------------------------------------------------------------------
    // Routing the shared socket's datagrams to connections

    private bool Deliver(ReadOnlySpan<byte> datagram, IPEndPoint source, int socket)
    {
        var attempts = _attempts;
        if (attempts.Length == 0)
        {
            return false;
        }

        // A check names the agent it is for in its USERNAME (ours first); everything else goes to whoever takes it.
        if (IceMessages.TryGetRequestUfrag(datagram, out var ufrag))
        {
            foreach (var a in attempts)
            {
                if (a.LocalSession.Credentials.Ufrag == ufrag)
                {
                    return a.Transport.Deliver(datagram, source, socket);
                }
            }

            return false;
        }

        foreach (var a in attempts)
        {
            if (a.Transport.Deliver(datagram, source, socket))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>A socket has nothing more queued: each connection's data path flushes what it batched (uTP's ACKs).</summary>
    private void Drained()
    {
        foreach (var a in _attempts)
        {
            a.Transport.OnDrained();
        }
    }

    private void Remove(Attempt attempt)
    {
        lock (_gate)
        {
            _attempts = Array.FindAll(_attempts, a => !ReferenceEquals(a, attempt));
        }
    }

    private sealed class Receiver(DatagramMatch take, Action? drained = null) : IDatagramReceiver
    {
        public bool TryReceive(ReadOnlySpan<byte> datagram, IPEndPoint source) => take(datagram, source);

        public void OnDrained() => drained?.Invoke();
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "node {Id}: NAT {Profile}, public endpoint {PublicEndPoint}")]
    private static partial void LogProfiled(ILogger logger, NodeId id, NatProfile profile, IPEndPoint? publicEndPoint);

    [LoggerMessage(Level = LogLevel.Information, Message = "offer from {Peer} refused: {Error}")]
    private static partial void LogBadSession(ILogger logger, NodeId peer, string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "accepting {Peer} failed: {Error}")]
    private static partial void LogAcceptFailed(ILogger logger, NodeId peer, string error);

    [LoggerMessage(Level = LogLevel.Debug, Message = "{Peer}: {Role} plan {Plan}")]
    private static partial void LogPlan(ILogger logger, NodeId peer, string role, ConnectPlan plan);

    [LoggerMessage(Level = LogLevel.Debug, Message = "{Peer}: primed {Count} endpoints in {Milliseconds:0.#} ms")]
    private static partial void LogPrimed(ILogger logger, NodeId peer, int count, double milliseconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "{Peer}: signaling again after {Error}")]
    private static partial void LogSignalingRetry(ILogger logger, NodeId peer, string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "no port mapping: {Error}")]
    private static partial void LogPortMapFailed(ILogger logger, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "no relay from {Server}: {Error}")]
    private static partial void LogRelayFailed(ILogger logger, IPEndPoint server, string error);

    [LoggerMessage(Level = LogLevel.Information, Message = "{Connection}")]
    private static partial void LogConnected(ILogger logger, PeerConnection connection);
}
