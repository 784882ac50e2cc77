using System.Net;
using System.Net.Sockets;
using NatKit.Net;
using NatKit.Stun;
using NatKit.Stun.Discovery;
using NatKit.Traversal.HardNat;
using NatKit.Traversal.Ice;
using NatKit.Traversal.Identity;
using NatKit.Traversal.Rendezvous;

namespace NatKit.Traversal;

public sealed partial class TraversalNode
{
    /// <summary>How often the predicted target is probed again until a pair is selected (a lost punch, or a peer that
    /// starts a little later, is met by the next one).</summary>
    private static readonly TimeSpan PredictionProbeInterval = TimeSpan.FromMilliseconds(100);

    /// <summary>Probes of the predicted target at most (5 s at <see cref="PredictionProbeInterval"/>).</summary>
    private const int PredictionProbes = 50;

    /// <summary>Copies of the first punch toward a predicted mapping's target.</summary>
    private const int PredictionFirstCopies = 3;

    /// <summary>Rounds of punches from a birthday set's sockets (a second one covers a punch lost before the NAT).</summary>
    private const int BirthdayHardRounds = 2;

    /// <summary>The probe timer's resolution: every tick sends what the budget's rate allows since the last.</summary>
    private static readonly TimeSpan ProbeTick = TimeSpan.FromMilliseconds(10);

    private async Task<Attempt> CreateAttemptAsync(NodeId peer, bool initiator, NatProfile remoteProfile, long began,
        CancellationToken cancellationToken)
    {
        // Relay only: no hard-NAT method, whose sockets and probes would leave from this node's own address.
        var plan = _options.RelayOnly
            ? new ConnectPlan(HardNatRole.None, 0, 0, _options.Budget.PerSecond)
            : ConnectPlan.For(Profile, remoteProfile, _options.Budget);
        LogPlan(_logger, peer, initiator ? "initiator" : "acceptor", plan);
        var agent = new IceAgent(initiator ? IceRole.Controlling : IceRole.Controlled, plan.AgentOptions(_options.Ice),
            IceCredentials.Generate(_options.Random), _options.Random);
        var transport = new IceTransport(agent, _network.TimeProvider, _logger);
        var attempt = new Attempt(this, peer, initiator, plan, transport, began);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _attempts = [.. _attempts, attempt];
        }

        try
        {
            await attempt.PrepareAsync(cancellationToken);
        }
        catch
        {
            await attempt.DisposeAsync();
            throw;
        }

        return attempt;
    }

    /// <summary>One connection attempt: its ICE transport on the shared socket (index 0) and on the sockets its
    /// hard-NAT method opens, its sessions, and the probe schedule.</summary>
    private sealed class Attempt : IAsyncDisposable
    {
        private readonly TraversalNode _node;
        private readonly long _began;
        private readonly List<IDatagramSocket> _hard = [];
        private readonly List<int> _hardIndex = [];
        private readonly TaskCompletionSource<PeerConnection> _done = new();
        private ITimer? _probeTimer;
        private TraversalSession? _remote;
        private IPEndPoint? _target;
        private int[] _birthdayPorts = [];
        private long _probeStarted;
        private int _probesDone;
        private bool _hardPrimed;
        private int _disposed;

        public Attempt(TraversalNode node, NodeId peer, bool initiator, ConnectPlan plan, IceTransport transport,
            long began)
        {
            _node = node;
            Peer = peer;
            Initiator = initiator;
            Plan = plan;
            Transport = transport;
            _began = began;
            LocalSession = null!;
        }

        public NodeId Peer { get; }

        public bool Initiator { get; }

        public ConnectPlan Plan { get; }

        public IceTransport Transport { get; }

        public TraversalSession LocalSession { get; private set; }

        private TimeProvider Time => _node._network.TimeProvider;

        /// <summary>Opens what the plan needs, gathers the local candidates and writes the local session.</summary>
        public async Task PrepareAsync(CancellationToken cancellationToken)
        {
            var main = Transport.AddSocket(_node._send, receive: false);
            var candidates = new List<IceCandidate>();
            var relayOnly = _node._options.RelayOnly;
            foreach (var host in relayOnly ? [] : HostEndPoints(_node.LocalEndPoint))
            {
                var c = IceCandidate.Host(host);
                if (Transport.Update(a => a.AddLocalCandidate(c, main)))
                {
                    candidates.Add(c);
                }
            }

            if (_node.PublicEndPoint is { } pub && candidates.Count > 0 &&
                !candidates.Exists(c => c.EndPoint.Equals(pub)) && !pub.Equals(_node.PortMappedEndPoint))
            {
                var srflx = IceCandidate.ServerReflexive(pub, candidates[0].EndPoint, _node._options.Rendezvous.Address);
                if (Transport.Update(a => a.AddLocalCandidate(srflx, main)))
                {
                    candidates.Add(srflx);
                }
            }

            // The mapping a port mapping protocol made (the STUN answer, when they agree, is this candidate).
            if (_node.PortMappedEndPoint is { } mapped && candidates.Count > 0 &&
                !candidates.Exists(c => c.EndPoint.Equals(mapped)))
            {
                var pm = IceCandidate.ServerReflexive(mapped, candidates[0].EndPoint, null, origin: IceCandidateOrigin.PortMapped);
                if (Transport.Update(a => a.AddLocalCandidate(pm, main)))
                {
                    candidates.Add(pm);
                }
            }

            // Index 1 is the relay's in every transport, so the node's relay pump can hand its datagrams in.
            var relayIndex = -1;
            if (_node.Relay is { } relay)
            {
                relayIndex = Transport.AddSocket(relay.Socket, receive: false);
                var c = IceCandidate.Relayed(relay.RelayedEndPoint, relay.MappedEndPoint,
                    _node._options.Turn!.Server.Address);
                if (Transport.Update(a => a.AddLocalCandidate(c, relayIndex)))
                {
                    candidates.Add(c);
                }
            }

            IPEndPoint? predicted = null;
            var sockets = 0;
            switch (Plan.Role)
            {
                case HardNatRole.Predict:
                    predicted = await PrepareAsyncPredict(cancellationToken);
                    break;
                case HardNatRole.BirthdayHard:
                    await OpenHardSocketsAsync(Plan.Sockets, cancellationToken);
                    sockets = _hard.Count;
                    break;
            }

            // Only the shared socket pairs with the peer's candidates: a hard-NAT socket sends to its one target
            // (any other destination would take a port on its NAT) and answers what comes in.
            Transport.Update(a =>
            {
                a.PairFilter = (_, socket, _) => socket == main || socket == relayIndex;
                return 0;
            });
            Transport.Start();
            LocalSession = new TraversalSession(Transport.Agent.LocalCredentials, _node.Profile,
                candidates.Take(TraversalSession.MaxCandidates).ToList(), predicted, sockets);
        }

        /// <summary>A fresh socket's first mapping (toward the STUN server) says where the NAT's counter stands;
        /// its next mapping, toward the peer, gets the port one step on.</summary>
        private async Task<IPEndPoint?> PrepareAsyncPredict(CancellationToken cancellationToken)
        {
            await OpenHardSocketsAsync(1, cancellationToken);
            var server = StunServers(_node._options)[^1];
            var client = new Stun.Client.StunClient(_node._network);
            var response = await client.BindingAsync(_hard[0], server, cancellationToken: cancellationToken)
                ;
            if (response?.MappedAddress is not { } mapped || _node.Profile.Step == 0)
            {
                return null;
            }

            var profile = _node.Profile with { LastPort = mapped.Port, PublicAddress = mapped.Address };
            var next = PortPredictor.Predict(profile, 1);
            return next.Length == 1 ? new IPEndPoint(mapped.Address, next[0]) : null;
        }

        private async Task OpenHardSocketsAsync(int count, CancellationToken cancellationToken)
        {
            var bindAddress = _node.LocalEndPoint.Address;
            for (var i = 0; i < count; i++)
            {
                var socket = await _node._network.BindUdpAsync(new IPEndPoint(bindAddress, 0), cancellationToken)
                    ;
                _hard.Add(socket);
            }
        }

        /// <summary>Adds the hard sockets to the transport (after a prediction's STUN transaction is done with its
        /// socket: the transport reads them from now on).</summary>
        private void AttachHardSockets()
        {
            foreach (var socket in _hard)
            {
                var index = Transport.AddSocket(socket);
                _hardIndex.Add(index);
                var hosts = HostEndPoints(socket.LocalEndPoint);
                if (hosts.Count > 0)
                {
                    var c = IceCandidate.Host(hosts[0]);
                    Transport.Update(a => a.AddLocalCandidate(c, index));
                }
            }
        }

        /// <summary>At the rendezvous' start moment: the peer's credentials, the punches, then the peer's candidates
        /// (so that a sequential NAT's next port goes to the predicted punch), and the probe schedule.</summary>
        public async Task<PeerConnection> RunAsync(TraversalSession remote, RendezvousStart start,
            CancellationToken cancellationToken)
        {
            _remote = remote;
            _target = remote.Predicted ?? remote.Candidates.FirstOrDefault(c =>
                c.Type == IceCandidateType.ServerReflexive)?.EndPoint;
            var remoteReflexive = remote.Candidates.FirstOrDefault(c => c.Type == IceCandidateType.ServerReflexive)
                ?.EndPoint;
            if (Plan.Role == HardNatRole.BirthdayEasy &&
                (remote.Nat.PublicAddress ?? remoteReflexive?.Address) is { } hardAddress)
            {
                // The ports the hard NAT was seen to hand out say which range its allocator draws from.
                var seen = new HashSet<int>();
                if (remote.Nat.LastPort > 0)
                {
                    seen.Add(remote.Nat.LastPort);
                }

                if (remoteReflexive is not null)
                {
                    seen.Add(remoteReflexive.Port);
                }

                var (first, last) = BirthdayProbing.GuessRange(seen);
                var exclude = seen;
                _birthdayPorts = BirthdayProbing.ProbePorts(_node._random, first, last, Plan.Probes, exclude);
                _target = new IPEndPoint(hardAddress, 0);
            }

            // Both sides wait the lead when either primes, so that the primes leave before any punch or check.
            var primed = await PrimeAsync(remote);
            var peerPrimes = _node._options.PrimeHopLimit != 0 && remote.Nat.Mapping == NatMapping.EndpointIndependent &&
                             !remote.Candidates.Any(c => c.Type == IceCandidateType.ServerReflexive &&
                                                            c.EndPoint.Address.Equals(_node.PublicEndPoint?.Address));
            var lead = primed || peerPrimes ? _node._options.PrimeLead : TimeSpan.Zero;
            var waited = Time.GetElapsedTime(start.ReceivedAt);
            if (start.Delay + lead > waited)
            {
                await Task.Delay(start.Delay + lead - waited, Time, cancellationToken);
            }

            AttachHardSockets();

            Transport.Update(a =>
            {
                a.SetRemoteCredentials(remote.Credentials);
                if (Plan.Role == HardNatRole.Predict && _target is { } t && _hardIndex.Count > 0)
                {
                    // The first datagram to the target makes the predicted mapping, if nothing else takes the port
                    // first: copies, so that a loss before the NAT does not hand the port to the next check. The
                    // peer primed its NAT toward the predicted port before the start (Prime), so they pass it.
                    for (var i = 0; i < PredictionFirstCopies; i++)
                    {
                        a.Probe(_hardIndex[0], t);
                    }
                }

                foreach (var c in remote.Candidates)
                {
                    a.AddRemoteCandidate(c);
                }

                if (remote.Predicted is { } p)
                {
                    a.AddRemoteCandidate(IceCandidate.ServerReflexive(p, p, null, origin: IceCandidateOrigin.PortPrediction));
                }

                return 0;
            });

            _probeStarted = Time.GetTimestamp();
            _probeTimer = Time.CreateTimer(static s => ((Attempt)s!).OnProbeTick(), this, ProbeTick, ProbeTick);
            using var timeout = new CancellationTokenSource(_node._options.ConnectTimeout, Time);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, cancellationToken);
            using var registration = linked.Token.Register(() => _done.TrySetException(new TraversalException(
                cancellationToken.IsCancellationRequested
                    ? "the connect was cancelled"
                    : $"no path to {Peer} within {_node._options.ConnectTimeout}")));
            _ = CompleteWhenConnectedAsync();
            var connection = await _done.Task;
            LogConnected(_node._logger, connection);
            return connection;
        }

        private async Task CompleteWhenConnectedAsync()
        {
            IceCandidatePair pair;
            try
            {
                pair = await Transport.Connected;
            }
#pragma warning disable CA1031 // The failure goes to the connect's caller.
            catch (Exception e)
#pragma warning restore CA1031
            {
                _done.TrySetException(new TraversalException($"no path to {Peer}: {e.Message}", e));
                return;
            }

            StopProbing();
            var (path, method) = Classify(pair);
            var connection = new PeerConnection(Peer, Initiator, Transport, pair, path, method,
                Time.GetElapsedTime(_began), () => Transport.Agent.Stats.RequestsSent, DisposeAsync);
            if (!_done.TrySetResult(connection))
            {
                return;
            }
        }

        /// <summary>What the selected pair is and which method found it.</summary>
        private (PathKind Path, TraversalMethod Method) Classify(IceCandidatePair pair)
        {
            if (pair.IsRelayed)
            {
                return (PathKind.Relay, TraversalMethod.Relay);
            }

            var hairpin = _node.PublicEndPoint is { } pub && pair.Remote.EndPoint.Address.Equals(pub.Address) &&
                          pair.Local.Type != IceCandidateType.Host;
            var path = hairpin ? PathKind.Hairpin : PathKind.Direct;

            // A mapping a port mapping protocol made admits anyone: with one on either side (the peer's shows in its
            // candidates' type preference, the one thing of the origin that travels), that is what opened the path,
            // whatever the plan from the profiles also tried: its punches and probes land on a mapping that admits
            // them all. Host pairs cross no NAT.
            if ((_node.PortMappedEndPoint is not null || RemoteHasPortMapping()) &&
                !(pair.Local.Type == IceCandidateType.Host && pair.Remote.Type == IceCandidateType.Host))
            {
                return (path, TraversalMethod.PortMapped);
            }

            if (_hardIndex.Contains(pair.Socket))
            {
                return (path, Plan.Role == HardNatRole.Predict ? TraversalMethod.Prediction : TraversalMethod.Birthday);
            }

            if (_remote?.Predicted is { } predicted && pair.Remote.EndPoint.Equals(predicted))
            {
                return (path, TraversalMethod.Prediction);
            }

            if (Plan.Role == HardNatRole.BirthdayEasy && pair.Remote.Type == IceCandidateType.PeerReflexive)
            {
                return (path, TraversalMethod.Birthday);
            }

            if (pair.Local.Type == IceCandidateType.Host && pair.Remote.Type == IceCandidateType.Host)
            {
                return (path, TraversalMethod.Host);
            }

            return pair.Remote.Type == IceCandidateType.PeerReflexive || pair.Local.Type == IceCandidateType.PeerReflexive
                ? (path, TraversalMethod.PeerReflexive)
                : (path, TraversalMethod.Reflexive);
        }

        /// <summary>The hop limit of punches that should open this side's NAT and go no further (0: behind no NAT,
        /// or priming is off: full-range punches).</summary>
        private byte PunchHopLimit => BehindNat ? _node._options.PrimeHopLimit : (byte)0;

        /// <summary>The node's public endpoint is none of its own addresses.</summary>
        private bool BehindNat => _node.PublicEndPoint is { } pub &&
                                  !HostEndPoints(_node.LocalEndPoint).Exists(h => h.Address.Equals(pub.Address));

        /// <summary>Before the checks, datagrams that open this node's NAT toward the peer and die before the peer's
        /// NAT (one Binding indication, a keepalive the peer ignores should it arrive, built once). Behind an
        /// endpoint-independent NAT: from the shared socket to each of the peer's reflexive and predicted candidates,
        /// and to every port a birthday probe will aim at. On the hard side of birthday probing: from each of its
        /// sockets to the easy side's endpoint, so that every mapping the probes must meet exists before the first
        /// probe can reach this NAT. True when any was sent (the checks then wait
        /// <see cref="TraversalOptions.PrimeLead"/> longer).</summary>
        private async Task<bool> PrimeAsync(TraversalSession remote)
        {
            var hops = PunchHopLimit;
            if (hops == 0 || _node._options.RelayOnly)
            {
                return false;
            }

            var began = Time.GetTimestamp();
            var prime = IceMessages.Indication(StunTransactionId.NewRandom());
            var sent = 0;
            if (Plan.Role == HardNatRole.BirthdayHard && _target is { } easy)
            {
                // A Linux NAT (conntrack) picks a new mapping's random port among the ports no entry uses, and an
                // easy-side probe that arrived first left an entry for the port it aimed at: a mapping made after a
                // probe avoids exactly the ports probed so far, and the probes that remain have fewer to meet (one
                // run in ten missed). Made before any probe, every mapping is among the ports the probes draw from.
                foreach (var socket in _hard)
                {
                    if (socket is IHopLimitDatagramSocket limited && await SendPrimeAsync(limited, prime, easy, hops))
                    {
                        sent++;
                    }
                }

                _hardPrimed = _hard.Count > 0 && sent == _hard.Count;
            }

            // Behind a NAT that maps per destination the shared socket's datagram would take a fresh port the peer
            // never learns (and, sequential, the one a prediction aims at): only a stable mapping is worth opening.
            if (_node.Profile.IsStable)
            {
                var targets = new List<IPEndPoint>();
                foreach (var c in remote.Candidates)
                {
                    // A peer behind this node's own NAT is reached by hairpin, not across the internet: no prime.
                    if (c.Type == IceCandidateType.ServerReflexive && !c.EndPoint.Address.Equals(_node.PublicEndPoint?.Address))
                    {
                        targets.Add(c.EndPoint);
                    }
                }

                if (remote.Predicted is { } p)
                {
                    targets.Add(p);
                }

                // The easy side of birthday probing opens every port it will probe at once: a hard-side punch that
                // hits one then finds its way in, where it would otherwise leave the entry that moves this side's
                // mapping for exactly that port.
                if (Plan.Role == HardNatRole.BirthdayEasy && _target is { } hard)
                {
                    foreach (var port in _birthdayPorts)
                    {
                        targets.Add(new IPEndPoint(hard.Address, port));
                    }
                }

                foreach (var target in targets)
                {
                    if (await SendPrimeAsync(_node._send, prime, target, hops))
                    {
                        sent++;
                    }
                }
            }

            if (sent > 0)
            {
                LogPrimed(_node._logger, Peer, sent, Time.GetElapsedTime(began).TotalMilliseconds);
            }

            return sent > 0;
        }

        private static async Task<bool> SendPrimeAsync(IHopLimitDatagramSocket socket, ReadOnlyMemory<byte> prime,
            IPEndPoint target, byte hops)
        {
            try
            {
                return await socket.SendToAsync(prime, target, hops) > 0;
            }
            catch (NetworkException)
            {
                // one destination the system refuses does not stop the others
                return false;
            }
        }

        private bool RemoteHasPortMapping()
        {
            foreach (var c in _remote?.Candidates ?? [])
            {
                if (c.Type == IceCandidateType.ServerReflexive && c.Priority >> 24 == IcePriority.PortMappedPreference)
                {
                    return true;
                }
            }

            return false;
        }

        /// <summary>Sends the probes the plan's schedule has due, at the budget's rate.</summary>
        private void OnProbeTick()
        {
            if (Volatile.Read(ref _disposed) != 0 || _target is not { } target)
            {
                StopProbing();
                return;
            }

            var elapsed = Time.GetElapsedTime(_probeStarted);
            var allowed = (int)Math.Min(int.MaxValue, elapsed.TotalSeconds * Plan.ProbesPerSecond) + 1;
            var finished = false;
            try
            {
                switch (Plan.Role)
                {
                    case HardNatRole.Predict:
                        var due = (int)(elapsed / PredictionProbeInterval);
                        if (due > _probesDone && _hardIndex.Count > 0)
                        {
                            _probesDone = due;
                            Transport.Update(a => a.Probe(_hardIndex[0], target));
                        }

                        finished = _probesDone >= PredictionProbes;
                        break;
                    case HardNatRole.BirthdayHard:
                        // Primed mappings need no punch: the easy side's probes meet them, and the answer leaves
                        // through the probed port. A punch that reached the easy side's Linux NAT before its prime
                        // toward that port left an entry that moves the prime (and every probe after it) to another
                        // port, losing exactly the hit it carried; so when primed, the punches wait until the probes
                        // are done and only stand in for lost ones.
                        var punchFrom = _hardPrimed ? Plan.ProbeDuration : TimeSpan.Zero;
                        var total = elapsed < punchFrom ? 0 : _hardIndex.Count * BirthdayHardRounds;
                        var upTo = Math.Min(total,
                            (int)Math.Min(int.MaxValue, (elapsed - punchFrom).TotalSeconds * Plan.ProbesPerSecond) + 1);
                        if (upTo > _probesDone)
                        {
                            var from = _probesDone;
                            _probesDone = upTo;
                            Transport.Update(a =>
                            {
                                for (var i = from; i < upTo; i++)
                                {
                                    a.Probe(_hardIndex[i % _hardIndex.Count], target);
                                }

                                return 0;
                            });
                        }

                        finished = total > 0 && _probesDone >= total;
                        break;
                    case HardNatRole.BirthdayEasy:
                        var limit = Math.Min(_birthdayPorts.Length, allowed);
                        if (limit > _probesDone)
                        {
                            var from = _probesDone;
                            _probesDone = limit;
                            Transport.Update(a =>
                            {
                                for (var i = from; i < limit; i++)
                                {
                                    a.Probe(MainSocket, new IPEndPoint(target.Address, _birthdayPorts[i]));
                                }

                                return 0;
                            });
                        }

                        finished = _probesDone >= _birthdayPorts.Length;
                        break;
                    default:
                        finished = true;
                        break;
                }
            }
            catch (ObjectDisposedException)
            {
                finished = true;
            }

            if (finished)
            {
                StopProbing();
            }
        }

        private void StopProbing()
        {
            _probeTimer?.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        }

        public async ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0)
            {
                return;
            }

            _node.Remove(this);
            _done.TrySetException(new TraversalException("the connection attempt was closed"));
            if (_probeTimer is not null)
            {
                await _probeTimer.DisposeAsync();
            }

            await Transport.DisposeAsync();

            foreach (var socket in _hard)
            {
                await socket.DisposeAsync();
            }
        }

        /// <summary>The host candidates of a socket bound at <paramref name="bound"/>: its own address, or every
        /// IPv4 address of the network for a wildcard bind (loopback only when bound to it).</summary>
        private List<IPEndPoint> HostEndPoints(IPEndPoint bound)
        {
            if (!bound.Address.Equals(IPAddress.Any) && !bound.Address.Equals(IPAddress.IPv6Any))
            {
                return [bound];
            }

            var list = new List<IPEndPoint>();
            foreach (var address in _node._network.LocalAddresses)
            {
                if (address.AddressFamily == AddressFamily.InterNetwork && !IPAddress.IsLoopback(address))
                {
                    list.Add(new IPEndPoint(address, bound.Port));
                }
            }

            return list;
        }
    }
}
