using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using NatKit.Net;
using NatKit.Stun;
using NatKit.Stun.Server;
using NatKit.Turn.Auth;
using NatKit.Turn.Policy;
using NatKit.Turn.Protocol;

namespace NatKit.Turn.Server;

/// <summary>
/// A TURN relay (RFC 8656) on an <see cref="INetwork"/>: UDP, TCP and TLS client transports; Allocate, Refresh,
/// CreatePermission, ChannelBind, Send/Data indications and ChannelData; long-term credentials or the TURN
/// REST API's shared secret, with stateless expiring nonces; a deny-by-default <see cref="PeerPolicy"/>; and
/// limits on everything a stranger can make it hold. Every packet is handled inside a catch-all: untrusted bytes
/// never end a receive loop. The relay path (ChannelData in, UDP out, and back) allocates nothing per packet.
/// </summary>
public sealed partial class TurnServer : IAsyncDisposable
{
    /// <summary>Room in front of a relay buffer for a Data indication header: STUN header, XOR-PEER-ADDRESS
    /// (IPv6), DATA attribute header. ChannelData's 4-byte header fits in the last 4.</summary>
    internal const int Headroom = StunMessageReader.HeaderLength + 4 + 20 + 4;

    private const int ClientBufferSize = 65536 + 64;

    private readonly INetwork _network;
    private readonly TurnServerOptions _options;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly TurnRequestHandler _handler;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _loops = [];
    private readonly List<IDatagramSocket> _udp = [];
    private readonly List<IStreamListener> _listeners = [];
    private readonly ConcurrentDictionary<IPEndPoint, Allocation>[] _udpAllocations;
    private readonly ConcurrentDictionary<StreamClientLink, Allocation> _streamAllocations = new();
    private readonly TcpConnectionLimits _tcpLimits;
    private IReadOnlyList<IPEndPoint> _ownEndPoints = [];
    private IReadOnlyList<IPAddress> _ownAddresses = [];
    private ITimer? _timer;
    private int _disposed;

    private TurnServer(INetwork network, TurnServerOptions options, ILogger logger, int udpCount)
    {
        _network = network;
        _options = options;
        _logger = logger;
        _time = network.TimeProvider;
        _udpAllocations = new ConcurrentDictionary<IPEndPoint, Allocation>[udpCount];
        for (var i = 0; i < udpCount; i++)
        {
            _udpAllocations[i] = new ConcurrentDictionary<IPEndPoint, Allocation>();
        }

        _tcpLimits = new TcpConnectionLimits(options.MaxTcpConnections, options.MaxTcpConnectionsPerAddress);
        TurnRequestHandler? handler = null;
        Metrics = new TurnMetrics(() => handler?.Ledger.Count ?? 0, () => _tcpLimits.Count);
        _handler = handler = new TurnRequestHandler(options, _time, Metrics, logger);
    }

    public TurnMetrics Metrics { get; }

    public IReadOnlyList<IPEndPoint> UdpEndPoints => _udp.Select(s => s.LocalEndPoint).ToList();

    public IReadOnlyList<IPEndPoint> TcpEndPoints { get; private set; } = [];

    public IReadOnlyList<IPEndPoint> TlsEndPoints { get; private set; } = [];

    /// <summary>The policy in force, including the server's own endpoints and addresses.</summary>
    public PeerPolicy Policy => _handler.Policy;

    public int AllocationCount => _handler.Ledger.Count;

    /// <summary>Relay ports kept back for a RESERVATION-TOKEN now; each counts against its user's quota and
    /// <see cref="TurnServerOptions.MaxAllocations"/> like an allocation.</summary>
    public int ReservationCount => _handler.Ledger.ReservationCount;

    /// <summary>TCP and TLS client connections held now (at most <see cref="TurnServerOptions.MaxTcpConnections"/>).</summary>
    public int TcpConnectionCount => _tcpLimits.Count;

    public TurnServerOptions Options => _options;

    /// <summary>The long-term credentials in force (<see cref="TurnServerOptions.Users"/> until a
    /// <see cref="Reload"/>).</summary>
    public IReadOnlyDictionary<string, string> Users => _handler.Users;

    /// <summary>Replaces the users and the peer policy while serving (an operator's SIGHUP). Allocations, their
    /// permissions and channels stay as they are; the next request is authenticated, and the next peer checked,
    /// against the new ones. The server's own endpoints stay denied.</summary>
    /// <exception cref="ArgumentException">No users are left and there is no shared secret.</exception>
    public void Reload(IReadOnlyDictionary<string, string> users, PeerPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(users);
        ArgumentNullException.ThrowIfNull(policy);
        if (users.Count == 0 && _options.SharedSecret is null)
        {
            throw new ArgumentException("a reload must leave at least one user (or the server has a shared secret): an open relay is not offered.", nameof(users));
        }

        _handler.Users = users;
        _handler.Policy = policy.WithServer(_ownEndPoints, _ownAddresses);
        _logger.LogInformation("reloaded: {Users} user(s); allow [{Allow}] deny [{Deny}]", users.Count,
            string.Join(", ", policy.Allow), string.Join(", ", policy.Deny));
    }

    /// <summary>Binds every listener and starts serving. Configuration mistakes throw
    /// <see cref="ArgumentException"/> with one sentence; a busy address throws <see cref="NetworkException"/>.</summary>
    public static async Task<TurnServer> StartAsync(INetwork network, TurnServerOptions options,
        ILogger? logger = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(network);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var server = new TurnServer(network, options, logger ?? NullLogger.Instance, options.UdpListen.Count);
        try
        {
            await server.BindAsync(cancellationToken);
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }

        return server;
    }

    private async Task BindAsync(CancellationToken cancellationToken)
    {
        foreach (var ep in _options.UdpListen)
        {
            var socket = await _network.BindUdpAsync(ep, cancellationToken);
            (socket as ISocketBuffers)?.TrySetBufferSizes(_options.ListenSocketBufferBytes, _options.ListenSocketBufferBytes);
            _udp.Add(socket);
        }

        var tcp = new List<IPEndPoint>();
        foreach (var ep in _options.TcpListen)
        {
            var l = await _network.ListenTcpAsync(ep, cancellationToken: cancellationToken);
            _listeners.Add(l);
            tcp.Add(l.LocalEndPoint);
        }

        var tls = new List<IPEndPoint>();
        foreach (var ep in _options.TlsListen)
        {
            var l = await _network.ListenTcpAsync(ep, cancellationToken: cancellationToken);
            _listeners.Add(l);
            tls.Add(l.LocalEndPoint);
        }

        TcpEndPoints = tcp;
        TlsEndPoints = tls;

        // The server's own endpoints are never relayable; its addresses are denied unless an allow rule names them.
        var endPoints = new List<IPEndPoint>();
        var own = new List<IPAddress> { _options.RelayAddress };
        if (_options.RelayAddressV6 is not null)
        {
            own.Add(_options.RelayAddressV6);
        }

        if (_options.ExternalAddress is not null)
        {
            own.Add(_options.ExternalAddress);
        }

        foreach (var ep in _udp.Select(s => s.LocalEndPoint).Concat(tcp).Concat(tls))
        {
            if (ep.Address.Equals(IPAddress.Any) || ep.Address.Equals(IPAddress.IPv6Any))
            {
                foreach (var a in _network.LocalAddresses)
                {
                    endPoints.Add(new IPEndPoint(a, ep.Port));
                    own.Add(a);
                }
            }
            else
            {
                endPoints.Add(ep);
                own.Add(ep.Address);
            }
        }

        _handler.Policy = _options.Policy.WithServer(endPoints, own);
        _ownEndPoints = endPoints;
        _ownAddresses = own;

        if (!TryStartDirectLoop())
        {
            for (var i = 0; i < _udp.Count; i++)
            {
                var index = i;
                _loops.Add(UdpLoopAsync(index));
            }
        }

        var n = 0;
        foreach (var l in _listeners)
        {
            var isTls = n++ >= tcp.Count;
            _loops.Add(AcceptLoopAsync(l, isTls));
        }

        _timer = _time.CreateTimer(_ => ExpireDue(), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
        _logger.LogInformation("TURN server on UDP {Udp} TCP {Tcp} TLS {Tls}, relay {Relay} ports {Min}-{Max}",
            string.Join(' ', UdpEndPoints), string.Join(' ', tcp), string.Join(' ', tls), _options.RelayAddress,
            _options.MinPort, _options.MaxPort);
    }

    // ---------------------------------------------------------------- client transports

    private async Task UdpLoopAsync(int index)
    {
        var socket = _udp[index];
        var buffer = GC.AllocateUninitializedArray<byte>(ClientBufferSize, pinned: true);
        var token = _stop.Token;
        while (!token.IsCancellationRequested)
        {
            ReceivedDatagram d;
            try
            {
                d = await socket.ReceiveFromAsync(buffer, token);
            }
            catch (Exception e) when (e is ObjectDisposedException or OperationCanceledException)
            {
                return;
            }
            catch (Exception e) when (e is NetworkException or IOException)
            {
                continue;
            }

            try
            {
                await HandleClientDatagramAsync(index, buffer.AsMemory(0, d.Length), d.RemoteEndPoint);
            }
#pragma warning disable CA1031 // untrusted input: nothing a packet does may end the loop
            catch (Exception e)
#pragma warning restore CA1031
            {
                _logger.LogWarning(e, "packet from {Remote} failed", d.RemoteEndPoint);
            }
        }
    }

    /// <summary>One datagram from a UDP client, for both the async loop and the poller thread: ChannelData is
    /// relayed (RFC 8656 section 12.4), anything else is handled as STUN.</summary>
    private ValueTask HandleClientDatagramAsync(int index, ReadOnlyMemory<byte> data, IPEndPoint remote)
    {
        _udpAllocations[index].TryGetValue(remote, out var allocation);
        if (StunFraming.IsChannelData(data.Span))
        {
            if (allocation is null)
            {
                Metrics.Dropped(DropReason.NoAllocation);
                return default;
            }

            return RelayChannelDataAsync(allocation, data);
        }

        var link = allocation?.Client ?? new UdpClientLink(_udp[index], remote);
        return HandleStunAsync(data, link, allocation, index);
    }

    /// <summary>ChannelData from the client (RFC 8656 section 12.4): find the peer, check, send.</summary>
    private ValueTask RelayChannelDataAsync(Allocation allocation, ReadOnlyMemory<byte> frame) =>
        TryPlanChannelData(allocation, frame.Span, out var relay, out var peer, out var length)
            ? SendToPeerAsync(relay, frame.Slice(4, length), peer)
            : default;

    /// <summary>The checks of ChannelData from the client: size, a bound channel, a permission, bandwidth. True with
    /// the relay socket, the peer and the payload length when the payload (after the 4-byte header) may go.</summary>
    private bool TryPlanChannelData(Allocation allocation, ReadOnlySpan<byte> span,
        [NotNullWhen(true)] out IDatagramSocket? relay, [NotNullWhen(true)] out IPEndPoint? peer, out int length)
    {
        relay = null;
        var number = BinaryPrimitives.ReadUInt16BigEndian(span);
        length = BinaryPrimitives.ReadUInt16BigEndian(span[2..]);
        if (length > span.Length - 4)
        {
            Metrics.Dropped(DropReason.Malformed);
            peer = null;
            return false;
        }

        if (length > _options.MaxRelayPayload)
        {
            Metrics.Dropped(DropReason.TooLarge); // the limit holds both ways
            peer = null;
            return false;
        }

        var now = _time.GetTimestamp();
        lock (allocation.Gate)
        {
            peer = allocation.Closed ? null : allocation.Bindings.PeerOf(number, now);
            if (peer is null)
            {
                Metrics.Dropped(DropReason.NoChannel);
                return false;
            }

            if (!allocation.Bindings.HasPermission(peer.Address, now))
            {
                Metrics.Dropped(DropReason.NoPermission);
                return false;
            }

            if (!allocation.Bucket.TryTake(length, now))
            {
                Metrics.Dropped(DropReason.Bandwidth);
                return false;
            }

            relay = allocation.RelayFor(peer.Address);
        }

        return relay is not null;
    }

    /// <summary>Sends to a peer: on the calling thread when the socket can (never waits), else asynchronously.</summary>
    private ValueTask SendToPeerAsync(IDatagramSocket relay, ReadOnlyMemory<byte> payload, IPEndPoint peer)
    {
        if (relay is INonBlockingDatagramSocket direct)
        {
            SendToPeer(direct, payload.Span, peer);
            return default;
        }

        return SendToPeerSlowAsync(relay, payload, peer);
    }

    private void SendToPeer(INonBlockingDatagramSocket relay, ReadOnlySpan<byte> payload, IPEndPoint peer)
    {
        try
        {
            if (relay.TrySend(payload, peer))
            {
                Metrics.Relayed(toPeer: true, payload.Length);
            }
        }
        catch (ObjectDisposedException)
        {
            // the allocation ended meanwhile: a datagram lost
        }
    }

    private async ValueTask SendToPeerSlowAsync(IDatagramSocket relay, ReadOnlyMemory<byte> payload, IPEndPoint peer)
    {
        try
        {
            await relay.SendToAsync(payload, peer);
            Metrics.Relayed(toPeer: true, payload.Length);
        }
        catch (Exception e) when (e is NetworkException or ObjectDisposedException
                                      or IOException or OperationCanceledException)
        {
            // a datagram lost
        }
    }

    private Task AcceptLoopAsync(IStreamListener listener, bool tls) =>
        StreamAcceptLoop.RunAsync(listener, connection => AdmitAsync(connection, tls),
            e => _logger.LogDebug(e, "accept on {Listener} failed", listener.LocalEndPoint),
            (c, e) => _logger.LogWarning(e, "stream client {Remote} failed", c.RemoteEndPoint), _stop.Token);

    /// <summary>The connection caps first: one over them is closed at once.</summary>
    private Task AdmitAsync(IStreamConnection connection, bool tls)
    {
        var admission = _tcpLimits.TryAdmit(connection.RemoteEndPoint.Address);
        if (admission != TcpAdmission.Admitted)
        {
            Metrics.ConnectionRejected(admission);
            return CloseQuietlyAsync(connection).AsTask();
        }

        return StreamLoopAsync(connection, tls);
    }

    private static async ValueTask CloseQuietlyAsync(IStreamConnection connection)
    {
        try
        {
            await connection.DisposeAsync();
        }
        catch (Exception e) when (e is IOException or NetworkException or ObjectDisposedException)
        {
            // it is gone either way
        }
    }

    /// <summary>One admitted TCP or TLS client: TLS handshake, then frames until the client closes, the framing
    /// breaks, or the watchdog (handshake window, idle timeout) ends it. Frees its slot when it ends.</summary>
    private async Task StreamLoopAsync(IStreamConnection connection, bool tls)
    {
        Stream stream = connection.Stream;
        SslStream? ssl = null;
        StreamClientLink? link = null;
        var buffer = ArrayPool<byte>.Shared.Rent(ClientBufferSize);
        var watchdog = new TcpConnectionWatchdog(_time, _options.TcpHandshakeTimeout, _options.TcpIdleTimeout,
            Metrics.ConnectionTimedOut, _stop.Token);
        var token = watchdog.Token;
        try
        {
            if (tls)
            {
                ssl = new SslStream(stream, leaveInnerStreamOpen: true);
                await ssl.AuthenticateAsServerAsync(TlsSetup.ServerOptions(_options.Certificate!), token);
                stream = ssl;
            }

            link = new StreamClientLink(stream, connection.RemoteEndPoint, connection.LocalEndPoint, watchdog);
            var filled = 0;
            while (!token.IsCancellationRequested)
            {
                var n = await stream.ReadAsync(buffer.AsMemory(filled, ClientBufferSize - filled), token);
                if (n == 0)
                {
                    return;
                }

                filled += n;
                var start = 0;
                while (true)
                {
                    var pending = buffer.AsMemory(start, filled - start);
                    if (!StunFraming.TryGetFrameLength(pending.Span, out var frameLength))
                    {
                        Metrics.Dropped(DropReason.Malformed);
                        return; // not STUN or ChannelData: the stream has lost its framing
                    }

                    if (frameLength == 0 || frameLength > pending.Length)
                    {
                        break;
                    }

                    await HandleStreamFrameAsync(link, pending[..frameLength]);
                    start += frameLength;
                }

                if (start > 0)
                {
                    buffer.AsSpan(start, filled - start).CopyTo(buffer);
                    filled -= start;
                }
            }
        }
#pragma warning disable CA1031 // a client's stream failing ends that client only
        catch (Exception e)
#pragma warning restore CA1031
        {
            if (e is not (IOException or OperationCanceledException or ObjectDisposedException
                or System.Security.Authentication.AuthenticationException))
            {
                _logger.LogWarning(e, "stream client {Remote} failed", connection.RemoteEndPoint);
            }
        }
        finally
        {
            await EndStreamAsync(connection, link, ssl, watchdog, buffer);
        }
    }

    /// <summary>Deletes the connection's allocation, closes it and frees its slot; never throws.</summary>
    private async Task EndStreamAsync(IStreamConnection connection, StreamClientLink? link, SslStream? ssl,
        TcpConnectionWatchdog watchdog, byte[] buffer)
    {
        try
        {
            if (link is not null && _streamAllocations.TryRemove(link, out var allocation))
            {
                Delete(allocation, "its TCP/TLS connection closed");
            }

            link?.Dispose();
            if (ssl is not null)
            {
                await ssl.DisposeAsync();
            }
        }
#pragma warning disable CA1031 // the slot must be freed whatever closing does
        catch (Exception e)
#pragma warning restore CA1031
        {
            _logger.LogWarning(e, "closing stream client {Remote} failed", connection.RemoteEndPoint);
        }
        finally
        {
            // Whatever closing did: a watchdog left running would count a timeout for a closed connection and
            // keep its registration on the server's shutdown token until the server stops.
            watchdog.Dispose();
            ArrayPool<byte>.Shared.Return(buffer);
            _tcpLimits.Release(connection.RemoteEndPoint.Address); // before the close: a client that saw it may reconnect
            await CloseQuietlyAsync(connection);
        }
    }

    private async ValueTask HandleStreamFrameAsync(StreamClientLink link, ReadOnlyMemory<byte> frame)
    {
        try
        {
            _streamAllocations.TryGetValue(link, out var allocation);
            if (StunFraming.IsChannelData(frame.Span))
            {
                if (allocation is null)
                {
                    Metrics.Dropped(DropReason.NoAllocation);
                    return;
                }

                await RelayChannelDataAsync(allocation, frame);
                return;
            }

            await HandleStunAsync(frame, link, allocation, -1);
        }
#pragma warning disable CA1031 // untrusted input: nothing a frame does may end the connection
        catch (Exception e)
#pragma warning restore CA1031
        {
            _logger.LogWarning(e, "frame from {Remote} failed", link.Remote);
        }
    }

    // ---------------------------------------------------------------- relay side

    /// <summary>Datagrams from peers to one relay socket (RFC 8656 sections 10.3 and 12.5): permission check,
    /// then ChannelData if a channel is bound, else a Data indication, written in front of the payload in the
    /// same buffer.</summary>
    private async Task RelayLoopAsync(Allocation allocation, IDatagramSocket relay)
    {
        var max = _options.MaxRelayPayload;
        var buffer = GC.AllocateUninitializedArray<byte>(Headroom + max + 1 + 4);
        var token = allocation.Stop.Token;
        var stream = allocation.Client.IsStream;
        while (!token.IsCancellationRequested)
        {
            ReceivedDatagram d;
            try
            {
                d = await relay.ReceiveFromAsync(buffer.AsMemory(Headroom, max + 1), token);
            }
            catch (Exception e) when (e is ObjectDisposedException or OperationCanceledException)
            {
                return;
            }
            catch (Exception e) when (e is NetworkException or IOException)
            {
                continue;
            }

            try
            {
                if (!TryFrameFromPeer(allocation, buffer, d, stream, out var frame, out var closed))
                {
                    if (closed)
                    {
                        return;
                    }

                    continue;
                }

                await allocation.Client.SendAsync(frame);
                Metrics.Relayed(toPeer: false, d.Length);
            }
#pragma warning disable CA1031 // nothing a peer sends may end the relay loop
            catch (Exception e)
#pragma warning restore CA1031
            {
                _logger.LogWarning(e, "relay datagram from {Peer} failed", d.RemoteEndPoint);
            }
        }
    }

    /// <summary>A datagram from a peer, received at <see cref="Headroom"/> of <paramref name="buffer"/>: checks
    /// it (size, permission, bandwidth) and frames it for the client in place, as ChannelData when a channel is
    /// bound, else as a Data indication. False if it is dropped (<paramref name="closed"/>: the allocation
    /// ended).</summary>
    private bool TryFrameFromPeer(Allocation allocation, byte[] buffer, ReceivedDatagram d, bool stream,
        out ReadOnlyMemory<byte> frame, out bool closed)
    {
        frame = default;
        closed = false;
        if (d.Length > _options.MaxRelayPayload)
        {
            Metrics.Dropped(DropReason.TooLarge);
            return false;
        }

        var now = _time.GetTimestamp();
        ushort channel;
        lock (allocation.Gate)
        {
            if (allocation.Closed)
            {
                closed = true;
                return false;
            }

            if (!allocation.Bindings.HasPermission(d.RemoteEndPoint.Address, now))
            {
                Metrics.Dropped(DropReason.NoPermission);
                return false;
            }

            if (!allocation.Bucket.TryTake(d.Length, now))
            {
                Metrics.Dropped(DropReason.Bandwidth);
                return false;
            }

            channel = allocation.Bindings.ChannelOf(d.RemoteEndPoint, now);
        }

        if (channel != 0)
        {
            var start = Headroom - 4;
            BinaryPrimitives.WriteUInt16BigEndian(buffer.AsSpan(start), channel);
            BinaryPrimitives.WriteUInt16BigEndian(buffer.AsSpan(start + 2), (ushort)d.Length);
            var total = 4 + d.Length;
            if (stream)
            {
                var padded = (total + 3) & ~3;
                buffer.AsSpan(start + total, padded - total).Clear();
                total = padded;
            }

            frame = buffer.AsMemory(start, total);
        }
        else
        {
            frame = WriteDataIndication(buffer, d.Length, d.RemoteEndPoint);
        }

        return true;
    }

    /// <summary>Writes a Data indication whose DATA value is the payload already at <see cref="Headroom"/>.</summary>
    private static ReadOnlyMemory<byte> WriteDataIndication(byte[] buffer, int length, IPEndPoint peer)
    {
        var address = StunAddress.FromEndPoint(peer);
        var start = Headroom - (StunMessageReader.HeaderLength + 4 + address.EncodedLength + 4);
        Span<byte> id = stackalloc byte[StunTransactionId.Size];
        Random.Shared.NextBytes(id);
        var writer = new StunMessageWriter(buffer.AsSpan(start), TurnMethods.Data, StunClass.Indication,
            StunTransactionId.Read(id));
        writer.AddXorAddress(TurnAttributeType.XorPeerAddress, address);
        writer.Reserve(TurnAttributeType.Data, length); // the payload is already in place
        return buffer.AsMemory(start, writer.Length);
    }

    // ---------------------------------------------------------------- lifetimes

    private void ExpireDue()
    {
        try
        {
            if (_handler.Expire() is { } due)
            {
                foreach (var a in due)
                {
                    RemoveFromTables(a);
                    CloseRelays(a);
                }
            }
        }
#pragma warning disable CA1031 // a timer callback must not crash the process
        catch (Exception e)
#pragma warning restore CA1031
        {
            _logger.LogError(e, "expiry tick failed");
        }
    }

    private void RemoveFromTables(Allocation a)
    {
        if (a.Client is StreamClientLink s)
        {
            _streamAllocations.TryRemove(s, out _);
            return;
        }

        foreach (var table in _udpAllocations)
        {
            if (table.TryGetValue(a.Client.Remote, out var found) && ReferenceEquals(found, a))
            {
                table.TryRemove(new KeyValuePair<IPEndPoint, Allocation>(a.Client.Remote, a));
            }
        }
    }

    /// <summary>Ends an allocation: the handler gives back its ports and quota (idempotent, logged with
    /// <paramref name="reason"/>), then its relays are closed.</summary>
    private void Delete(Allocation a, string? reason = null)
    {
        _handler.Release(a, reason);
        CloseRelays(a);
    }

    /// <summary>Closes an ended allocation's relays: out of the poller, loops stopped, sockets closed. Once.</summary>
    private void CloseRelays(Allocation a)
    {
        if (Interlocked.Exchange(ref a.EdgeClosed, 1) != 0)
        {
            return;
        }

        a.Stop.Cancel();
        Unpoll(a);
        if (a.Client is StreamClientLink stream)
        {
            stream.Watchdog.EndLiveState(); // the connection is idle from now unless it allocates again
        }

        a.RelayV4?.Dispose();
        a.RelayV6?.Dispose();
        a.Stop.Dispose();
    }

    /// <summary>Begins an operator's graceful stop: new allocations are refused with 508 (Insufficient Capacity,
    /// so a client tries another server) while the live ones keep relaying, refreshing and deleting themselves,
    /// until none is left or <paramref name="timeout"/> passes on the server's clock. Returns how many are left
    /// (<see cref="DisposeAsync"/> then releases them).</summary>
    public async Task<int> DrainAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        if (_handler.Ledger.BeginDrain() == 0)
        {
            return 0;
        }

        if (timeout > TimeSpan.Zero)
        {
            try
            {
                await _handler.Ledger.Drained.WaitAsync(timeout, _time, cancellationToken);
            }
            catch (TimeoutException)
            {
            }
        }

        return AllocationCount;
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _stop.Cancel();
        foreach (var p in _pollers)
        {
            p.Wake();
        }

        if (_timer is not null)
        {
            await _timer.DisposeAsync();
        }

        foreach (var s in _udp)
        {
            s.Dispose();
        }

        foreach (var l in _listeners)
        {
            await l.DisposeAsync();
        }

        foreach (var table in _udpAllocations)
        {
            foreach (var (_, a) in table)
            {
                Delete(a, "server stopping");
            }

            table.Clear();
        }

        foreach (var (_, a) in _streamAllocations)
        {
            Delete(a, "server stopping");
        }

        try
        {
            await Task.WhenAll(_loops);
        }
        catch (OperationCanceledException)
        {
        }

        foreach (var p in _pollers)
        {
            p.Dispose();
        }

        Metrics.Dispose();
        _stop.Dispose();
    }
}
