using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Text;
using System.Threading.Channels;
using NatKit.Net;
using NatKit.Stun;
using NatKit.Stun.Client;
using NatKit.Turn.Auth;
using NatKit.Turn.Protocol;

namespace NatKit.Turn.Client;

/// <summary>How the client reaches the TURN server.</summary>
public enum TurnTransport
{
    Udp,
    Tcp,
    Tls,
}

/// <summary>What a <see cref="TurnClient"/> is told.</summary>
public sealed record TurnClientOptions(IPEndPoint Server, string Username, string Password)
{
    public TurnTransport Transport { get; init; } = TurnTransport.Udp;

    /// <summary>Local endpoint to bind (UDP) or connect from (TCP); default: loopback for a loopback server, else
    /// the wildcard of the server's family.</summary>
    public IPEndPoint? LocalEndPoint { get; init; }

    /// <summary>TLS: the name to validate the server's certificate against, and the validation callback
    /// (tests use self-signed certificates).</summary>
    public string? TlsHost { get; init; }

    public RemoteCertificateValidationCallback? CertificateValidation { get; init; }

    /// <summary>REQUESTED-ADDRESS-FAMILY: <see cref="AddressFamily.InterNetworkV6"/> for an IPv6 relay.</summary>
    public AddressFamily RelayFamily { get; init; } = AddressFamily.InterNetwork;

    /// <summary>ADDITIONAL-ADDRESS-FAMILY: ask for an IPv6 relay as well (RFC 8656 dual allocation).</summary>
    public bool AlsoIPv6 { get; init; }

    /// <summary>LIFETIME to ask for; null for the server's default.</summary>
    public TimeSpan? Lifetime { get; init; }

    /// <summary>Use MESSAGE-INTEGRITY-SHA256 when the server offers it (RFC 8489); false keeps MD5/SHA-1.</summary>
    public bool PreferSha256 { get; init; } = true;

    /// <summary>RFC 8489 section 6.2.1 retransmission (UDP, <see cref="StunRetransmission"/>): initial RTO and
    /// the number of sends.</summary>
    public TimeSpan InitialRto { get; init; } = TimeSpan.FromMilliseconds(500);

    public int MaxTransmissions { get; init; } = StunRetransmission.DefaultRequestCount;

    /// <summary>Over streams: how long to wait for a response.</summary>
    public TimeSpan StreamTimeout { get; init; } = TimeSpan.FromSeconds(39.5);

    /// <summary>Refresh the allocation, permissions and channels before they expire.</summary>
    public bool KeepAlive { get; init; } = true;

    /// <summary>Also send EVEN-PORT (with the R bit when <see cref="ReservePair"/>).</summary>
    public bool EvenPort { get; init; }

    public bool ReservePair { get; init; }

    /// <summary>RESERVATION-TOKEN from an earlier allocation's <see cref="TurnClient.ReservationToken"/>.</summary>
    public ulong? ReservationToken { get; init; }

    public bool DontFragment { get; init; }

    /// <summary>Bytes the receive loop holds for one packet from the server (the largest relayed datagram plus a
    /// header). Smaller saves memory when holding many allocations.</summary>
    public int ReceiveBufferSize { get; init; } = 65536 + 64;
}

/// <summary>A TURN error response, with its code and reason.</summary>
public sealed class TurnException : Exception
{
    public TurnException(int code, string reason)
        : base($"TURN error {code}: {reason}")
    {
        Code = code;
    }

    public TurnException()
        : this(0, "error")
    {
    }

    public TurnException(string message)
        : base(message)
    {
    }

    public TurnException(string message, Exception inner)
        : base(message, inner)
    {
    }

    public int Code { get; }
}

/// <summary>Data relayed from a peer: how many bytes landed in the caller's buffer and from whom.</summary>
public readonly record struct TurnReceived(int Length, IPEndPoint Peer);

/// <summary>
/// A TURN client holding one allocation (RFC 8656 section 7-12): allocate (answering 401 and 438 itself),
/// refresh, permissions, channels, and sending and receiving through the relay with Send/Data indications or
/// ChannelData. Runs on any <see cref="INetwork"/> and its TimeProvider, so it works in the lab; it is what the
/// traversal code falls back to when hole punching fails.
/// </summary>
public sealed class TurnClient : IAsyncDisposable
{
    private readonly INetwork _network;
    private readonly TurnClientOptions _options;
    private readonly TimeProvider _time;
    private readonly IDatagramSocket? _udp;
    private readonly IStreamConnection? _connection;
    private readonly Stream? _stream;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly ConcurrentDictionary<StunTransactionId, TaskCompletionSource<byte[]>> _pending = new();
    private readonly Channel<Packet> _received = Channel.CreateBounded<Packet>(new BoundedChannelOptions(4096)
    {
        FullMode = BoundedChannelFullMode.DropWrite,
        SingleReader = false,
    });
    private readonly ConcurrentDictionary<IPEndPoint, ushort> _channels = new();
    private readonly ConcurrentDictionary<ushort, IPEndPoint> _channelPeers = new();
    private readonly ConcurrentDictionary<IPAddress, byte> _permissions = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _authGate = new();
    private Task? _receiveLoop;
    private int _receiveEnded; // 1 once the receive loop is gone: no response can arrive any more
    private Task? _keepAlive;
    private string? _realm;
    private string? _nonce;
    private byte[]? _passwordAlgorithms;
    private StunPasswordAlgorithm _algorithm = StunPasswordAlgorithm.Md5;
    private byte[]? _key;
    private int _nextChannel = TurnLimits.FirstChannel;

    private TurnClient(INetwork network, TurnClientOptions options, IDatagramSocket? udp,
        IStreamConnection? connection, Stream? stream)
    {
        _network = network;
        _options = options;
        _time = network.TimeProvider;
        _udp = udp;
        _connection = connection;
        _stream = stream;
    }

    /// <summary>The relayed transport address (IPv4, or IPv6 when that was asked for).</summary>
    public IPEndPoint RelayedEndPoint { get; private set; } = new(IPAddress.None, 0);

    /// <summary>The IPv6 relayed address of a dual allocation, if any.</summary>
    public IPEndPoint? RelayedEndPointV6 { get; private set; }

    /// <summary>The client's address as the server saw it (XOR-MAPPED-ADDRESS).</summary>
    public IPEndPoint MappedEndPoint { get; private set; } = new(IPAddress.None, 0);

    public TimeSpan Lifetime { get; private set; }

    /// <summary>RESERVATION-TOKEN the server returned for EVEN-PORT with R.</summary>
    public ulong? ReservationToken { get; private set; }

    /// <summary>The local endpoint the client talks to the server from.</summary>
    public IPEndPoint LocalEndPoint => _udp?.LocalEndPoint ?? _connection!.LocalEndPoint;

    /// <summary>Connects (for streams), allocates, and starts receiving.</summary>
    /// <exception cref="TurnException">The server refused (the code says why).</exception>
    /// <exception cref="TimeoutException">No answer.</exception>
    public static async Task<TurnClient> AllocateAsync(INetwork network, TurnClientOptions options,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(network);
        ArgumentNullException.ThrowIfNull(options);
        var local = options.LocalEndPoint ?? new IPEndPoint(
            IPAddress.IsLoopback(options.Server.Address)
                ? options.Server.AddressFamily == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Loopback : IPAddress.Loopback
                : options.Server.AddressFamily == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any, 0);
        TurnClient client;
        if (options.Transport == TurnTransport.Udp)
        {
            client = new TurnClient(network, options, await network.BindUdpAsync(local, cancellationToken), null, null);
        }
        else
        {
            var connection = await network.ConnectTcpAsync(options.Server, options.LocalEndPoint, cancellationToken);
            Stream stream = connection.Stream;
            if (options.Transport == TurnTransport.Tls)
            {
                var ssl = new SslStream(stream, false, options.CertificateValidation);
                await ssl.AuthenticateAsClientAsync(options.TlsHost ?? options.Server.Address.ToString());
                stream = ssl;
            }

            client = new TurnClient(network, options, null, connection, stream);
        }

        try
        {
            client._receiveLoop = client.ReceiveLoopAsync();
            await client.DoAllocateAsync(cancellationToken);
            if (options.KeepAlive)
            {
                client._keepAlive = client.KeepAliveAsync();
            }

            return client;
        }
        catch
        {
            await client.DisposeAsync();
            throw;
        }
    }

    private async Task DoAllocateAsync(CancellationToken cancellationToken)
    {
        var response = await RequestAsync(TurnMethods.Allocate, (ref StunMessageWriter w) =>
        {
            w.AddUInt32(TurnAttributeType.RequestedTransport, (uint)TurnLimits.TransportUdp << 24);
            if (_options.Lifetime is { } lifetime)
            {
                w.AddUInt32(TurnAttributeType.Lifetime, (uint)lifetime.TotalSeconds);
            }

            if (_options.RelayFamily == AddressFamily.InterNetworkV6)
            {
                w.AddUInt32(TurnAttributeType.RequestedAddressFamily, (uint)StunAddress.FamilyIPv6 << 24);
            }

            if (_options.AlsoIPv6)
            {
                w.AddUInt32(TurnAttributeType.AdditionalAddressFamily, (uint)StunAddress.FamilyIPv6 << 24);
            }

            if (_options.EvenPort)
            {
                w.Reserve(TurnAttributeType.EvenPort, 1)[0] = _options.ReservePair ? (byte)0x80 : (byte)0;
            }

            if (_options.ReservationToken is { } token)
            {
                BinaryPrimitives.WriteUInt64BigEndian(w.Reserve(TurnAttributeType.ReservationToken, 8), token);
            }

            if (_options.DontFragment)
            {
                w.Reserve(TurnAttributeType.DontFragment, 0);
            }
        }, cancellationToken);

        StunMessageReader.TryParse(response, out var r);
        foreach (var a in r.Attributes)
        {
            if (a.Type == TurnAttributeType.XorRelayedAddress &&
                StunAddress.TryDecodeXor(a.Value, r.TransactionId, out var relayed))
            {
                var ep = relayed.ToEndPoint();
                if (RelayedEndPoint.Port == 0)
                {
                    RelayedEndPoint = ep;
                }
                else if (relayed.Family == StunAddress.FamilyIPv6)
                {
                    RelayedEndPointV6 = ep;
                }
            }
        }

        if (r.TryGetXorAddress(StunAttributeType.XorMappedAddress, out var mapped))
        {
            MappedEndPoint = mapped.ToEndPoint();
        }

        Lifetime = r.TryGetUInt32(TurnAttributeType.Lifetime, out var seconds)
            ? TimeSpan.FromSeconds(seconds)
            : TurnLimits.DefaultAllocationLifetime;
        if (r.TryGet(TurnAttributeType.ReservationToken, out var token) && token.Length == 8)
        {
            ReservationToken = BinaryPrimitives.ReadUInt64BigEndian(token);
        }
    }

    /// <summary>Refreshes the allocation; <see cref="TimeSpan.Zero"/> deletes it.</summary>
    public async Task RefreshAsync(TimeSpan? lifetime = null, CancellationToken cancellationToken = default)
    {
        var response = await RequestAsync(TurnMethods.Refresh, (ref StunMessageWriter w) =>
        {
            if (lifetime is { } l)
            {
                w.AddUInt32(TurnAttributeType.Lifetime, (uint)l.TotalSeconds);
            }
        }, cancellationToken);
        StunMessageReader.TryParse(response, out var r);
        if (r.TryGetUInt32(TurnAttributeType.Lifetime, out var seconds))
        {
            Lifetime = TimeSpan.FromSeconds(seconds);
        }
    }

    /// <summary>Installs (or refreshes) permissions for the peers' addresses (RFC 8656 section 9).</summary>
    public async Task CreatePermissionAsync(IReadOnlyList<IPAddress> peers, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(peers);
        await RequestAsync(TurnMethods.CreatePermission, (ref StunMessageWriter w) =>
        {
            foreach (var p in peers)
            {
                w.AddXorAddress(TurnAttributeType.XorPeerAddress, StunAddress.FromAddress(p, 0));
            }
        }, cancellationToken);
        foreach (var p in peers)
        {
            _permissions[p] = 0;
        }
    }

    public Task CreatePermissionAsync(IPAddress peer, CancellationToken cancellationToken = default) =>
        CreatePermissionAsync([peer], cancellationToken);

    /// <summary>Binds a channel to <paramref name="peer"/> (or refreshes the existing one); returns its number.</summary>
    public async Task<ushort> BindChannelAsync(IPEndPoint peer, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(peer);
        if (!_channels.TryGetValue(peer, out var number))
        {
            number = (ushort)Interlocked.Increment(ref _nextChannel);
            number--;
            if (number > TurnLimits.LastChannel)
            {
                throw new InvalidOperationException("no channel numbers left");
            }
        }

        await BindChannelAsync(peer, number, cancellationToken);
        return number;
    }

    /// <summary>Binds a given channel number (tests use this to try the rules).</summary>
    public async Task BindChannelAsync(IPEndPoint peer, ushort number, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(peer);
        await RequestAsync(TurnMethods.ChannelBind, (ref StunMessageWriter w) =>
        {
            w.AddUInt32(TurnAttributeType.ChannelNumber, (uint)number << 16);
            w.AddXorAddress(TurnAttributeType.XorPeerAddress, StunAddress.FromEndPoint(peer));
        }, cancellationToken);
        _channels[peer] = number;
        _channelPeers[number] = peer;
        _permissions[peer.Address] = 0;
    }

    /// <summary>Sends to a peer through the relay: ChannelData when a channel is bound, else a Send indication.</summary>
    public async ValueTask SendAsync(ReadOnlyMemory<byte> data, IPEndPoint peer,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(peer);
        var stream = _stream is not null;
        var buffer = ArrayPool<byte>.Shared.Rent(data.Length + 64);
        try
        {
            int length;
            if (_channels.TryGetValue(peer, out var number))
            {
                BinaryPrimitives.WriteUInt16BigEndian(buffer, number);
                BinaryPrimitives.WriteUInt16BigEndian(buffer.AsSpan(2), (ushort)data.Length);
                data.Span.CopyTo(buffer.AsSpan(4));
                length = 4 + data.Length;
                if (stream)
                {
                    var padded = (length + 3) & ~3;
                    buffer.AsSpan(length, padded - length).Clear();
                    length = padded;
                }
            }
            else
            {
                var w = new StunMessageWriter(buffer, TurnMethods.Send, StunClass.Indication,
                    StunTransactionId.NewRandom());
                w.AddXorAddress(TurnAttributeType.XorPeerAddress, StunAddress.FromEndPoint(peer));
                if (_options.DontFragment)
                {
                    w.Reserve(TurnAttributeType.DontFragment, 0);
                }

                w.Add(TurnAttributeType.Data, data.Span);
                length = w.Length;
            }

            await WriteAsync(buffer.AsMemory(0, length), cancellationToken);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Waits for data from a peer (relayed by the server).</summary>
    public async ValueTask<TurnReceived> ReceiveAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var packet = await _received.Reader.ReadAsync(cancellationToken);
        try
        {
            var n = Math.Min(packet.Length, buffer.Length);
            packet.Buffer.AsSpan(0, n).CopyTo(buffer.Span);
            return new TurnReceived(n, packet.Peer);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(packet.Buffer);
        }
    }

    // ---------------------------------------------------------------- transactions

    private delegate void AttributeWriter(ref StunMessageWriter writer);

    /// <summary>Sends a request with credentials, answering 401 (first contact) and 438 (stale nonce) by retrying
    /// with what the server sent. Returns the success response; throws <see cref="TurnException"/> on an error.</summary>
    private async Task<byte[]> RequestAsync(ushort method, AttributeWriter attributes,
        CancellationToken cancellationToken)
    {
        for (var attempt = 0; ; attempt++)
        {
            var id = StunTransactionId.NewRandom();
            var request = Build(method, id, attributes);
            var response = await TransactAsync(id, request, cancellationToken);
            StunMessageReader.TryParse(response, out var r);
            if (r.Class == StunClass.SuccessResponse)
            {
                if (_key is not null && !Verify(r))
                {
                    throw new TurnException(0, "response failed MESSAGE-INTEGRITY");
                }

                return response;
            }

            r.TryGetErrorCode(out var code, out var reason);
            if ((code == StunErrorCode.Unauthenticated && (_key is null || attempt == 0) && attempt < 2) ||
                (code == StunErrorCode.StaleNonce && attempt < 3))
            {
                if (r.TryGet(StunAttributeType.Nonce, out var nonce) && r.TryGet(StunAttributeType.Realm, out var realm))
                {
                    Learn(r, Encoding.UTF8.GetString(realm), Encoding.UTF8.GetString(nonce));
                    continue;
                }
            }

            throw new TurnException(code, Encoding.UTF8.GetString(reason));
        }
    }

    private void Learn(StunMessageReader r, string realm, string nonce)
    {
        lock (_authGate)
        {
            _realm = realm;
            _nonce = nonce;
            var algorithm = StunPasswordAlgorithm.Md5;
            _passwordAlgorithms = null;
            if (r.TryGet(StunAttributeType.PasswordAlgorithms, out var list) &&
                nonce.StartsWith("obMatJos2", StringComparison.Ordinal))
            {
                _passwordAlgorithms = list.ToArray();
                for (var i = 0; i + 4 <= list.Length; i += 4 + ((BinaryPrimitives.ReadUInt16BigEndian(list[(i + 2)..]) + 3) & ~3))
                {
                    var a = (StunPasswordAlgorithm)BinaryPrimitives.ReadUInt16BigEndian(list[i..]);
                    if (a == StunPasswordAlgorithm.Sha256 && _options.PreferSha256)
                    {
                        algorithm = a;
                        break;
                    }

                    if (a == StunPasswordAlgorithm.Md5)
                    {
                        algorithm = a;
                        if (!_options.PreferSha256)
                        {
                            break;
                        }
                    }
                }
            }

            _algorithm = algorithm;
            _key = StunCredentials.LongTermKey(_options.Username, realm, _options.Password, algorithm);
        }
    }

    private byte[] Build(ushort method, StunTransactionId id, AttributeWriter attributes)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(1024);
        try
        {
            var w = new StunMessageWriter(buffer, method, StunClass.Request, id);
            attributes(ref w);
            lock (_authGate)
            {
                if (_key is not null)
                {
                    w.AddString(StunAttributeType.Username, _options.Username);
                    w.AddString(StunAttributeType.Realm, _realm);
                    w.AddString(StunAttributeType.Nonce, _nonce);
                    if (_passwordAlgorithms is not null)
                    {
                        w.AddPasswordAlgorithm(_algorithm);
                        w.Add(StunAttributeType.PasswordAlgorithms, _passwordAlgorithms);
                    }

                    if (_passwordAlgorithms is not null && _algorithm == StunPasswordAlgorithm.Sha256)
                    {
                        w.AddMessageIntegritySha256(_key);
                    }
                    else
                    {
                        w.AddMessageIntegrity(_key);
                    }
                }
            }

            w.AddFingerprint();
            return w.Written.ToArray();
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private bool Verify(StunMessageReader r)
    {
        byte[]? key;
        lock (_authGate)
        {
            key = _key;
        }

        if (key is null)
        {
            return true;
        }

        if (r.HasMessageIntegritySha256)
        {
            return r.VerifyMessageIntegritySha256(key);
        }

        return !r.HasMessageIntegrity || r.VerifyMessageIntegrity(key);
    }

    /// <summary>One request until its response: over UDP sent up to MaxTransmissions times with RFC 8489 section
    /// 6.2.1's doubling waits; over a stream sent once and given <see cref="TurnClientOptions.StreamTimeout"/>
    /// (Ti, 39.5 s; section 6.2.2 forbids retransmitting over a reliable transport).</summary>
    /// <remarks>The caller awaits the response's task alone: the receive loop (the response), a timer on the
    /// client's TimeProvider (retransmissions and the timeout) and cancellation all complete that one task. Not
    /// <c>Task.WhenAny(response, delay)</c>: the response's task runs its continuations asynchronously, and
    /// WhenAny's completion is then queued to the thread pool, off an in-memory lab's loop, so the lab's virtual
    /// clock could fire the delay first: over TCP every transaction timed out, over UDP each one cost a
    /// retransmission and one RTO of virtual time.</remarks>
    private async Task<byte[]> TransactAsync(StunTransactionId id, byte[] request, CancellationToken cancellationToken)
    {
        using var transaction = new Transaction(this, request);
        _pending[id] = transaction.Done;
        try
        {
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stop.Token);
            using var cancel = linked.Token.Register(
                static s => ((TaskCompletionSource<byte[]>)s!).TrySetCanceled(), transaction.Done);
            await WriteAsync(request, linked.Token);
            transaction.Sent(linked.Token);
            if (Volatile.Read(ref _receiveEnded) == 1)
            {
                // The loop failed the requests it saw as it ended; this one came after (a write to a stream the
                // server has closed can still succeed): fail it too, rather than after the whole timeout.
                transaction.Done.TrySetException(ConnectionClosed());
            }

            return await transaction.Done.Task;
        }
        finally
        {
            _pending.TryRemove(id, out _);
        }
    }

    /// <summary>The timer half of <see cref="TransactAsync"/>: resends over UDP, gives up when the waits are over.</summary>
    private sealed class Transaction : IDisposable
    {
        private readonly TurnClient _client;
        private readonly byte[] _request;
        private readonly ITimer _timer;
        private CancellationToken _token;
        private int _sent;

        public Transaction(TurnClient client, byte[] request)
        {
            _client = client;
            _request = request;
            _timer = client._time.CreateTimer(static s => ((Transaction)s!).OnTimer(), this,
                Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        }

        public TaskCompletionSource<byte[]> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>The first send is out: start the first wait.</summary>
        public void Sent(CancellationToken token)
        {
            _token = token;
            _sent = 1;
            _timer.Change(Wait(0), Timeout.InfiniteTimeSpan);
        }

        private TimeSpan Wait(int afterSend) => _client._udp is null
            ? _client._options.StreamTimeout
            : StunRetransmission.WaitAfter(afterSend, _client._options.MaxTransmissions, _client._options.InitialRto);

        private void OnTimer()
        {
            if (Done.Task.IsCompleted)
            {
                return;
            }

            if (_client._udp is null || _sent >= _client._options.MaxTransmissions)
            {
                Done.TrySetException(new TimeoutException($"no answer from TURN server {_client._options.Server}"));
                return;
            }

            var wait = Wait(_sent);
            _sent++;
            _timer.Change(wait, Timeout.InfiniteTimeSpan);
            _ = ResendAsync();
        }

        private async Task ResendAsync()
        {
            try
            {
                await _client.WriteAsync(_request, _token);
            }
#pragma warning disable CA1031 // not swallowed: the transaction fails with it
            catch (Exception e)
#pragma warning restore CA1031
            {
                Done.TrySetException(e);
            }
        }

        public void Dispose() => _timer.Dispose();
    }

    private async ValueTask WriteAsync(ReadOnlyMemory<byte> frame, CancellationToken cancellationToken)
    {
        if (_udp is not null)
        {
            await _udp.SendToAsync(frame, _options.Server, cancellationToken);
            return;
        }

        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            await _stream!.WriteAsync(frame, cancellationToken);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    // ---------------------------------------------------------------- receiving

    private async Task ReceiveLoopAsync()
    {
        var buffer = new byte[Math.Max(_options.ReceiveBufferSize, 1024)];
        var token = _stop.Token;
        var filled = 0;
        while (!token.IsCancellationRequested)
        {
            try
            {
                if (_udp is not null)
                {
                    var d = await _udp.ReceiveFromAsync(buffer, token);
                    if (d.RemoteEndPoint.Equals(_options.Server))
                    {
                        Dispatch(buffer.AsSpan(0, d.Length));
                    }

                    continue;
                }

                var n = await _stream!.ReadAsync(buffer.AsMemory(filled), token);
                if (n == 0)
                {
                    break;
                }

                filled += n;
                var start = 0;
                while (StunFraming.TryGetFrameLength(buffer.AsSpan(start, filled - start), out var frame) &&
                       frame > 0 && frame <= filled - start)
                {
                    Dispatch(buffer.AsSpan(start, frame));
                    start += frame;
                }

                if (!StunFraming.TryGetFrameLength(buffer.AsSpan(start, filled - start), out _))
                {
                    break; // framing lost
                }

                buffer.AsSpan(start, filled - start).CopyTo(buffer);
                filled -= start;
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                break;
            }
            catch (Exception e) when (e is NetworkException or SocketException or IOException)
            {
                if (_udp is null)
                {
                    break;
                }
            }
        }

        _received.Writer.TryComplete();
        Interlocked.Exchange(ref _receiveEnded, 1); // before the sweep: a request registered after it sees the flag
        foreach (var (_, p) in _pending)
        {
            p.TrySetException(ConnectionClosed());
        }
    }

    private static IOException ConnectionClosed() => new("connection to the TURN server closed");

    private void Dispatch(ReadOnlySpan<byte> data)
    {
        if (StunFraming.IsChannelData(data))
        {
            var number = BinaryPrimitives.ReadUInt16BigEndian(data);
            var length = BinaryPrimitives.ReadUInt16BigEndian(data[2..]);
            if (length <= data.Length - 4 && _channelPeers.TryGetValue(number, out var peer))
            {
                Deliver(data.Slice(4, length), peer);
            }

            return;
        }

        if (!StunMessageReader.TryParse(data, out var r))
        {
            return;
        }

        if (r.Class == StunClass.Indication)
        {
            if (r.Method == TurnMethods.Data && r.TryGetXorAddress(TurnAttributeType.XorPeerAddress, out var from) &&
                r.TryGet(TurnAttributeType.Data, out var payload))
            {
                Deliver(payload, from.ToEndPoint());
            }

            return;
        }

        if (r.Class is StunClass.SuccessResponse or StunClass.ErrorResponse &&
            _pending.TryRemove(r.TransactionId, out var waiter))
        {
            waiter.TrySetResult(data.ToArray());
        }
    }

    private void Deliver(ReadOnlySpan<byte> payload, IPEndPoint peer)
    {
        var copy = ArrayPool<byte>.Shared.Rent(payload.Length);
        payload.CopyTo(copy);
        if (!_received.Writer.TryWrite(new Packet(copy, payload.Length, peer)))
        {
            ArrayPool<byte>.Shared.Return(copy);
        }
    }

    // ---------------------------------------------------------------- keep-alive

    /// <summary>Refreshes before expiry: the allocation a minute before its lifetime ends, permissions every
    /// four minutes (they last five), channels every nine (they last ten).</summary>
    private async Task KeepAliveAsync()
    {
        var token = _stop.Token;
        var sincePermissions = TimeSpan.Zero;
        var sinceChannels = TimeSpan.Zero;
        var sinceRefresh = TimeSpan.Zero;
        var step = TimeSpan.FromSeconds(30);
        try
        {
            while (!token.IsCancellationRequested)
            {
                await Task.Delay(step, _time, token);
                sincePermissions += step;
                sinceChannels += step;
                sinceRefresh += step;
                try
                {
                    if (sinceRefresh >= Lifetime - TimeSpan.FromSeconds(60))
                    {
                        sinceRefresh = TimeSpan.Zero;
                        await RefreshAsync(_options.Lifetime, token);
                    }

                    if (sinceChannels >= TimeSpan.FromMinutes(9))
                    {
                        sinceChannels = TimeSpan.Zero;
                        foreach (var (peer, number) in _channels)
                        {
                            await BindChannelAsync(peer, number, token);
                        }
                    }

                    if (sincePermissions >= TimeSpan.FromMinutes(4))
                    {
                        sincePermissions = TimeSpan.Zero;
                        var peers = _permissions.Keys.ToList();
                        if (peers.Count > 0)
                        {
                            await CreatePermissionAsync(peers, token);
                        }
                    }
                }
                catch (Exception e) when (e is TurnException or TimeoutException or IOException or NetworkException)
                {
                    // try again next step
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_stop.IsCancellationRequested)
        {
            return;
        }

        _stop.Cancel();
        _udp?.Dispose();
        if (_stream is not null)
        {
            await _stream.DisposeAsync();
        }

        if (_connection is not null)
        {
            await _connection.DisposeAsync();
        }

        foreach (var t in new[] { _receiveLoop, _keepAlive })
        {
            if (t is not null)
            {
                try
                {
                    await t;
                }
                catch (OperationCanceledException)
                {
                }
            }
        }

        _stop.Dispose();
        _writeLock.Dispose();
    }

    /// <summary>Deletes the allocation on the server (Refresh with LIFETIME 0), then closes.</summary>
    public async Task DeallocateAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            await RefreshAsync(TimeSpan.Zero, cancellationToken);
        }
        finally
        {
            await DisposeAsync();
        }
    }

    private readonly record struct Packet(byte[] Buffer, int Length, IPEndPoint Peer);
}
