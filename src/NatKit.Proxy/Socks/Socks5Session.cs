using System.Buffers;
using System.Net;
using NatKit.Net;

namespace NatKit.Proxy.Socks;

/// <summary>
/// One SOCKS5 client (RFC 1928): method negotiation (no authentication, or RFC 1929 user/password when
/// credentials are configured), then CONNECT (a tunnel) or UDP ASSOCIATE (a relay that lives as long as this
/// control connection). BIND is answered "command not supported".
/// </summary>
internal sealed class Socks5Session
{
    private const int BufferSize = 256 * 1024;

    private readonly ProxyServer _server;
    private readonly IStreamConnection _client;
    private readonly PooledReader _reader;
    private readonly Deadline _deadline;
    private readonly Flow _flow;
    private readonly long _started;
    private string? _method;
    private int _reply = -1;

    public Socks5Session(ProxyServer server, IStreamConnection client, CancellationToken shutdown)
    {
        _server = server;
        _client = client;
        _reader = new PooledReader(client.Stream, 4096); // a handshake is at most 515 bytes
        _deadline = new Deadline(server.Time, server.Options.IdleTimeout, shutdown);
        _flow = server.Connections.Add("socks", client.RemoteEndPoint);
        _started = server.Time.GetTimestamp();
    }

    public async Task RunAsync()
    {
        try
        {
            _deadline.Arm(_server.Options.HeaderTimeout);
            if (!await NegotiateAsync().ConfigureAwait(false))
            {
                return;
            }

            var (parse, consumed, command, address, badType) = await ReadRequestAsync().ConfigureAwait(false);
            if (parse != SocksParse.Ok)
            {
                if (badType)
                {
                    await ReplyAsync(SocksReply.AddressTypeNotSupported, null).ConfigureAwait(false);
                }

                return;
            }

            _reader.Consume(consumed);
            _flow.AddRequest();
            _flow.Target = address.ToString();
            _method = (SocksCommand)command switch
            {
                SocksCommand.Connect => "SOCKS5-CONNECT",
                SocksCommand.UdpAssociate => "SOCKS5-UDP",
                _ => "SOCKS5-" + command.ToString(System.Globalization.CultureInfo.InvariantCulture),
            };
            switch ((SocksCommand)command)
            {
                case SocksCommand.Connect:
                    await ConnectAsync(address).ConfigureAwait(false);
                    break;
                case SocksCommand.UdpAssociate:
                    await AssociateAsync(address).ConfigureAwait(false);
                    break;
                default:
                    await ReplyAsync(SocksReply.CommandNotSupported, null).ConfigureAwait(false);
                    break;
            }
        }
        catch (Exception e) when (ProxyServer.IsConnectionError(e))
        {
        }
        finally
        {
            if (_method is not null && _server.Logger.IsEnabled(Microsoft.Extensions.Logging.LogLevel.Information))
            {
                // when it ends, with what moved: the status is RFC 1928's reply code (0 = succeeded)
                ProxyServer.LogAccess(_server.Logger, _client.RemoteEndPoint, _method, _flow.Target ?? "-", _reply,
                    _flow.BytesUp, _flow.BytesDown, (long)_server.Time.GetElapsedTime(_started).TotalMilliseconds);
            }

            _server.Connections.Remove(_flow);
            _deadline.Dispose();
            _reader.Dispose();
        }
    }

    private async Task<bool> NegotiateAsync()
    {
        var credentials = _server.CredentialBytes;
        var wanted = credentials is null ? Socks5Codec.MethodNoAuth : Socks5Codec.MethodUserPass;
        while (true)
        {
            var r = Socks5Codec.ParseGreeting(_reader.Span, wanted, out var consumed, out var offered);
            if (r == SocksParse.Invalid)
            {
                return false;
            }

            if (r == SocksParse.Ok)
            {
                _reader.Consume(consumed);
                await WriteAsync(new byte[] { Socks5Codec.Version, offered ? wanted : Socks5Codec.MethodNone }).ConfigureAwait(false);
                if (!offered)
                {
                    ProxyServer.LogRefusedRequest(_server.Logger, _client.RemoteEndPoint, 407,
                        "SOCKS5 client offered no acceptable method (user/password required)");
                    return false;
                }

                break;
            }

            if (await _reader.FillAsync(_deadline.Token).ConfigureAwait(false) <= 0)
            {
                return false;
            }
        }

        if (credentials is null)
        {
            return true;
        }

        while (true)
        {
            var r = Socks5Codec.ParseUserPass(_reader.Span, credentials, out var consumed, out var accepted);
            if (r == SocksParse.Invalid)
            {
                return false;
            }

            if (r == SocksParse.Ok)
            {
                _reader.Consume(consumed);
                await WriteAsync(new byte[] { 1, accepted ? (byte)0 : (byte)1 }).ConfigureAwait(false);
                if (!accepted)
                {
                    ProxyServer.LogRefusedRequest(_server.Logger, _client.RemoteEndPoint, 407, "SOCKS5 user/password refused (RFC 1929)");
                }

                return accepted;
            }

            if (await _reader.FillAsync(_deadline.Token).ConfigureAwait(false) <= 0)
            {
                return false;
            }
        }
    }

    private async Task<(SocksParse, int, byte, SocksAddress, bool)> ReadRequestAsync()
    {
        while (true)
        {
            var r = Socks5Codec.ParseRequest(_reader.Span, out var consumed, out var command, out var address,
                out var badType);
            if (r != SocksParse.Incomplete)
            {
                return (r, consumed, command, address, badType);
            }

            if (await _reader.FillAsync(_deadline.Token).ConfigureAwait(false) <= 0)
            {
                return (SocksParse.Invalid, 0, 0, default, false);
            }
        }
    }

    private bool PortAllowed(int port) => _server.SocksPortAllowed(port);

    private async Task ConnectAsync(SocksAddress address)
    {
        if (!PortAllowed(address.Port))
        {
            await ReplyAsync(SocksReply.NotAllowed, null).ConfigureAwait(false);
            return;
        }

        var dial = await _server.DialAsync(address.Host, address.Port, _deadline.Token).ConfigureAwait(false);
        if (dial.Connection is not { } upstream)
        {
            await ReplyAsync(dial.Failure switch
            {
                DialFailure.Forbidden => SocksReply.NotAllowed,
                DialFailure.Refused => SocksReply.ConnectionRefused,
                DialFailure.TimedOut => SocksReply.TtlExpired,
                DialFailure.NotResolved => SocksReply.HostUnreachable,
                _ => SocksReply.HostUnreachable,
            }, null).ConfigureAwait(false);
            return;
        }

        await using (upstream.ConfigureAwait(false))
        {
            using var upstreamReader = new PooledReader(upstream.Stream, BufferSize);
            _reader.Grow(BufferSize);
            _flow.SetUpstream(upstream.RemoteEndPoint, upstream.LocalEndPoint.Port, address.ToString());
            await ReplyAsync(SocksReply.Succeeded, upstream.LocalEndPoint).ConfigureAwait(false);
            await Tunnel.RunAsync(_client, _reader, upstream, upstreamReader, _flow, _deadline).ConfigureAwait(false);
        }
    }

    private async Task AssociateAsync(SocksAddress clientHint)
    {
        var udp = await _server.Network.BindUdpAsync(new IPEndPoint(_client.LocalEndPoint.Address, 0),
            _deadline.Token).ConfigureAwait(false);
        await using (udp.ConfigureAwait(false))
        {
            _flow.Kind = "socks-udp";
            _flow.SetUpstream(null, udp.LocalEndPoint.Port, clientHint.ToString());
            await ReplyAsync(SocksReply.Succeeded, udp.LocalEndPoint).ConfigureAwait(false);
            var expected = clientHint.Port != 0 ? new IPEndPoint(_client.RemoteEndPoint.Address, clientHint.Port) : null;
            var relay = new UdpRelay(_server, udp, _client.RemoteEndPoint.Address, expected, _flow, _deadline);
            var relayTask = relay.RunAsync();
            // The association ends when the control connection does (RFC 1928 section 7), or when no datagram
            // has moved for the idle time.
            _deadline.Arm();
            try
            {
                while (await _reader.FillAsync(_deadline.Token).ConfigureAwait(false) > 0)
                {
                    _reader.Consume(_reader.Available);
                }
            }
            finally
            {
                _deadline.Cancel();
                await relayTask.ConfigureAwait(false);
            }
        }
    }

    private async Task ReplyAsync(SocksReply reply, IPEndPoint? bound)
    {
        _reply = (int)reply;
        var buffer = new byte[22];
        var n = Socks5Codec.WriteReply(buffer, reply, bound);
        await WriteAsync(buffer.AsMemory(0, n)).ConfigureAwait(false);
    }

    private async Task WriteAsync(ReadOnlyMemory<byte> bytes)
    {
        await _client.Stream.WriteAsync(bytes, _deadline.Token).ConfigureAwait(false);
    }
}

/// <summary>
/// The UDP side of an association: datagrams from the client (its address only, RFC 1928 section 7) are
/// unwrapped and sent on; datagrams from destinations the client has sent to are wrapped and returned.
/// Fragments are dropped. Everything else is dropped too.
/// </summary>
internal sealed class UdpRelay
{
    private const int MaxContacted = 1024;
    private const int Headroom = 22;

    private readonly ProxyServer _server;
    private readonly IDatagramSocket _socket;
    private readonly IPAddress _clientAddress;
    private readonly Deadline _deadline;
    private readonly Flow _flow;
    private readonly HashSet<IPEndPoint> _contacted = [];
    private IPEndPoint? _client;
    private string? _lastDomain;
    private IPAddress? _lastResolved;

    /// <summary>The destinations datagrams named lately, by the raw bytes of their SOCKS address (ATYP ADDR PORT),
    /// with where they go (null: dropped). A datagram to one of them costs no parse and no allocation.</summary>
    private readonly Destination[] _destinations = new Destination[16];
    private int _nextDestination;

    private struct Destination
    {
        public byte[]? Raw;
        public int Length;
        public IPEndPoint? To;
    }

    public UdpRelay(ProxyServer server, IDatagramSocket socket, IPAddress clientAddress, IPEndPoint? expectedClient,
        Flow flow, Deadline deadline)
    {
        _server = server;
        _socket = socket;
        _clientAddress = clientAddress;
        _client = expectedClient;
        _flow = flow;
        _deadline = deadline;
    }

    public async Task RunAsync()
    {
        var buffer = ArrayPool<byte>.Shared.Rent(Headroom + 65536);
        try
        {
            while (true)
            {
                var received = await _socket.ReceiveFromAsync(buffer.AsMemory(Headroom), _deadline.Token)
                    .ConfigureAwait(false);
                var from = received.RemoteEndPoint;
                if (IsFromClient(from))
                {
                    await ForwardFromClientAsync(buffer, received.Length).ConfigureAwait(false);
                }
                else if (_client is not null && _contacted.Contains(from))
                {
                    var h = Socks5Codec.UdpHeaderLength(from);
                    Socks5Codec.WriteUdpHeader(buffer.AsSpan(Headroom - h, h), from);
                    _flow.AddDown(received.Length); // counted before it leaves, so a reader who has it sees it counted
                    await _socket.SendToAsync(buffer.AsMemory(Headroom - h, h + received.Length), _client,
                        _deadline.Token).ConfigureAwait(false);
                    _deadline.Arm();
                }
            }
        }
        catch (Exception e) when (ProxyServer.IsConnectionError(e))
        {
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private bool IsFromClient(IPEndPoint from)
    {
        var address = from.Address.IsIPv4MappedToIPv6 ? from.Address.MapToIPv4() : from.Address;
        if (!address.Equals(_clientAddress))
        {
            return false;
        }

        if (_client is not null)
        {
            return _client.Port == from.Port;
        }

        if (_contacted.Contains(from))
        {
            return false;
        }

        _client = from; // the first datagram from the client's address fixes its port
        return true;
    }

    private async Task ForwardFromClientAsync(byte[] buffer, int length)
    {
        var datagram = buffer.AsMemory(Headroom, length);
        var span = datagram.Span;
        if (span.Length < 4 || span[0] != 0 || span[1] != 0 || span[2] != 0)
        {
            return; // RSV must be 0; fragmentation is optional (RFC 1928 section 7) and fragments are dropped
        }

        IPEndPoint? to = null;
        var headerLength = 0;
        var known = false;
        foreach (ref var d in _destinations.AsSpan())
        {
            if (d.Length > 0 && span.Length >= 3 + d.Length && span.Slice(3, d.Length).SequenceEqual(d.Raw.AsSpan(0, d.Length)))
            {
                (to, headerLength, known) = (d.To, 3 + d.Length, true);
                break;
            }
        }

        if (!known)
        {
            if (Socks5Codec.ParseUdpHeader(span, out headerLength, out _, out var destination) != SocksParse.Ok)
            {
                return;
            }

            to = await DestinationAsync(destination).ConfigureAwait(false);
            ref var slot = ref _destinations[_nextDestination];
            _nextDestination = (_nextDestination + 1) % _destinations.Length;
            slot.Raw ??= new byte[Socks5Codec.MaxAddressLength];
            datagram.Span.Slice(3, headerLength - 3).CopyTo(slot.Raw);
            (slot.Length, slot.To) = (headerLength - 3, to);
        }

        if (to is null)
        {
            return;
        }

        if (_contacted.Count < MaxContacted)
        {
            _contacted.Add(to); // one lookup: no-op for a destination already contacted
        }
        else if (!_contacted.Contains(to))
        {
            return;
        }

        _deadline.Arm();
        _flow.AddUp(length - headerLength);
        await _socket.SendToAsync(datagram[headerLength..], to, _deadline.Token).ConfigureAwait(false);
    }

    /// <summary>Where a datagram to <paramref name="destination"/> goes: null when it is not allowed (a port
    /// outside the SOCKS ports, a forbidden address) or its name does not resolve to an allowed address.</summary>
    private async ValueTask<IPEndPoint?> DestinationAsync(SocksAddress destination)
    {
        if (!_server.SocksPortAllowed(destination.Port))
        {
            return null;
        }

        var address = destination.Address;
        if (address is null)
        {
            if (destination.Domain != _lastDomain)
            {
                _lastDomain = destination.Domain;
                _lastResolved = null;
                try
                {
                    var all = await _server.Options.Resolve(destination.Domain!, _deadline.Token).ConfigureAwait(false);
                    foreach (var a in all)
                    {
                        if (a.AddressFamily == _socket.LocalEndPoint.AddressFamily && !_server.IsForbiddenDestination(a))
                        {
                            _lastResolved = a;
                            break;
                        }
                    }
                }
                catch (Exception e) when (e is NetworkException or ArgumentException)
                {
                    // not resolved, or a name the resolver refuses outright (Dns: one of 255 characters without a
                    // trailing dot, which a client may send): this datagram is dropped, as the dial path answers
                }
            }

            address = _lastResolved; // chosen among the allowed addresses only
        }
        else if (_server.IsForbiddenDestination(address))
        {
            return null;
        }

        return address is null ? null : new IPEndPoint(address, destination.Port);
    }
}
