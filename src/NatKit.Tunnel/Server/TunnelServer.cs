using System.Buffers;
using System.Net;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;
using NatKit.Nat;
using NatKit.Nat.Ports;
using NatKit.Packets;
using NatKit.Tunnel.Framing;
using NatKit.Tunnel.Link;

namespace NatKit.Tunnel.Server;

/// <summary>A tunnel server's counters.</summary>
public sealed record TunnelServerStats(int Connected, int Leased, int PoolCapacity, long Accepted, long Refused,
    long Unauthorized, long Spoofed, long RateLimited, long NoSession, long Replaced, long TimedOut, long AddressesFreed);

/// <summary>One flow of the server's NAT, with the session it belongs to.</summary>
public sealed record TunnelFlowInfo(string Session, string Protocol, string Inside, string Outside, string Remote,
    string TcpState, long IdleMilliseconds, long ExpiresInMilliseconds);

/// <summary>
/// The tunnel server's core, independent of how WebSockets arrive (Kestrel on the real network, NatKit's own
/// handshake over the lab's streams): checks each connection's hello (version, token), leases it an inner address,
/// answers with the welcome, and then carries its packets between its link and the NAT engine's inside
/// (<see cref="Inside"/>, a <see cref="SessionHub"/>). The caller runs the engine: a <see cref="PacketPump"/> between
/// <see cref="Inside"/> and an outside port (the server's TUN device, or a lab port), driven by a
/// <see cref="IPacketPumpDriver"/> given to <see cref="Start"/>.
/// </summary>
/// <remarks>
/// A session that disconnects keeps its address and its flows for <see cref="TunnelServerOptions.ResumeGrace"/>: a
/// reconnect with the same session id (through the same relay, another one, or none) gets both back and the other
/// connection of that session, if it is still open, is told it was replaced. When the grace ends the engine forgets
/// the address's flows before the address serves anyone else. Sessions silent for three keepalive intervals are ended.
/// </remarks>
public sealed class TunnelServer : IAsyncDisposable
{
    private readonly TunnelServerOptions _options;
    private readonly TimeProvider _time;
    private readonly SynchronizationContext? _loop;
    private readonly AddressPool _pool;
    private readonly SessionHub _hub = new();
    private readonly byte[][] _tokens;
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _gate = new();
    private readonly Dictionary<Guid, int> _reconnects = [];
    private readonly TaskCompletionSource _drained = new();
    private int _serving;
    private volatile bool _refusing;
    private TaskCompletionSource? _emptied;
    private IPacketPumpDriver? _driver;
    private Func<long>? _engineNow;
    private ITimer? _sweep;

    private long _accepted;
    private long _refused;
    private long _unauthorized;
    private long _replaced;
    private long _timedOut;
    private long _freed;
    private long _spoofedEnded;
    private long _rateLimitedEnded;

    /// <param name="options">What the server serves.</param>
    /// <param name="time">The clock (the lab's virtual one in the lab).</param>
    /// <param name="loop">Where the sessions' loops resume when the data plane wakes them: null (the thread pool) for
    /// a Linux data-plane thread, the lab's loop in the lab (see <see cref="Link.AsyncSignal"/>).</param>
    public TunnelServer(TunnelServerOptions options, TimeProvider? time = null, SynchronizationContext? loop = null)
    {
        _loop = loop;
        ArgumentNullException.ThrowIfNull(options);
        if (options.Validate() is { } problem)
        {
            throw new ArgumentException(problem, nameof(options));
        }

        _options = options;
        _time = time ?? TimeProvider.System;
        _pool = new AddressPool(options.Pool);
        _tokens = [.. options.Tokens.Select(Encoding.UTF8.GetBytes)];
        Engine = new NatEngine(options.NatConfig(_pool.Gateway));
    }

    public TunnelServerOptions Options => _options;

    /// <summary>The NAT engine between the sessions and the outside; run it with a pump over <see cref="Inside"/>.</summary>
    public NatEngine Engine { get; }

    /// <summary>The engine's inside: every session behind one packet port.</summary>
    public ISignalingPacketPort Inside => _hub;

    /// <summary>The server's own address on the tunnel (the clients' next hop; its ICMP errors come from it).</summary>
    public Ipv4Address Gateway => _pool.Gateway;

    public TunnelServerStats Stats
    {
        get
        {
            long spoofed = Volatile.Read(ref _spoofedEnded), limited = Volatile.Read(ref _rateLimitedEnded);
            foreach (var s in _hub.Sessions)
            {
                spoofed += s.Spoofed;
                limited += s.RateLimited;
            }

            return new TunnelServerStats(_hub.Connected, _pool.Leased, _pool.Capacity, Volatile.Read(ref _accepted),
                Volatile.Read(ref _refused), Volatile.Read(ref _unauthorized), spoofed, limited, _hub.NoSession,
                Volatile.Read(ref _replaced), Volatile.Read(ref _timedOut), Volatile.Read(ref _freed));
        }
    }

    /// <summary>The connected sessions.</summary>
    public IReadOnlyList<TunnelSessionInfo> Sessions() => [.. _hub.Sessions.Select(s => s.Info())];

    /// <summary>Starts serving: engine work (forgetting a freed address's flows) runs on <paramref name="driver"/>.</summary>
    /// <param name="driver">Who runs the pump.</param>
    /// <param name="engineNow">The engine's clock as the pump reads it (for the flow table's ages).</param>
    public void Start(IPacketPumpDriver driver, Func<long> engineNow)
    {
        _driver = driver ?? throw new ArgumentNullException(nameof(driver));
        _engineNow = engineNow ?? throw new ArgumentNullException(nameof(engineNow));
        _sweep = _time.CreateTimer(_ => Sweep(), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
    }

    /// <summary>The NAT's flows, each with the session whose inside address it is, taken on the data plane.</summary>
    public async Task<IReadOnlyList<TunnelFlowInfo>> FlowsAsync()
    {
        var driver = _driver ?? throw new InvalidOperationException("the server is not started");
        var engineNow = _engineNow!;
        var (now, flows) = await driver.InvokeAsync(() => (engineNow(), Engine.SnapshotFlows())).ConfigureAwait(false);
        var sessions = _hub.Sessions.ToDictionary(s => s.InsideAddress.Value, s => s.Id.ToString("N")[..8]);
        return [.. flows.Select(f => new TunnelFlowInfo(
            sessions.GetValueOrDefault(f.Internal.Address.Value, "-"), f.Protocol.ToString().ToLowerInvariant(),
            f.Internal.ToString(), f.External.ToString(), f.Remote.ToString(), f.TcpState.ToString(),
            Math.Max(0, now - f.LastRefresh), Math.Max(0, f.ExpiresAt - now)))];
    }

    /// <summary>
    /// Serves one WebSocket until it ends: the hello (within <see cref="TunnelServerOptions.HelloTimeout"/>), a
    /// refusal or the welcome, then the session. Never throws for anything the peer does.
    /// </summary>
    public async Task ServeAsync(WebSocket socket, IPEndPoint? remote, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(socket);
        Interlocked.Increment(ref _serving);
        try
        {
            await ServeCoreAsync(socket, remote, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is WebSocketException or IOException or OperationCanceledException or ObjectDisposedException)
        {
            // the peer went away during the hello: nothing was set up
        }
        finally
        {
            socket.Abort();
            socket.Dispose();
            if (Interlocked.Decrement(ref _serving) == 0 && _stopping.IsCancellationRequested)
            {
                _drained.TrySetResult();
            }
        }
    }

    private async Task ServeCoreAsync(WebSocket socket, IPEndPoint? remote, CancellationToken cancellationToken)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stopping.Token);
        var hello = await ReadHelloAsync(socket, linked.Token).ConfigureAwait(false);
        if (hello is null)
        {
            return;
        }

        var (answer, session) = Admit(hello, socket, remote);
        if (session is null)
        {
            Interlocked.Increment(ref _refused);
            await SendAndCloseAsync(socket, answer!, linked.Token).ConfigureAwait(false);
            return;
        }

        Interlocked.Increment(ref _accepted);
        try
        {
            var welcome = new TunnelWelcome(TunnelMessage.Version, session.Link.Offloads ? TunnelFeatures.Offloads : TunnelFeatures.None,
                session.ClientAddress, _options.AllowClientAddresses && hello.RequestedAddress != Ipv4Address.Any ? 32 : _options.Pool.Length,
                _pool.Gateway, _options.Mtu, (int)_options.Keepalive.TotalSeconds, session.Id, _options.Routes);
            var message = new byte[welcome.Length];
            welcome.Write(message);
            await socket.SendAsync(message, WebSocketMessageType.Binary, endOfMessage: true, linked.Token).ConfigureAwait(false);
            _hub.Add(session);
            await session.Link.RunAsync(linked.Token).ConfigureAwait(false);
        }
        finally
        {
            _hub.Remove(session);
            if (Volatile.Read(ref _emptied) is { } emptied && _hub.Connected == 0)
            {
                emptied.TrySetResult();
            }

            Interlocked.Add(ref _spoofedEnded, session.Spoofed);
            Interlocked.Add(ref _rateLimitedEnded, session.RateLimited);
            if (!_hub.Sessions.Any(s => s.Id == session.Id))
            {
                _pool.Hold(session.Id, _time.GetTimestamp() + (long)(_options.ResumeGrace.TotalSeconds * _time.TimestampFrequency));
            }
        }
    }

    /// <summary>Decides about a hello: a refusal to send, or the new session.</summary>
    private (TunnelNotice? Refusal, TunnelSession? Session) Admit(TunnelHello hello, WebSocket socket, IPEndPoint? remote)
    {
        if (hello.Version != TunnelMessage.Version)
        {
            return (new TunnelNotice(true, TunnelCode.VersionUnsupported, $"this server speaks version {TunnelMessage.Version} only"), null);
        }

        var token = Encoding.UTF8.GetBytes(hello.Token);
        var known = false;
        foreach (var t in _tokens)
        {
            known |= CryptographicOperations.FixedTimeEquals(t, token);
        }

        if (!known)
        {
            Interlocked.Increment(ref _unauthorized);
            return (new TunnelNotice(true, TunnelCode.Unauthorized, "wrong token"), null);
        }

        if (_stopping.IsCancellationRequested || _refusing)
        {
            return (new TunnelNotice(true, TunnelCode.ShuttingDown, "the server is stopping"), null);
        }

        var requested = hello.RequestedAddress;
        if (requested != Ipv4Address.Any && !_options.AllowClientAddresses && !_options.Pool.Contains(requested))
        {
            return (new TunnelNotice(true, TunnelCode.AddressRefused, $"this server hands out addresses from {_options.Pool.Network}/{_options.Pool.Length} and does not let clients choose"), null);
        }

        var id = hello.SessionId == Guid.Empty ? Guid.NewGuid() : hello.SessionId;
        if (_pool.Leased >= _options.MaxSessions && !_hub.Sessions.Any(s => s.Id == id))
        {
            return (new TunnelNotice(true, TunnelCode.ServerFull, $"the server holds its {_options.MaxSessions} sessions"), null);
        }

        if (!_pool.TryLease(id, out var inside, out var resumed, out var wasActive))
        {
            return (new TunnelNotice(true, TunnelCode.PoolExhausted, "no inner address is free"), null);
        }

        if (wasActive)
        {
            foreach (var old in _hub.Sessions.Where(s => s.Id == id))
            {
                Interlocked.Increment(ref _replaced);
                _hub.Remove(old);
                old.Link.Stop(new TunnelNotice(false, TunnelCode.Replaced, "a newer connection of this session took over"));
            }
        }

        int reconnects;
        lock (_gate)
        {
            reconnects = resumed ? _reconnects.GetValueOrDefault(id) + 1 : 0;
            _reconnects[id] = reconnects;
        }

        var client = _options.AllowClientAddresses && requested != Ipv4Address.Any ? requested : inside;
        var offloads = _options.Offloads && (hello.Features & TunnelFeatures.Offloads) != 0;
        var link = new TunnelLink(socket, offloads, _time, _options.QueuePackets, _options.QueueBytes, _loop);
        return (null, new TunnelSession(id, inside, client, remote, link, _options.MaxPacketsPerSecond, _time, reconnects));
    }

    private async Task<TunnelHello?> ReadHelloAsync(WebSocket socket, CancellationToken cancellationToken)
    {
        using var timeout = new CancellationTokenSource(_options.HelloTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        var buffer = ArrayPool<byte>.Shared.Rent(TunnelHello.MaxTokenBytes + 64);
        try
        {
            var length = 0;
            while (true)
            {
                if (length == buffer.Length)
                {
                    Interlocked.Increment(ref _refused);
                    await SendAndCloseAsync(socket, new TunnelNotice(true, TunnelCode.Malformed, "the first message is too long for a hello"), cancellationToken).ConfigureAwait(false);
                    return null;
                }

                ValueWebSocketReceiveResult result;
                try
                {
                    result = await socket.ReceiveAsync(buffer.AsMemory(length), linked.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
                {
                    Interlocked.Increment(ref _refused);
                    return null; // no hello in time: the socket was aborted by the cancellation
                }

                if (result.MessageType == WebSocketMessageType.Close)
                {
                    return null;
                }

                length += result.Count;
                if (result.EndOfMessage)
                {
                    break;
                }
            }

            if (TunnelHello.TryParse(buffer.AsSpan(0, length), out var hello, out var error))
            {
                return hello;
            }

            Interlocked.Increment(ref _refused);
            await SendAndCloseAsync(socket, new TunnelNotice(true, TunnelCode.Malformed, "the first message must be a hello: " + error), cancellationToken).ConfigureAwait(false);
            return null;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private async Task SendAndCloseAsync(WebSocket socket, TunnelNotice notice, CancellationToken cancellationToken)
    {
        var message = new byte[TunnelNotice.MaxLength];
        var length = notice.Write(message);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2), _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        try
        {
            await socket.SendAsync(message.AsMemory(0, length), WebSocketMessageType.Binary, true, linked.Token).ConfigureAwait(false);
            await socket.CloseOutputAsync(notice.Code == TunnelCode.Unauthorized ? WebSocketCloseStatus.PolicyViolation : WebSocketCloseStatus.NormalClosure,
                null, linked.Token).ConfigureAwait(false);

            // Wait (briefly) for the client to read the notice and close: closing first would reset the connection,
            // and a reset can throw the unread notice away at the client.
            var sink = new byte[256];
            while ((await socket.ReceiveAsync(sink.AsMemory(), linked.Token).ConfigureAwait(false)).MessageType != WebSocketMessageType.Close)
            {
            }
        }
        catch (Exception e) when (e is WebSocketException or IOException or OperationCanceledException or ObjectDisposedException)
        {
        }
    }

    /// <summary>Once a second: ends silent sessions, frees addresses whose grace is over (after the engine forgot
    /// their flows).</summary>
    private void Sweep()
    {
        var now = _time.GetTimestamp();
        var silence = (long)(3 * _options.Keepalive.TotalSeconds * _time.TimestampFrequency);
        foreach (var s in _hub.Sessions)
        {
            if (now - s.Link.LastReceived > silence)
            {
                Interlocked.Increment(ref _timedOut);
                _hub.Remove(s);
                s.Link.Stop(new TunnelNotice(false, TunnelCode.Timeout, "nothing came for three keepalive intervals"));
            }
        }

        var expired = _pool.TakeExpired(now);
        if (expired.Count > 0 && _driver is { } driver)
        {
            _ = ForgetAsync(driver, expired);
        }
    }

    private async Task ForgetAsync(IPacketPumpDriver driver, List<Ipv4Address> addresses)
    {
        await driver.InvokeAsync(() =>
        {
            foreach (var a in addresses)
            {
                Engine.ForgetHost(a);
            }

            return 0;
        }).ConfigureAwait(false);
        foreach (var a in addresses)
        {
            Interlocked.Increment(ref _freed);
            _pool.Release(a);
        }
    }

    /// <summary>Drain: refuses new sessions (and reconnects) with "the server is stopping" while the connected
    /// ones carry traffic until their clients end them or <paramref name="timeout"/> passes. Returns how many were
    /// still connected then; <see cref="StopAsync"/> says goodbye to them.</summary>
    public async Task<int> DrainAsync(TimeSpan timeout)
    {
        var emptied = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _refusing = true;
        Volatile.Write(ref _emptied, emptied);
        if (_hub.Connected == 0)
        {
            emptied.TrySetResult();
        }

        // the timer completes the same task (no WhenAny: this also runs in the lab, see docs/lab.md)
        await using (_time.CreateTimer(_ => emptied.TrySetResult(), null, timeout, Timeout.InfiniteTimeSpan))
        {
            await emptied.Task.ConfigureAwait(true);
        }

        return _hub.Connected;
    }

    /// <summary>Graceful stop: refuses new sessions, sends every session a goodbye, and waits (at most
    /// <paramref name="timeout"/>) for them to end; what is left then is cut.</summary>
    public async Task StopAsync(TimeSpan timeout)
    {
        _stopping.Cancel();
        foreach (var s in _hub.Sessions)
        {
            s.Link.Stop(new TunnelNotice(false, TunnelCode.ShuttingDown, "the server is stopping"));
        }

        if (Volatile.Read(ref _serving) == 0)
        {
            _drained.TrySetResult();
        }

        // the timer completes the same task (no WhenAny: this also runs in the lab, see docs/lab.md)
        await using var deadline = _time.CreateTimer(_ =>
        {
            foreach (var s in _hub.Sessions)
            {
                s.Link.Stop();
            }

            _drained.TrySetResult();
        }, null, timeout, Timeout.InfiniteTimeSpan);
        await _drained.Task.ConfigureAwait(true);
    }

    public async ValueTask DisposeAsync()
    {
        if (_sweep is not null)
        {
            await _sweep.DisposeAsync().ConfigureAwait(false);
        }

        _stopping.Cancel();
        _stopping.Dispose();
        Engine.Dispose();
    }
}
