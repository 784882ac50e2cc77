using System.Net;
using System.Net.Security;
using NatKit.Net;
using NatKit.Stun.Transactions;

namespace NatKit.Stun.Client;

/// <summary>
/// A STUN client (RFC 8489): Binding transactions over UDP with the RFC's retransmission schedule, over TCP and
/// TLS with stream framing, and the short- and long-term credential mechanisms (401 then retry with REALM and
/// NONCE, 438 then retry with the new NONCE). All waiting uses the <see cref="INetwork"/>'s clock, so in the lab
/// a 39.5-second timeout costs no real time. A timeout is an answer (null), not an exception.
/// </summary>
public sealed class StunClient
{
    private const int BufferLength = 2048;

    /// <summary>How many 300 (Try Alternate) redirects a Binding follows before giving up.</summary>
    public const int MaxRedirects = 2;

    public StunClient(INetwork network, StunClientOptions? options = null)
    {
        Network = network ?? throw new ArgumentNullException(nameof(network));
        Options = options ?? new StunClientOptions();
        Options.Validate();
    }

    public INetwork Network { get; }

    public StunClientOptions Options { get; }

    /// <summary>A Binding transaction from a new ephemeral UDP socket of the server's address family.</summary>
    public async Task<StunResponse?> BindingAsync(IPEndPoint server, StunBindingRequest request = default,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(server);
        var any = server.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6
            ? IPAddress.IPv6Any
            : IPAddress.Any;
        await using var socket = await Network.BindUdpAsync(new IPEndPoint(any, 0), cancellationToken);
        return await BindingAsync(socket, server, request, cancellationToken);
    }

    /// <summary>A Binding transaction on a socket the caller owns and no one else reads while it runs (discovery
    /// reuses one socket for several tests). Null when no response came within the transaction timeout. On a socket
    /// shared with other protocols, use the overload over its <see cref="StunTransactions"/>.</summary>
    public async Task<StunResponse?> BindingAsync(IDatagramSocket socket, IPEndPoint server,
        StunBindingRequest request = default, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(socket);
        ArgumentNullException.ThrowIfNull(server);
        await using var multiplexer = new DatagramMultiplexer(socket, ownsSocket: false, BufferLength);
        using var transactions = new StunTransactions(multiplexer, Network.TimeProvider);
        return await BindingAsync(transactions, server, request, cancellationToken);
    }

    /// <summary>
    /// A Binding transaction on a shared socket, through its transaction table: only the response to this
    /// transaction is taken off the socket; uTP, TURN, ICE checks and other transactions on it are left alone. Null
    /// when no response came within the transaction timeout. Follows 300 (Try Alternate) and the credential
    /// mechanisms' 401/438 retries as the other overloads do.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The shared socket closed.</exception>
    public async Task<StunResponse?> BindingAsync(StunTransactions transactions, IPEndPoint server,
        StunBindingRequest request = default, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(transactions);
        ArgumentNullException.ThrowIfNull(server);
        var auth = InitialAuth();
        var redirects = 0;
        for (var round = 0; round < 5; round++)
        {
            // A buffer per request: the table keeps it until the transaction ends.
            var buffer = new byte[BufferLength];
            var length = BuildRequest(buffer, StunTransactionId.NewRandom(), request, auth);
            var response = await TransactAsync(transactions, server, buffer.AsMemory(0, length), cancellationToken,
                auth.Key);
            if (response is { ErrorCode: StunErrorCode.TryAlternate } && redirects++ < MaxRedirects &&
                TryAlternate(response, server, out var alternate))
            {
                // RFC 8489 section 10: the transaction failed; try the alternate server with a fresh one (and fresh
                // credentials state: its realm and nonce are its own).
                server = alternate;
                auth = InitialAuth();
                continue;
            }

            if (!NextAuth(response, ref auth))
            {
                return response;
            }
        }

        return null;
    }

    /// <summary>
    /// One UDP transaction on a socket the caller owns: sends <paramref name="request"/> and retransmits it on the
    /// RFC 8489 schedule until a response with <paramref name="id"/> arrives (from any source) or the transaction
    /// times out (null). With <paramref name="integrityKey"/>, responses must carry valid integrity with it (except
    /// the 400, 401, 420 and 438 errors, RFC 8489 sections 9.1.4 and 9.2.5); others are ignored as forgeries.
    /// </summary>
    public async Task<StunResponse?> TransactAsync(IDatagramSocket socket, IPEndPoint server,
        ReadOnlyMemory<byte> request, StunTransactionId id, CancellationToken cancellationToken = default,
        byte[]? integrityKey = null)
    {
        ArgumentNullException.ThrowIfNull(socket);
        if (request.Length < StunMessageReader.HeaderLength ||
            StunTransactionId.Read(request.Span.Slice(8, StunTransactionId.Size)) != id)
        {
            throw new ArgumentException("id: not the request's transaction id", nameof(id));
        }

        await using var multiplexer = new DatagramMultiplexer(socket, ownsSocket: false, BufferLength);
        using var transactions = new StunTransactions(multiplexer, Network.TimeProvider);
        return await TransactAsync(transactions, server, request, cancellationToken, integrityKey);
    }

    /// <summary>
    /// One UDP transaction on a shared socket, through its transaction table, on the options' retransmission
    /// schedule: the response to <paramref name="request"/>'s transaction id (FINGERPRINT valid when present; with
    /// <paramref name="integrityKey"/>, integrity as in the socket overload), or null after the last wait.
    /// <paramref name="request"/> must stay unchanged until the task completes.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The shared socket closed.</exception>
    public async Task<StunResponse?> TransactAsync(StunTransactions transactions, IPEndPoint server,
        ReadOnlyMemory<byte> request, CancellationToken cancellationToken = default, byte[]? integrityKey = null)
    {
        ArgumentNullException.ThrowIfNull(transactions);
        ArgumentNullException.ThrowIfNull(server);
        var got = await transactions.TransactAsync(request, server, Options.RetransmitPolicy,
            (data, _) => IsGenuine(data, integrityKey), cancellationToken);
        if (got is null || !StunMessageReader.TryParse(got.Message, out var reader))
        {
            return null;
        }

        return StunResponse.From(reader, got.Source, got.Elapsed);
    }

    // A response to our id (the table matched it, or the stream reader checks it here) that is genuine: FINGERPRINT
    // valid when present, integrity valid with the key when there is one (RFC 8489 sections 7.3.3 and 9.1.4).
    private static bool IsGenuine(ReadOnlySpan<byte> data, byte[]? integrityKey)
    {
        if (!StunMessageReader.TryParse(data, out var reader) ||
            reader.Class is not (StunClass.SuccessResponse or StunClass.ErrorResponse))
        {
            return false;
        }

        if (reader.HasFingerprint && !reader.IsFingerprintValid())
        {
            return false;
        }

        return integrityKey is null || IsUnsignedError(reader) ||
               (reader.HasMessageIntegritySha256 ? reader.VerifyMessageIntegritySha256(integrityKey)
                   : reader.VerifyMessageIntegrity(integrityKey));
    }

    private static StunResponse? Match(ReadOnlySpan<byte> data, StunTransactionId id, IPEndPoint source,
        TimeSpan elapsed, byte[]? integrityKey) =>
        IsGenuine(data, integrityKey) && StunMessageReader.TryParse(data, out var reader) && reader.TransactionId == id
            ? StunResponse.From(reader, source, elapsed)
            : null;

    private static bool TryAlternate(StunResponse response, IPEndPoint current, out IPEndPoint alternate)
    {
        alternate = null!;
        foreach (var a in response.Message.Attributes)
        {
            if (a.Type == StunAttributeType.AlternateServer && StunAddress.TryDecode(a.Value, out var address) &&
                address.ToEndPoint() is { } ep && ep.AddressFamily == current.AddressFamily && !ep.Equals(current))
            {
                alternate = ep;
                return true;
            }
        }

        return false;
    }

    // Errors a server sends before (or instead of) checking credentials carry no integrity.
    private static bool IsUnsignedError(StunMessageReader reader) =>
        reader.Class == StunClass.ErrorResponse && reader.TryGetErrorCode(out var code, out _) &&
        code is StunErrorCode.BadRequest or StunErrorCode.Unauthenticated or StunErrorCode.UnknownAttribute
            or StunErrorCode.StaleNonce;

    /// <summary>A Binding transaction over TCP (RFC 8489 section 6.2.2), on a new connection.</summary>
    public async Task<StunResponse?> BindingTcpAsync(IPEndPoint server, StunBindingRequest request = default,
        CancellationToken cancellationToken = default)
    {
        await using var connection = await Network.ConnectTcpAsync(server, null, cancellationToken);
        return await BindingStreamAsync(connection.Stream, connection.RemoteEndPoint, request, cancellationToken);
    }

    /// <summary>A Binding transaction over TLS (RFC 8489 section 6.2.3) to <paramref name="targetHost"/>.</summary>
    public async Task<StunResponse?> BindingTlsAsync(IPEndPoint server, string targetHost,
        RemoteCertificateValidationCallback? validate = null, StunBindingRequest request = default,
        CancellationToken cancellationToken = default)
    {
        await using var connection = await Network.ConnectTcpAsync(server, null, cancellationToken);
        await using var tls = new SslStream(connection.Stream, leaveInnerStreamOpen: true);
        await tls.AuthenticateAsClientAsync(TlsSetup.ClientOptions(targetHost, validate), cancellationToken);
        return await BindingStreamAsync(tls, connection.RemoteEndPoint, request, cancellationToken);
    }

    /// <summary>Binding transactions over an established stream; each times out after Ti.</summary>
    public async Task<StunResponse?> BindingStreamAsync(Stream stream, IPEndPoint peer,
        StunBindingRequest request = default, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(peer);
        var time = Network.TimeProvider;
        var buffer = new byte[BufferLength];
        var receive = new byte[BufferLength * 2];
        var filled = 0;
        var auth = InitialAuth();
        for (var round = 0; round < 3; round++)
        {
            var id = StunTransactionId.NewRandom();
            var length = BuildRequest(buffer, id, request, auth);
            var start = time.GetTimestamp();
            using var timeout = new CancellationTokenSource(Options.StreamTimeout, time);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, cancellationToken);
            StunResponse? response = null;
            try
            {
                await stream.WriteAsync(buffer.AsMemory(0, length), linked.Token);
                while (response is null)
                {
                    if (!StunFraming.TryGetFrameLength(receive.AsSpan(0, filled), out var frame) ||
                        frame > receive.Length)
                    {
                        return null; // garbage or an oversized frame: give up on this stream
                    }

                    if (frame == 0 || frame > filled)
                    {
                        var n = await stream.ReadAsync(receive.AsMemory(filled), linked.Token);
                        if (n == 0)
                        {
                            return null;
                        }

                        filled += n;
                        continue;
                    }

                    response = Match(receive.AsSpan(0, frame), id, peer, time.GetElapsedTime(start), auth.Key);
                    receive.AsSpan(frame, filled - frame).CopyTo(receive);
                    filled -= frame;
                }
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                return null;
            }

            if (!NextAuth(response, ref auth))
            {
                return response;
            }
        }

        return null;
    }

    private AuthState InitialAuth()
    {
        if (Options.Username is null)
        {
            return default;
        }

        return Options.ShortTermCredentials
            ? new AuthState(Options.Username, null, null, StunCredentials.ShortTermKey(Options.Password!))
            : default;
    }

    // After a 401 (with REALM and NONCE) or a 438, long-term credentials retry with the server's realm and nonce.
    private bool NextAuth(StunResponse? response, ref AuthState auth)
    {
        if (response is null || Options.Username is null || Options.ShortTermCredentials ||
            response.ErrorCode is not (StunErrorCode.Unauthenticated or StunErrorCode.StaleNonce))
        {
            return false;
        }

        var realm = response.GetString(StunAttributeType.Realm);
        var nonce = response.GetString(StunAttributeType.Nonce);
        if (realm is null || nonce is null)
        {
            return false;
        }

        if (response.ErrorCode == StunErrorCode.Unauthenticated && auth.Nonce is not null && auth.Realm == realm)
        {
            return false; // we already sent credentials for this realm: they are wrong
        }

        auth = new AuthState(Options.Username, realm, nonce,
            StunCredentials.LongTermKey(Options.Username, realm, Options.Password!));
        return true;
    }

    private int BuildRequest(Span<byte> buffer, StunTransactionId id, StunBindingRequest request, AuthState auth)
    {
        var w = new StunMessageWriter(buffer, StunMethods.Binding, StunClass.Request, id);
        if (request.ChangeAddress || request.ChangePort)
        {
            w.AddChangeRequest(request.ChangeAddress, request.ChangePort);
        }

        if (request.ResponsePort != 0)
        {
            w.AddResponsePort(request.ResponsePort);
        }

        if (request.Padding > 0)
        {
            w.AddPadding(Math.Min(request.Padding, 1200));
        }

        if (Options.Software is not null)
        {
            w.AddString(StunAttributeType.Software, Options.Software);
        }

        if (auth.Key is not null)
        {
            w.AddString(StunAttributeType.Username, auth.Username!);
            if (auth.Realm is not null)
            {
                w.AddString(StunAttributeType.Realm, auth.Realm);
                w.AddString(StunAttributeType.Nonce, auth.Nonce!);
            }

            w.AddMessageIntegrity(auth.Key);
        }

        if (Options.Fingerprint)
        {
            w.AddFingerprint();
        }

        return w.Length;
    }

    private readonly record struct AuthState(string? Username, string? Realm, string? Nonce, byte[]? Key);
}
