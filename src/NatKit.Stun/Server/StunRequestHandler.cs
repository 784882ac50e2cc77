using System.Net;
using System.Text;
using NatKit.Net;

namespace NatKit.Stun.Server;

/// <summary>Where to send a reply: from which of the server's sockets and to which port (0: the source port).</summary>
public readonly record struct StunReplyRoute(int Length, int SocketIndex, int Port);

/// <summary>
/// The server's pure core: request bytes, the source, the receiving socket and the time in; reply bytes and a
/// route out. No sockets, no allocation on the Binding path, no exception for any input. In RFC 5780 mode the
/// four sockets are numbered by bits: bit 0 = alternate port, bit 1 = alternate address, so CHANGE-REQUEST
/// flips bits of the receiving socket's index and OTHER-ADDRESS is the socket with both bits flipped.
/// </summary>
public sealed class StunRequestHandler
{
    /// <summary>Most unknown attributes listed in one 420 reply.</summary>
    public const int MaxUnknownReported = 16;

    /// <summary>Largest reply the handler writes (fits every path MTU that carries STUN).</summary>
    public const int MaxReplyLength = 1280;

    private readonly StunServerOptions _options;
    private readonly StunAddress[] _advertised;
    private readonly StunAttributeRegistry _registry;
    private readonly SourceRateLimiter? _limiter;
    private readonly TimeProvider _time;
    private readonly Dictionary<string, UserKeys>.AlternateLookup<ReadOnlySpan<char>> _users;
    private readonly UserKeys[] _userList;
    private readonly StunNonces _nonces;
    private readonly StunAddress? _redirect;
    private readonly byte[]? _realm;

    /// <summary>The bytes a SOFTWARE attribute adds to a reply (header and padded value); 0: none is sent.</summary>
    private readonly int _softwareLength;

    /// <param name="options">Validated options.</param>
    /// <param name="socketAddresses">Addresses of the sockets by index (one, or four in RFC 5780 mode), as they
    /// are to be advertised (after any 1:1 NAT substitution).</param>
    /// <param name="time">The clock for nonces and rate limits.</param>
    /// <param name="metrics">Where counts go.</param>
    public StunRequestHandler(StunServerOptions options, IReadOnlyList<IPEndPoint> socketAddresses,
        TimeProvider time, StunServerMetrics metrics)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(socketAddresses);
        _options = options;
        _time = time ?? throw new ArgumentNullException(nameof(time));
        Metrics = metrics ?? throw new ArgumentNullException(nameof(metrics));
        _advertised = socketAddresses.Select(StunAddress.FromEndPoint).ToArray();
        _registry = options.Rfc5780
            ? StunAttributeRegistry.Stun
            : StunAttributeRegistry.Stun.Without(StunAttributeType.ChangeRequest, StunAttributeType.ResponsePort,
                StunAttributeType.Padding);
        _limiter = options.RateLimitPerSecond > 0
            ? new SourceRateLimiter(options.RateLimitPerSecond, options.RateLimitTableSize, time)
            : null;
        var users = new Dictionary<string, UserKeys>(StringComparer.Ordinal);
        foreach (var (name, password) in options.Users)
        {
            users[name] = options.Realm is null
                ? new UserKeys(name, StunCredentials.ShortTermKey(password), [], [])
                : new UserKeys(name, StunCredentials.LongTermKey(name, options.Realm, password),
                    StunCredentials.LongTermKey(name, options.Realm, password, StunPasswordAlgorithm.Sha256),
                    StunCredentials.UserHash(name, options.Realm));
        }

        _users = users.GetAlternateLookup<ReadOnlySpan<char>>();
        _nonces = new StunNonces(time, options.NonceLifetime);
        _redirect = options.RedirectTo is null ? null : StunAddress.FromEndPoint(options.RedirectTo);
        _userList = users.Values.ToArray();
        _realm = options.Realm is null ? null : Encoding.UTF8.GetBytes(options.Realm);
        _softwareLength = options.Software is { Length: <= 128 } software
            ? 4 + ((Encoding.UTF8.GetByteCount(software) + 3) & ~3)
            : 0;
    }

    public StunServerMetrics Metrics { get; }

    /// <summary>
    /// Handles one message. Returns the reply's length and route; length 0 means answer with silence (not STUN,
    /// malformed, not a request, rate-limited, bad FINGERPRINT), as RFC 8489 section 6.3 asks.
    /// </summary>
    /// <param name="request">The datagram or stream frame.</param>
    /// <param name="source">Who sent it (the XOR-MAPPED-ADDRESS).</param>
    /// <param name="socketIndex">Which socket received it (0 for TCP/TLS).</param>
    /// <param name="transport">UDP, TCP or TLS: CHANGE-REQUEST and RESPONSE-PORT only mean something on UDP.</param>
    /// <param name="reply">Where the reply is written; at least <see cref="MaxReplyLength"/> bytes.</param>
    public StunReplyRoute Handle(ReadOnlySpan<byte> request, IPEndPoint source, int socketIndex,
        StunTransport transport, Span<byte> reply)
    {
        ArgumentNullException.ThrowIfNull(source);
        Metrics.Request(transport);
        if (_limiter is not null && !_limiter.TryAcquire(source))
        {
            return Drop(DropReason.RateLimited);
        }

        // The validation the TURN server makes too: screen (parse, FINGERPRINT), credentials, then 420.
        switch (StunRequestValidation.Screen(request, out var msg, _options.AnswerRfc3489))
        {
            case StunScreen.Malformed:
                return Drop(DropReason.Malformed);
            case StunScreen.BadFingerprint:
                return Drop(DropReason.Fingerprint);
        }

        if (msg.Class != StunClass.Request)
        {
            return Drop(DropReason.NotRequest);
        }

        if (msg.IsRfc3489)
        {
            return msg.Method == StunMethods.Binding && !_options.RequiresAuthentication
                ? Classic(msg, source, socketIndex, transport, reply)
                : Drop(DropReason.Unsupported);
        }

        var withFingerprint = msg.HasFingerprint;
        if (msg.Method != StunMethods.Binding)
        {
            return Error(msg, StunErrorCode.BadRequest, reply, withFingerprint, socketIndex);
        }

        // Credentials (RFC 8489 section 9).
        ReadOnlySpan<byte> key = default;
        var sha256 = false;
        if (_options.RequiresAuthentication)
        {
            var verdict = _options.Realm is null
                ? CheckShortTerm(msg, out key, out sha256)
                : CheckLongTerm(msg, source, out key, out sha256);
            if (verdict != 0)
            {
                var w = ErrorWriter(msg, verdict, reply);
                if (_options.Realm is not null && verdict is StunErrorCode.Unauthenticated or StunErrorCode.StaleNonce)
                {
                    w.AddString(StunAttributeType.Realm, _options.Realm);
                    Span<char> nonce = stackalloc char[StunNonces.Length];
                    _nonces.Make(source, nonce);
                    w.AddString(StunAttributeType.Nonce, nonce);
                }

                return Finish(ref w, withFingerprint, default, false, socketIndex, 0, verdict);
            }
        }

        var authenticated = !key.IsEmpty;

        // RFC 8489 section 6.3.1: after the authentication checks, unknown comprehension-required attributes get
        // a 420 (signed when the request was).
        Span<ushort> unknown = stackalloc ushort[MaxUnknownReported];
        var unknownCount = StunRequestValidation.FindUnknown(msg, _registry, unknown);
        if (unknownCount > 0)
        {
            var w = ErrorWriter(msg, StunErrorCode.UnknownAttribute, reply);
            w.AddUnknownAttributes(unknown[..unknownCount]);
            return Finish(ref w, withFingerprint, key, sha256, socketIndex, 0, StunErrorCode.UnknownAttribute);
        }

        // RFC 8489 section 10: redirect.
        if (_redirect is { } redirect)
        {
            var w = ErrorWriter(msg, StunErrorCode.TryAlternate, reply);
            w.AddAddress(StunAttributeType.AlternateServer, redirect);
            if (_options.RedirectDomain is { Length: > 0 and <= 255 } domain)
            {
                w.AddString(StunAttributeType.AlternateDomain, domain);
            }

            return Finish(ref w, withFingerprint, key, sha256, socketIndex, 0, StunErrorCode.TryAlternate);
        }

        // RFC 5780: CHANGE-REQUEST and RESPONSE-PORT (UDP only).
        var from = socketIndex;
        var port = 0;
        if (msg.TryGetChangeRequest(out var changeAddress, out var changePort) && (changeAddress || changePort))
        {
            if (transport != StunTransport.Udp)
            {
                return Error(msg, StunErrorCode.BadRequest, reply, withFingerprint, socketIndex);
            }

            from = socketIndex ^ (changePort ? 1 : 0) ^ (changeAddress ? 2 : 0);
        }
        else if (msg.Contains(StunAttributeType.ChangeRequest) &&
                 !msg.TryGetUInt32(StunAttributeType.ChangeRequest, out _))
        {
            return Error(msg, StunErrorCode.BadRequest, reply, withFingerprint, socketIndex);
        }

        if (msg.Contains(StunAttributeType.ResponsePort))
        {
            if (transport != StunTransport.Udp || !msg.TryGetResponsePort(out var p) || p == 0 ||
                (p < _options.MinResponsePort && !authenticated))
            {
                return Error(msg, StunErrorCode.BadRequest, reply, withFingerprint, socketIndex);
            }

            port = p;
        }

        // The success response. Everything beyond what the RFCs require must fit the request's own size unless
        // the request is authenticated: a spoofed request cannot buy more bytes than it spent.
        var mapped = StunAddress.FromEndPoint(source);
        var rfc5780 = _advertised.Length == 4;
        var integrityLength = authenticated ? 4 + (sha256 ? StunIntegrity.Sha256Length : StunIntegrity.Sha1Length) : 0;
        var required = StunMessageReader.HeaderLength + 4 + mapped.EncodedLength +
                       (rfc5780 ? 8 + _advertised[from].EncodedLength + _advertised[socketIndex ^ 3].EncodedLength : 0) +
                       integrityLength + (withFingerprint ? 8 : 0);
        var budget = authenticated ? MaxReplyLength : Math.Max(request.Length, required);
        budget = Math.Min(budget, Math.Min(MaxReplyLength, reply.Length));

        var writer = new StunMessageWriter(reply, StunMethods.Binding, StunClass.SuccessResponse, msg.TransactionId);
        writer.AddXorAddress(StunAttributeType.XorMappedAddress, mapped);
        if (rfc5780)
        {
            writer.AddAddress(StunAttributeType.ResponseOrigin, _advertised[from]);
            writer.AddAddress(StunAttributeType.OtherAddress, _advertised[socketIndex ^ 3]);
        }

        var tail = integrityLength + (withFingerprint ? 8 : 0);
        if (rfc5780 && msg.TryGet(StunAttributeType.Padding, out var padding))
        {
            var room = budget - writer.Length - tail - 4;
            var length = Math.Min(padding.Length, room) & ~3;
            if (length > 0)
            {
                writer.AddPadding(length);
            }
        }

        if (_softwareLength > 0 && writer.Length + _softwareLength + tail <= budget)
        {
            writer.AddString(StunAttributeType.Software, _options.Software!);
        }

        return Finish(ref writer, withFingerprint, key, sha256, from, port, 0);
    }

    private StunReplyRoute Classic(StunMessageReader msg, IPEndPoint source, int socketIndex, StunTransport transport,
        Span<byte> reply)
    {
        // RFC 8489 section 12.2: copy the cookie field, answer with MAPPED-ADDRESS; RFC 3489's SOURCE-ADDRESS and
        // CHANGED-ADDRESS let classic clients run their NAT tests against an RFC 5780 server.
        var from = socketIndex;
        if (msg.TryGetChangeRequest(out var changeAddress, out var changePort) && transport == StunTransport.Udp &&
            _advertised.Length == 4)
        {
            from = socketIndex ^ (changePort ? 1 : 0) ^ (changeAddress ? 2 : 0);
        }

        var w = new StunMessageWriter(reply, StunMethods.Binding, StunClass.SuccessResponse,
            StunTransactionId.Read(msg.TransactionIdBytes));
        w.SetCookieField(msg.CookieField);
        w.AddAddress(StunAttributeType.MappedAddress, StunAddress.FromEndPoint(source));
        if (_advertised.Length == 4)
        {
            w.AddAddress(StunAttributeType.SourceAddress, _advertised[from]);
            w.AddAddress(StunAttributeType.ChangedAddress, _advertised[socketIndex ^ 3]);
        }

        Metrics.Success();
        return new StunReplyRoute(w.Length, from, 0);
    }

    private StunReplyRoute Drop(DropReason reason)
    {
        Metrics.Drop(reason);
        return default;
    }

    private StunMessageWriter ErrorWriter(StunMessageReader msg, int code, Span<byte> reply)
    {
        var w = new StunMessageWriter(reply, msg.Method, StunClass.ErrorResponse, msg.TransactionId);
        w.AddErrorCode(code);
        return w;
    }

    private StunReplyRoute Error(StunMessageReader msg, int code, Span<byte> reply, bool fingerprint, int socketIndex)
    {
        var w = ErrorWriter(msg, code, reply);
        return Finish(ref w, fingerprint, default, false, socketIndex, 0, code);
    }

    private StunReplyRoute Finish(ref StunMessageWriter w, bool fingerprint, ReadOnlySpan<byte> key, bool sha256,
        int from, int port, int errorCode)
    {
        if (!key.IsEmpty)
        {
            if (sha256)
            {
                w.AddMessageIntegritySha256(key);
            }
            else
            {
                w.AddMessageIntegrity(key);
            }
        }

        if (fingerprint)
        {
            w.AddFingerprint();
        }

        if (errorCode == 0)
        {
            Metrics.Success();
        }
        else
        {
            Metrics.Error(errorCode);
        }

        return new StunReplyRoute(w.Length, from, port);
    }

    private int CheckShortTerm(StunMessageReader msg, out ReadOnlySpan<byte> key, out bool sha256)
    {
        key = default;
        sha256 = msg.HasMessageIntegritySha256;
        if (!(msg.HasMessageIntegrity || sha256) || !msg.TryGet(StunAttributeType.Username, out var username))
        {
            return StunErrorCode.BadRequest;
        }

        var user = FindUser(username);
        if (user is null)
        {
            return StunErrorCode.Unauthenticated;
        }

        var ok = sha256 ? msg.VerifyMessageIntegritySha256(user.Md5Key) : msg.VerifyMessageIntegrity(user.Md5Key);
        if (!ok)
        {
            return StunErrorCode.Unauthenticated;
        }

        key = user.Md5Key;
        return 0;
    }

    private int CheckLongTerm(StunMessageReader msg, IPEndPoint source, out ReadOnlySpan<byte> key, out bool sha256)
    {
        key = default;
        sha256 = msg.HasMessageIntegritySha256;
        if (!msg.HasMessageIntegrity && !sha256)
        {
            return StunErrorCode.Unauthenticated;
        }

        UserKeys? user;
        if (msg.TryGet(StunAttributeType.Username, out var username))
        {
            user = FindUser(username);
        }
        else if (msg.TryGet(StunAttributeType.UserHash, out var hash))
        {
            user = null;
            foreach (var u in _userList)
            {
                if (hash.SequenceEqual(u.UserHash))
                {
                    user = u;
                    break;
                }
            }
        }
        else
        {
            return StunErrorCode.BadRequest;
        }

        if (!msg.TryGet(StunAttributeType.Realm, out var realm) || !msg.TryGet(StunAttributeType.Nonce, out var nonce))
        {
            return StunErrorCode.BadRequest;
        }

        if (!_nonces.IsValid(nonce, source))
        {
            return StunErrorCode.StaleNonce;
        }

        if (user is null || !realm.SequenceEqual(_realm))
        {
            return StunErrorCode.Unauthenticated;
        }

        var algorithm = StunPasswordAlgorithm.Md5;
        if (msg.Contains(StunAttributeType.PasswordAlgorithm) && !msg.TryGetPasswordAlgorithm(out algorithm))
        {
            return StunErrorCode.BadRequest;
        }

        byte[] k;
        switch (algorithm)
        {
            case StunPasswordAlgorithm.Md5:
                k = user.Md5Key;
                break;
            case StunPasswordAlgorithm.Sha256:
                k = user.Sha256Key;
                break;
            default:
                return StunErrorCode.BadRequest;
        }

        var ok = sha256 ? msg.VerifyMessageIntegritySha256(k) : msg.VerifyMessageIntegrity(k);
        if (!ok)
        {
            return StunErrorCode.Unauthenticated;
        }

        key = k;
        return 0;
    }

    private UserKeys? FindUser(ReadOnlySpan<byte> username)
    {
        if (username.Length > 513)
        {
            return null;
        }

        Span<char> chars = stackalloc char[513];
        if (!Encoding.UTF8.TryGetChars(username, chars, out var n))
        {
            return null;
        }

        return _users.TryGetValue(chars[..n], out var user) ? user : null;
    }

    private sealed record UserKeys(string Name, byte[] Md5Key, byte[] Sha256Key, byte[] UserHash);
}
