using System.Net;
using NatKit.Net;
using NatKit.Stun;
using NatKit.Turn.Protocol;

namespace NatKit.Turn.Tests.Support;

/// <summary>Hand-built STUN over a UDP socket or a TCP connection, for tests that send what a well-behaved
/// client never would.</summary>
public sealed class RawClient : IAsyncDisposable
{
    private readonly IDatagramSocket? _socket;
    private readonly IStreamConnection? _connection;
    private readonly IPEndPoint _server;
    private readonly byte[] _buffer = new byte[2048];
    private int _filled; // stream bytes buffered beyond the last frame handed out

    private RawClient(IDatagramSocket socket, IPEndPoint server)
    {
        _socket = socket;
        _server = server;
    }

    private RawClient(IStreamConnection connection, IPEndPoint server)
    {
        _connection = connection;
        _server = server;
    }

    public IPEndPoint LocalEndPoint => _socket?.LocalEndPoint ?? _connection!.LocalEndPoint;

    public string? Nonce { get; private set; }

    public string Realm { get; private set; } = "natkit";

    public static async Task<RawClient> OpenAsync(IPEndPoint server) =>
        new(await SystemNetwork.Instance.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0)), server);

    /// <summary>A TCP connection to <paramref name="server"/>, from <paramref name="local"/> if given.</summary>
    public static async Task<RawClient> ConnectTcpAsync(IPEndPoint server, IPEndPoint? local = null)
    {
        using var cts = TurnHarness.Deadline();
        return new(await SystemNetwork.Instance.ConnectTcpAsync(server, local, cts.Token), server);
    }

    public delegate void Attributes(ref StunMessageWriter w);

    /// <summary>Builds a request; signed with the long-term key when <paramref name="user"/> is given, with a
    /// FINGERPRINT when <paramref name="fingerprint"/>.</summary>
    public byte[] Build(ushort method, Attributes? attributes, string? user = TurnHarness.User,
        string password = TurnHarness.Password, string? nonce = null, bool fingerprint = false)
    {
        var buffer = new byte[1024];
        var w = new StunMessageWriter(buffer, method, StunClass.Request, StunTransactionId.NewRandom());
        attributes?.Invoke(ref w);
        if (user is not null)
        {
            w.AddString(StunAttributeType.Username, user);
            w.AddString(StunAttributeType.Realm, Realm);
            w.AddString(StunAttributeType.Nonce, nonce ?? Nonce ?? "none");
            w.AddMessageIntegrity(StunCredentials.LongTermKey(user, Realm, password));
        }

        if (fingerprint)
        {
            w.AddFingerprint();
        }

        return w.Written.ToArray();
    }

    public async Task SendAsync(byte[] message)
    {
        if (_connection is not null)
        {
            await _connection.Stream.WriteAsync(message);
        }
        else
        {
            await _socket!.SendToAsync(message, _server);
        }
    }

    /// <summary>Sends and waits for the answer; returns it parsed (and remembers a NONCE it carries).</summary>
    public async Task<StunMessage> TransactAsync(byte[] message)
    {
        await SendAsync(message);
        using var cts = TurnHarness.Deadline();
        while (true)
        {
            var m = StunMessage.Parse(await ReceiveAsync(cts.Token));
            if (m is null || m.TransactionId != StunMessage.Parse(message)!.TransactionId)
            {
                continue;
            }

            var nonce = m.Attributes.FirstOrDefault(a => a.Type == StunAttributeType.Nonce);
            if (nonce is not null)
            {
                Nonce = System.Text.Encoding.UTF8.GetString(nonce.Value);
            }

            return m;
        }
    }

    /// <summary>The next datagram, or the next STUN/ChannelData frame off the stream.</summary>
    private async Task<byte[]> ReceiveAsync(CancellationToken cancellationToken)
    {
        if (_connection is null)
        {
            var d = await _socket!.ReceiveFromAsync(_buffer, cancellationToken);
            return _buffer.AsSpan(0, d.Length).ToArray();
        }

        while (true)
        {
            if (!StunFraming.TryGetFrameLength(_buffer.AsSpan(0, _filled), out var length))
            {
                throw new InvalidDataException("the server's stream lost its framing");
            }

            if (length > 0 && length <= _filled)
            {
                var frame = _buffer.AsSpan(0, length).ToArray();
                _buffer.AsSpan(length, _filled - length).CopyTo(_buffer);
                _filled -= length;
                return frame;
            }

            var n = await _connection.Stream.ReadAsync(_buffer.AsMemory(_filled), cancellationToken);
            if (n == 0)
            {
                throw new EndOfStreamException("the server closed the connection");
            }

            _filled += n;
        }
    }

    /// <summary>True once the server has closed the TCP connection (FIN or reset); false if a frame or the
    /// test's deadline comes first. Waits on the socket, not on a timer.</summary>
    public async Task<bool> IsClosedByServerAsync()
    {
        using var cts = TurnHarness.Deadline();
        try
        {
            var n = await _connection!.Stream.ReadAsync(_buffer.AsMemory(_filled), cts.Token);
            return n == 0;
        }
        catch (IOException)
        {
            return true; // reset
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>Closes the sending side, then reads and discards whatever the server sends until it closes the
    /// connection; true if it did before the test's deadline.</summary>
    public async Task<bool> HangUpAndDrainAsync()
    {
        _connection!.ShutdownSend();
        using var cts = TurnHarness.Deadline();
        try
        {
            while (await _connection!.Stream.ReadAsync(_buffer, cts.Token) > 0)
            {
            }

            return true;
        }
        catch (IOException)
        {
            return true; // reset
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>Writes bytes that may be refused: false if the server has already closed the connection.</summary>
    public async Task<bool> TryWriteAsync(ReadOnlyMemory<byte> bytes)
    {
        try
        {
            await _connection!.Stream.WriteAsync(bytes);
            return true;
        }
        catch (IOException)
        {
            return false;
        }
    }

    /// <summary>Closes the sending side, so the server sees the client leave, and waits for its close.</summary>
    public async Task<bool> HangUpAsync()
    {
        _connection!.ShutdownSend();
        return await IsClosedByServerAsync();
    }

    /// <summary>Waits for anything from the server within <paramref name="timeout"/> (real time); null if none.
    /// Only used to show that a refused packet got no answer, after a later answered request proves delivery.</summary>
    public async Task<byte[]?> TryReceiveAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            return await ReceiveAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }

    /// <summary>A Binding request over this client, answered: proof the server still serves it.</summary>
    public async Task<bool> BindingAnsweredAsync()
    {
        var m = await TransactAsync(Build(StunMethods.Binding, null, user: null));
        return m.Class == StunClass.SuccessResponse;
    }

    public static int ErrorCode(StunMessage m)
    {
        var e = m.Attributes.FirstOrDefault(a => a.Type == StunAttributeType.ErrorCode);
        return e is null ? 0 : ((e.Value[2] & 7) * 100) + e.Value[3];
    }

    /// <summary>Authenticates (401 then a signed Allocate) and returns the success response.</summary>
    public async Task<StunMessage> AllocateAsync(string user = TurnHarness.User, string password = TurnHarness.Password)
    {
        var first = await TransactAsync(Build(TurnMethods.Allocate, RequestUdp, user: null));
        if (ErrorCode(first) != 401)
        {
            throw new InvalidOperationException($"expected 401, got {ErrorCode(first)}");
        }

        return await TransactAsync(Build(TurnMethods.Allocate, RequestUdp, user, password));
    }

    public static void RequestUdp(ref StunMessageWriter w) =>
        w.AddUInt32(TurnAttributeType.RequestedTransport, (uint)TurnLimits.TransportUdp << 24);

    public async ValueTask DisposeAsync()
    {
        if (_connection is not null)
        {
            await _connection.DisposeAsync();
        }
        else
        {
            await _socket!.DisposeAsync();
        }
    }
}
