using Microsoft.Extensions.Logging;
using NatKit.Net;
using NatKit.Traversal.Identity;

namespace NatKit.Traversal.Peer;

/// <summary>What <see cref="PeerNetwork.ReconfigureAsync"/> changed.</summary>
/// <param name="ForwardsOpened">New forwarded ports now listening.</param>
/// <param name="ForwardsClosed">Forwarded ports no longer configured: listener and pipes closed.</param>
/// <param name="ForwardsChanged">Forwarded ports kept whose peer, service or address changed: their pipes closed,
/// the next connection goes to the new target.</param>
/// <param name="ForwardsKept">Forwarded ports unchanged, pipes and all.</param>
/// <param name="PipesClosed">Pipes closed by the change (forwarded and exposed).</param>
public sealed record PeerNetworkChanges(int ForwardsOpened, int ForwardsClosed, int ForwardsChanged, int ForwardsKept,
    int PipesClosed);

/// <summary>What a running node can change without a restart (exposed services, forwarded ports, a peer dropped),
/// and its drain before a stop.</summary>
public sealed partial class PeerNetwork
{
    private readonly SemaphoreSlim _reconfiguring = new(1, 1);

    /// <summary>The services peers may reach now (<see cref="PeerNetworkOptions.Expose"/>, or the last
    /// <see cref="ReconfigureAsync"/>'s).</summary>
    public IReadOnlyList<ExposedService> Exposed => Volatile.Read(ref _expose);

    private bool Draining
    {
        get
        {
            lock (_gate)
            {
                return _drained is not null;
            }
        }
    }

    /// <summary>
    /// Applies new exposed services and forwarded ports to the running node. A forwarded port is known by its
    /// configured listen endpoint: one that stays the same keeps its listener and, when its peer, service and address
    /// stay too, its pipes; one whose target changed keeps its listener and closes its pipes; a new one opens a
    /// listener; one no longer given closes its listener and its pipes. Exposed pipes whose service is gone, moved to
    /// another target or no longer allows their peer close. Everything is checked and every new listener bound before
    /// anything changes: on an error the node runs on as it was.
    /// </summary>
    /// <exception cref="ArgumentException">A service or forward is invalid (as <see cref="PeerNetworkOptions.Validate"/>).</exception>
    /// <exception cref="NetworkException">A new forwarded port cannot be bound.</exception>
    /// <exception cref="ObjectDisposedException">The node is not running.</exception>
    public async Task<PeerNetworkChanges> ReconfigureAsync(IReadOnlyList<ExposedService> expose,
        IReadOnlyList<PortForward> forward, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(expose);
        ArgumentNullException.ThrowIfNull(forward);
        _ = (_options with { Expose = expose, Forward = forward }).Validate();
        await _reconfiguring.WaitAsync(cancellationToken);
        try
        {
            List<ForwardPort> unmatched;
            lock (_gate)
            {
                ObjectDisposedException.ThrowIf(_state != State.Running, this);
                unmatched = [.. _forwardPorts];
            }

            // the same forward keeps its port; a fixed listen endpoint given another target keeps its listener (port 0
            // names no port: such a forward is the same one only when nothing else changed)
            var slots = new ForwardPort?[forward.Count];
            var changed = new List<int>();
            var kept = Match(unmatched, forward, slots, (had, wanted) => had.Configured == wanted);
            for (var i = 0; i < forward.Count; i++)
            {
                if (slots[i] is null && forward[i].Listen.Port != 0 &&
                    Match(unmatched, [forward[i]], slots.AsSpan(i, 1), (had, wanted) => had.Configured.Listen.Equals(wanted.Listen)) > 0)
                {
                    changed.Add(i);
                }
            }

            var opened = new List<ForwardPort>();
            try
            {
                for (var i = 0; i < forward.Count; i++)
                {
                    if (slots[i] is null)
                    {
                        slots[i] = await OpenForwardPortAsync(forward[i], cancellationToken);
                        opened.Add(slots[i]!);
                    }
                }
            }
            catch
            {
                foreach (var o in opened)
                {
                    await o.CloseAsync();
                }

                throw;
            }

            var close = new List<SocketPipe>();
            lock (_gate)
            {
                if (_state == State.Running)
                {
                    var before = _expose;
                    Volatile.Write(ref _expose, expose);
                    foreach (var i in changed)
                    {
                        slots[i]!.Retarget(forward[i]);
                        TakePipes(slots[i]!, close);
                    }

                    foreach (var gone in unmatched)
                    {
                        gone.Retarget(null);
                        TakePipes(gone, close);
                    }

                    foreach (var p in _pipes.Values)
                    {
                        if (p.Kind == PipeKind.Exposed && !StillExposed(p, before, expose))
                        {
                            close.Add(p);
                        }
                    }

                    _forwardPorts.Clear();
                    _forwardPorts.AddRange(slots!);
                    opened.ForEach(o => Track(AcceptForwardsAsync(o)));
                    opened.Clear();
                }
            }

            foreach (var o in opened)
            {
                await o.CloseAsync(); // stopped meanwhile
            }

            ObjectDisposedException.ThrowIf(Stopped, this);
            foreach (var gone in unmatched)
            {
                await gone.CloseAsync();
            }

            foreach (var p in close)
            {
                await p.CloseAsync();
            }

            var changes = new PeerNetworkChanges(forward.Count - kept - changed.Count, unmatched.Count, changed.Count,
                kept, close.Count);
            LogReconfigured(_logger, expose.Count, changes);
            return changes;
        }
        finally
        {
            _reconfiguring.Release();
        }
    }

    /// <summary>Closes every pipe to or from <paramref name="peer"/> and drops its links (what a node does when the
    /// caller stops knowing a peer, or learns a new key for it); a new pipe or link with it is still made when
    /// <see cref="PeerNetworkOptions.KnownPeersOnly"/> allows. Returns the number of pipes closed.</summary>
    public async Task<int> DisconnectAsync(NodeId peer)
    {
        var pipes = new List<SocketPipe>();
        List<PeerLink> links;
        lock (_gate)
        {
            foreach (var p in _pipes.Values)
            {
                if (p.Peer == peer)
                {
                    pipes.Add(p);
                }
            }

            links = _links.FindAll(l => l.Peer == peer);
            _links.RemoveAll(l => l.Peer == peer);
        }

        foreach (var p in pipes)
        {
            await p.CloseAsync();
        }

        foreach (var l in links)
        {
            await l.DisposeAsync();
        }

        return pipes.Count;
    }

    /// <summary>
    /// Stops taking pipes, then lets the open ones finish: closes the forwarded ports' listeners (a new local
    /// connection is refused by the kernel) and refuses peers' pipe requests ("the node is stopping"), and waits until
    /// no pipe is left or <paramref name="timeout"/> passes on the network's clock. Returns how many pipes are still
    /// open; <see cref="StopAsync"/> then cuts them. Links stay up meanwhile: the open pipes run over them.
    /// </summary>
    /// <exception cref="InvalidOperationException">Not started.</exception>
    public async Task<int> DrainAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        ForwardPort[] ports;
        Task drained;
        lock (_gate)
        {
            if (_state == State.Created)
            {
                throw new InvalidOperationException("the peer network was not started");
            }

            _drained ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            if (_pipes.Count == 0)
            {
                _drained.TrySetResult();
            }

            drained = _drained.Task;
            ports = [.. _forwardPorts];
        }

        foreach (var p in ports)
        {
            await p.CloseAsync();
        }

        if (timeout > TimeSpan.Zero)
        {
            try
            {
                await drained.WaitAsync(timeout, Time, cancellationToken);
            }
            catch (TimeoutException)
            {
            }
        }

        return PipeCount;
    }

    /// <summary>Fills each empty slot with the first unmatched port that <paramref name="same"/> pairs with its
    /// forward, taking it out of <paramref name="unmatched"/>; returns how many were filled.</summary>
    private static int Match(List<ForwardPort> unmatched, IReadOnlyList<PortForward> forward, Span<ForwardPort?> slots,
        Func<ForwardPort, PortForward, bool> same)
    {
        var filled = 0;
        for (var i = 0; i < forward.Count; i++)
        {
            var at = slots[i] is null ? unmatched.FindIndex(p => same(p, forward[i])) : -1;
            if (at >= 0)
            {
                slots[i] = unmatched[at];
                unmatched.RemoveAt(at);
                filled++;
            }
        }

        return filled;
    }

    private long ClosedBytes(PathKind path, bool toPeer)
    {
        lock (_gate)
        {
            return _closedBytes[(2 * (int)path) + (toPeer ? 0 : 1)];
        }
    }

    /// <summary>Binds a forwarded port's listener (not yet accepting).</summary>
    private async Task<ForwardPort> OpenForwardPortAsync(PortForward forward, CancellationToken cancellationToken)
    {
        var listener = await _network.ListenTcpAsync(forward.Listen, cancellationToken: cancellationToken);
        return new ForwardPort(forward, listener);
    }

    private void AddForwardPort(ForwardPort port)
    {
        lock (_gate)
        {
            _forwardPorts.Add(port);
        }

        Track(AcceptForwardsAsync(port));
    }

    /// <summary>Moves the port's open pipes into <paramref name="close"/> (under the gate).</summary>
    private void TakePipes(ForwardPort port, List<SocketPipe> close)
    {
        foreach (var id in port.TakePipes())
        {
            if (_pipes.TryGetValue(id, out var pipe))
            {
                close.Add(pipe);
            }
        }
    }

    /// <summary>True when an exposed pipe's service is still there, at the same target, for its peer.</summary>
    private static bool StillExposed(SocketPipe pipe, IReadOnlyList<ExposedService> before,
        IReadOnlyList<ExposedService> now)
    {
        var old = Find(before, pipe.Service);
        var current = Find(now, pipe.Service);
        return current is not null && current.Allows(pipe.Peer) && (old is null || old.Target.Equals(current.Target));

        static ExposedService? Find(IReadOnlyList<ExposedService> list, string name)
        {
            foreach (var e in list)
            {
                if (e.Name == name)
                {
                    return e;
                }
            }

            return null;
        }
    }

    /// <summary>A forwarded port: its listener, the forward it serves now and the pipes it opened. Every member but
    /// <see cref="CloseAsync"/> is used under the network's gate.</summary>
    private sealed class ForwardPort(PortForward configured, IStreamListener listener)
    {
        private readonly HashSet<long> _pipes = [];
        private int _closed;

        /// <summary>The forward as configured (port 0 as given).</summary>
        public PortForward Configured { get; private set; } = configured;

        /// <summary>The forward with the port the listener bound; null once removed.</summary>
        public PortForward? Bound { get; private set; } = configured with { Listen = listener.LocalEndPoint };

        public IStreamListener Listener => listener;

        /// <summary>Records a pipe opened for <paramref name="openedFor"/>; false when the forward changed or went
        /// meanwhile (the caller closes the pipe).</summary>
        public bool Hold(long pipe, PortForward openedFor)
        {
            if (!ReferenceEquals(Bound, openedFor))
            {
                return false;
            }

            _pipes.Add(pipe);
            return true;
        }

        public void Release(long pipe) => _pipes.Remove(pipe);

        /// <summary>Serves <paramref name="forward"/> from now on (null: removed).</summary>
        public void Retarget(PortForward? forward)
        {
            Bound = forward is null ? null : forward with { Listen = listener.LocalEndPoint };
            Configured = forward ?? Configured;
        }

        public long[] TakePipes()
        {
            long[] ids = [.. _pipes];
            _pipes.Clear();
            return ids;
        }

        public async ValueTask CloseAsync()
        {
            if (Interlocked.Exchange(ref _closed, 1) == 0)
            {
                await listener.DisposeAsync();
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "reconfigured: {Exposed} exposed service(s); {Changes}")]
    private static partial void LogReconfigured(ILogger logger, int exposed, PeerNetworkChanges changes);
}
