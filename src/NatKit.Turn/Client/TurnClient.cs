using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Text;
using NatKit.Net;
using NatKit.Stun;
using NatKit.Stun.Client;
using NatKit.Stun.Transactions;
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
    /// header). Smaller saves memory when holding many allocations. Not used on a shared socket (its multiplexer
    /// has its own buffer).</summary>
    public int ReceiveBufferSize { get; init; } = 65536 + 64;

    /// <summary>Relayed datagrams held for the reader (<see cref="TurnClient.ReceiveAsync"/>,
    /// <see cref="TurnClient.Socket"/>); more are dropped and counted.</summary>
    public int ReceiveQueueCapacity { get; init; } = 4096;

    /// <summary>The UDP retransmission schedule as a transaction policy; over streams, sent once and given
    /// <see cref="StreamTimeout"/>.</summary>
    internal StunRetransmitPolicy Policy => Transport == TurnTransport.Udp
        ? StunRetransmitPolicy.Udp(InitialRto, MaxTransmissions)
        : StunRetransmitPolicy.Reliable(StreamTimeout);
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
/// <remarks>
/// <para>Over UDP the client never reads a socket itself (pion's <c>HandleInbound</c> shape): it runs on a
/// <see cref="DatagramMultiplexer"/>, either one of its own (<see cref="AllocateAsync(INetwork, TurnClientOptions,
/// CancellationToken)"/>) or a socket the caller shares with STUN, ICE checks and uTP
/// (<see cref="AllocateAsync(StunTransactions, TurnClientOptions, CancellationToken)"/>). Its requests are
/// transactions of the socket's <see cref="StunTransactions"/> table; the multiplexer pushes it the Data indications
/// and ChannelData the server sends (<see cref="HandleInbound"/>, a <see cref="DatagramClaim.BySource"/> receiver).
/// Over TCP and TLS the client reads its stream and hands responses to a table of its own.</para>
/// <para>The allocation is itself a datagram socket (<see cref="Socket"/>): send to a peer, receive from peers.</para>
/// </remarks>
public sealed class TurnClient : IAsyncDisposable, IDatagramReceiver
{
    private readonly INetwork _network;
    private readonly TurnClientOptions _options;
    private readonly TimeProvider _time;
    private readonly DatagramMultiplexer? _multiplexer;
    private readonly bool _ownsTransport;
    private readonly StunTransactions _transactions;
    private readonly IStreamConnection? _connection;
    private readonly Stream? _stream;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly DatagramQueue _received;
    private readonly ConcurrentDictionary<IPEndPoint, ushort> _channels = new();
    private readonly ConcurrentDictionary<ushort, IPEndPoint> _channelPeers = new();
    private readonly ConcurrentDictionary<IPAddress, byte> _permissions = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _authGate = new();
    private readonly DatagramPush _push = new(); // Socket's push: a relayed datagram is queued or pushed, never both
    private Task? _receiveLoop;
    private Task? _keepAlive;
    private string? _realm;
    private string? _nonce;
    private byte[]? _passwordAlgorithms;
    private StunPasswordAlgorithm _algorithm = StunPasswordAlgorithm.Md5;
    private byte[]? _key;
    private int _nextChannel = TurnLimits.FirstChannel;

    private TurnClient(INetwork network, TurnClientOptions options, StunTransactions transactions,
        bool ownsTransport, IStreamConnection? connection, Stream? stream)
    {
        _network = network;
        _options = options;
        _time = transactions.TimeProvider;
        _transactions = transactions;
        _multiplexer = transactions.Multiplexer;
        _ownsTransport = ownsTransport;
        _connection = connection;
        _stream = stream;
        _received = new DatagramQueue(Math.Max(1, options.ReceiveQueueCapacity), nameof(TurnClient));
        Socket = new TurnRelaySocket(this);
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
    public IPEndPoint LocalEndPoint => _multiplexer?.LocalEndPoint ?? _connection!.LocalEndPoint;

    /// <summary>The allocation as a datagram socket, so uTP and ICE checks run over the relay unchanged: a send to
    /// a peer goes as ChannelData when a channel is bound to it, else as a Send indication (installing the peer's
    /// permission first if the client has none); a receive returns the next datagram from a peer. Its
    /// <see cref="IDatagramSocket.LocalEndPoint"/> is <see cref="RelayedEndPoint"/>. It shares its datagrams with
    /// <see cref="ReceiveAsync"/> (one reader at a time); disposing it disposes the client. It is an
    /// <see cref="IPushDatagramSocket"/>: a reader that pushes (a <see cref="DatagramMultiplexer"/> over it, a
    /// traversal node's relay path) gets each datagram inline from the loop that unwrapped it, with no queue.</summary>
    public IDatagramSocket Socket { get; }

    /// <summary>Relayed datagrams dropped because the reader fell behind (<see cref="TurnClientOptions.ReceiveQueueCapacity"/>)
    /// or they did not fit its buffer.</summary>
    public long ReceiveDropped => _received.Dropped + _received.OversizeDropped;

    /// <summary>Binds a UDP socket of its own (or connects, for streams), allocates, and starts receiving.</summary>
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
            var multiplexer = new DatagramMultiplexer(await network.BindUdpAsync(local, cancellationToken),
                receiveBufferSize: Math.Max(options.ReceiveBufferSize, 1024));
            client = new TurnClient(network, options, new StunTransactions(multiplexer, network.TimeProvider), true,
                null, null);
        }
        else
        {
            var connection = await network.ConnectTcpAsync(options.Server, options.LocalEndPoint, cancellationToken);
            Stream stream = connection.Stream;
            if (options.Transport == TurnTransport.Tls)
            {
                var ssl = new SslStream(stream, false);
                await ssl.AuthenticateAsClientAsync(TlsSetup.ClientOptions(options.TlsHost ?? options.Server.Address.ToString(),
                    options.CertificateValidation), cancellationToken);
                stream = ssl;
            }

            client = new TurnClient(network, options, new StunTransactions(network.TimeProvider), true, connection,
                stream);
        }

        return await client.StartAsync(cancellationToken);
    }

    /// <summary>
    /// Allocates over UDP on a shared socket the caller owns: the one <paramref name="transactions"/> serves (its
    /// multiplexer's socket, also used for STUN Bindings, ICE checks and uTP). The client registers on the multiplexer
    /// for the server's Data indications and ChannelData and never reads the socket; disposing it leaves the socket
    /// and the table to their owner. <see cref="TurnClientOptions.Transport"/> must be UDP and
    /// <see cref="TurnClientOptions.LocalEndPoint"/> is not used.
    /// </summary>
    /// <exception cref="ArgumentException">The table has no socket, or the options ask for a stream.</exception>
    /// <exception cref="TurnException">The server refused (the code says why).</exception>
    /// <exception cref="TimeoutException">No answer.</exception>
    public static async Task<TurnClient> AllocateAsync(StunTransactions transactions, TurnClientOptions options,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(transactions);
        ArgumentNullException.ThrowIfNull(options);
        if (transactions.Multiplexer is null)
        {
            throw new ArgumentException("transactions: a table with no socket", nameof(transactions));
        }

        if (options.Transport != TurnTransport.Udp)
        {
            throw new ArgumentException("Transport: a shared socket carries UDP only", nameof(options));
        }

        var client = new TurnClient(new SharedSocketNetwork(transactions.TimeProvider), options, transactions, false,
            null, null);
        return await client.StartAsync(cancellationToken);
    }

    private async Task<TurnClient> StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            if (_multiplexer is not null)
            {
                _multiplexer.AddReceiver(this, DatagramClaim.BySource);
            }
            else
            {
                _receiveLoop = ReceiveLoopAsync();
            }

            await DoAllocateAsync(cancellationToken);
            if (_options.KeepAlive)
            {
                _keepAlive = KeepAliveAsync();
            }

            return this;
        }
        catch
        {
            await DisposeAsync();
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

    /// <summary>Waits for data from a peer (relayed by the server). A datagram larger than
    /// <paramref name="buffer"/> is dropped, never cut short (as <see cref="IDatagramSocket.ReceiveFromAsync"/>).</summary>
    /// <exception cref="ObjectDisposedException">The client was disposed or its transport closed.</exception>
    public async ValueTask<TurnReceived> ReceiveAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var got = await _received.ReceiveAsync(buffer, cancellationToken);
        return new TurnReceived(got.Length, got.RemoteEndPoint);
    }

    /// <summary>True when the client has installed a permission for <paramref name="peer"/> (by CreatePermission or
    /// ChannelBind).</summary>
    public bool HasPermission(IPAddress peer) => _permissions.ContainsKey(peer);

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

    /// <summary>One request until its response, as a transaction of the client's <see cref="StunTransactions"/>:
    /// over UDP sent up to MaxTransmissions times with RFC 8489 section 6.2.1's doubling waits; over a stream sent
    /// once and given <see cref="TurnClientOptions.StreamTimeout"/> (Ti, 39.5 s; section 6.2.2 forbids retransmitting
    /// over a reliable transport). Only a response from the server counts.</summary>
    /// <remarks>The caller awaits the transaction's one task: the response (the receive loop), the table's timer
    /// (retransmissions and the timeout) and cancellation all complete it, never <c>Task.WhenAny</c> (docs/lab.md
    /// rule 4).</remarks>
    private async Task<byte[]> TransactAsync(StunTransactionId id, byte[] request, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stop.Token);
        var transaction = new Transaction(this, id, request, linked.Token);
        if (!_transactions.TryAdd(request, _options.Server, _options.Policy, transaction))
        {
            // The table closed (the connection or the shared socket ended): nothing can answer any more, so fail at
            // once rather than after the whole timeout.
            throw _transactions.IsClosed
                ? ConnectionClosed()
                : new InvalidOperationException("the socket's STUN transaction table is full");
        }

        using var cancel = linked.Token.UnsafeRegister(static s => ((Transaction)s!).Cancel(), transaction);
        try
        {
            await WriteAsync(request, linked.Token);
        }
        catch
        {
            _transactions.Cancel(id);
            throw;
        }

        return await transaction.Done.Task;
    }

    /// <summary>The table's half of <see cref="TransactAsync"/>: takes the server's response, resends over UDP,
    /// gives up when the waits are over.</summary>
    private sealed class Transaction(TurnClient client, StunTransactionId id, byte[] request, CancellationToken token)
        : IStunTransactionOwner
    {
        // Continuations run where the transaction ends (the receive loop, the table's timer): no thread-pool hop.
        public TaskCompletionSource<byte[]> Done { get; } = new();

        public bool Accepts(ReadOnlySpan<byte> response, IPEndPoint source, in StunTransactionMatch match) =>
            source.Equals(client._options.Server);

        public void OnResponse(ReadOnlySpan<byte> response, IPEndPoint source, in StunTransactionMatch match) =>
            Done.TrySetResult(response.ToArray());

        public void OnRetransmit(in StunTransactionDue due) => _ = ResendAsync();

        public void OnTimeout(in StunTransactionDue due)
        {
            Done.TrySetException(client._transactions.IsClosed
                ? ConnectionClosed()
                : new TimeoutException($"no answer from TURN server {client._options.Server}"));
        }

        public void Cancel()
        {
            if (client._transactions.Cancel(id))
            {
                Done.TrySetCanceled(token);
            }
        }

        private async Task ResendAsync()
        {
            try
            {
                await client.WriteAsync(request, token);
            }
#pragma warning disable CA1031 // not swallowed: the transaction fails with it
            catch (Exception e)
#pragma warning restore CA1031
            {
                if (client._transactions.Cancel(id))
                {
                    Done.TrySetException(e);
                }
            }
        }
    }

    private async ValueTask WriteAsync(ReadOnlyMemory<byte> frame, CancellationToken cancellationToken)
    {
        if (_multiplexer is not null)
        {
            await _multiplexer.SendToAsync(frame, _options.Server, cancellationToken);
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

    /// <summary>Over a stream: reads frames and hands them to <see cref="Dispatch"/> until the connection ends; then
    /// the table closes (pending transactions fail with <see cref="IOException"/>) and so does the receive queue.</summary>
    private async Task ReceiveLoopAsync()
    {
        var buffer = new byte[Math.Max(_options.ReceiveBufferSize, 1024)];
        var token = _stop.Token;
        var filled = 0;
        while (!token.IsCancellationRequested)
        {
            try
            {
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
                    var data = buffer.AsSpan(start, frame);
                    if (!_transactions.TryReceive(data, _options.Server))
                    {
                        Dispatch(data);
                    }

                    start += frame;
                }

                Drained(); // what this read brought is handed on: a pushed receiver flushes its batch
                if (!StunFraming.TryGetFrameLength(buffer.AsSpan(start, filled - start), out _))
                {
                    break; // framing lost
                }

                buffer.AsSpan(start, filled - start).CopyTo(buffer);
                filled -= start;
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or NetworkException
                                          or IOException)
            {
                break;
            }
        }

        _received.Complete();
        _push.End();
        _transactions.Dispose();
    }

    /// <summary>
    /// Pion's <c>HandleInbound</c>: claims what the server sends on a shared UDP socket besides responses (those are
    /// the transaction table's): a Data indication or ChannelData from <see cref="TurnClientOptions.Server"/> is
    /// unwrapped and queued for <see cref="ReceiveAsync"/>/<see cref="Socket"/>. Everything else (other sources, other
    /// shapes) is left for the socket's other receivers. The multiplexer calls it; it allocates nothing for ChannelData.
    /// </summary>
    public bool HandleInbound(ReadOnlySpan<byte> datagram, IPEndPoint source)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (!source.Equals(_options.Server))
        {
            return false;
        }

        if (StunFraming.IsChannelData(datagram))
        {
            DispatchChannelData(datagram);
            return true;
        }

        if (DatagramShape.IsStun(datagram) && ((datagram[0] & 0x01) | (datagram[1] & 0x10)) == 0x10)
        {
            DispatchIndication(datagram); // an indication (class bits 01)
            return true;
        }

        return false;
    }

    bool IDatagramReceiver.TryReceive(ReadOnlySpan<byte> datagram, IPEndPoint source) =>
        HandleInbound(datagram, source);

    /// <summary>The socket underneath has nothing more queued: a receiver pushed to (uTP over the relay) flushes
    /// what it batched per burst (its delayed ACKs), as it would on a socket of its own.</summary>
    void IDatagramReceiver.OnDrained() => Drained();

    /// <summary>The shared socket closed: nothing more will be relayed.</summary>
    void IDatagramReceiver.OnClosed()
    {
        _received.Complete();
        _push.End();
    }

    private void Drained() => _push.Drained();

    /// <summary><see cref="TurnRelaySocket"/>'s push (<see cref="IPushDatagramSocket"/>): from now on each relayed
    /// datagram goes to <paramref name="receiver"/> inline, on the thread that unwrapped it (the shared socket's
    /// loop), after those queued before; no copy into a queue, no hand-off to a reader.</summary>
    internal Task PushToAsync(IDatagramReceiver receiver, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_stop.IsCancellationRequested || _received.IsCompleted, this);
        return _push.Start(receiver, r => _received.DrainTo(r), cancellationToken);
    }

    private static IOException ConnectionClosed() => new("connection to the TURN server closed");

    /// <summary>A frame from the stream: ChannelData or an indication.</summary>
    private void Dispatch(ReadOnlySpan<byte> data)
    {
        if (StunFraming.IsChannelData(data))
        {
            DispatchChannelData(data);
        }
        else
        {
            DispatchIndication(data);
        }
    }

    private void DispatchChannelData(ReadOnlySpan<byte> data)
    {
        var number = BinaryPrimitives.ReadUInt16BigEndian(data);
        var length = BinaryPrimitives.ReadUInt16BigEndian(data[2..]);
        if (length <= data.Length - 4 && _channelPeers.TryGetValue(number, out var peer))
        {
            Deliver(data.Slice(4, length), peer);
        }
    }

    private void DispatchIndication(ReadOnlySpan<byte> data)
    {
        if (!StunMessageReader.TryParse(data, out var r))
        {
            return;
        }

        if (r.Class == StunClass.Indication && r.Method == TurnMethods.Data &&
            r.TryGetXorAddress(TurnAttributeType.XorPeerAddress, out var from) &&
            r.TryGet(TurnAttributeType.Data, out var payload))
        {
            Deliver(payload, from.ToEndPoint());
        }
    }

    /// <summary>A relayed datagram to the receiver pushed to, else to the queue (<see cref="DatagramPush"/>: one
    /// lock, so one that arrives while a push starts is neither stranded in the queue nor pushed before older ones).</summary>
    private void Deliver(ReadOnlySpan<byte> payload, IPEndPoint peer) =>
        _push.Deliver(payload, peer, _received, static (queue, d, source) => queue.TryWrite(d, source));

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
        _received.Complete();
        _push.End();
        if (_multiplexer is not null)
        {
            _multiplexer.RemoveReceiver(this);
            if (_ownsTransport)
            {
                _transactions.Dispose();
                await _multiplexer.DisposeAsync();
            }
        }

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

    /// <summary>What <see cref="TurnClient.AllocateAsync(StunTransactions, TurnClientOptions, CancellationToken)"/>
    /// knows of the network: its clock. A client on a shared socket never binds or connects.</summary>
    private sealed class SharedSocketNetwork(TimeProvider time) : INetwork
    {
        public TimeProvider TimeProvider => time;

        public IReadOnlyList<IPAddress> LocalAddresses => [];

        public ValueTask<IDatagramSocket> BindUdpAsync(IPEndPoint localEndPoint,
            CancellationToken cancellationToken = default) =>
            throw new NotSupportedException("a TURN client on a shared socket binds nothing");

        public ValueTask<IStreamListener> ListenTcpAsync(IPEndPoint localEndPoint, int backlog = 512,
            CancellationToken cancellationToken = default) =>
            throw new NotSupportedException("a TURN client on a shared socket listens on nothing");

        public ValueTask<IStreamConnection> ConnectTcpAsync(IPEndPoint remoteEndPoint, IPEndPoint? localEndPoint = null,
            CancellationToken cancellationToken = default) =>
            throw new NotSupportedException("a TURN client on a shared socket connects nothing");
    }
}

/// <summary>
/// A TURN allocation as a datagram socket (<see cref="TurnClient.Socket"/>): sends reach a peer through the relay,
/// receives return what peers sent to the relayed address. Its local endpoint is the relayed one.
/// </summary>
internal sealed class TurnRelaySocket(TurnClient client) : IPushDatagramSocket
{
    private int _disposed;

    public IPEndPoint LocalEndPoint => client.RelayedEndPoint;

    public async ValueTask<int> SendToAsync(ReadOnlyMemory<byte> datagram, IPEndPoint remoteEndPoint,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(remoteEndPoint);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (!client.HasPermission(remoteEndPoint.Address))
        {
            // RFC 8656 section 9: the server drops what is sent to a peer with no permission.
            await client.CreatePermissionAsync(remoteEndPoint.Address, cancellationToken);
        }

        await client.SendAsync(datagram, remoteEndPoint, cancellationToken);
        return datagram.Length;
    }

    public async ValueTask<ReceivedDatagram> ReceiveFromAsync(Memory<byte> buffer,
        CancellationToken cancellationToken = default)
    {
        var got = await client.ReceiveAsync(buffer, cancellationToken);
        return new ReceivedDatagram(got.Length, got.Peer);
    }

    /// <summary>Pushes what peers relay to <paramref name="receiver"/> inline (see
    /// <see cref="IPushDatagramSocket"/>): a <see cref="DatagramMultiplexer"/> over the allocation, or a traversal
    /// node's relay path, takes each datagram from the loop that unwrapped it, with the socket's drains.</summary>
    public Task PushToAsync(IDatagramReceiver receiver, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        return client.PushToAsync(receiver, cancellationToken);
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _ = client.DisposeAsync().AsTask();
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            await client.DisposeAsync();
        }
    }
}
