using System.Net;
using NatKit.Net;
using NatKit.Stun;
using NatKit.Turn.Protocol;

namespace NatKit.Turn.Tests.Support;

/// <summary>Hand-built STUN over a UDP socket, for tests that send what a well-behaved client never would.</summary>
public sealed class RawClient : IAsyncDisposable
{
    private readonly IDatagramSocket _socket;
    private readonly IPEndPoint _server;
    private readonly byte[] _buffer = new byte[2048];

    private RawClient(IDatagramSocket socket, IPEndPoint server)
    {
        _socket = socket;
        _server = server;
    }

    public IPEndPoint LocalEndPoint => _socket.LocalEndPoint;

    public string? Nonce { get; private set; }

    public string Realm { get; private set; } = "natkit";

    public static async Task<RawClient> OpenAsync(IPEndPoint server) =>
        new(await SystemNetwork.Instance.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0)), server);

    public delegate void Attributes(ref StunMessageWriter w);

    /// <summary>Builds a request; signed with the long-term key when <paramref name="user"/> is given.</summary>
    public byte[] Build(ushort method, Attributes? attributes, string? user = TurnHarness.User,
        string password = TurnHarness.Password, string? nonce = null)
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

        return w.Written.ToArray();
    }

    public async Task SendAsync(byte[] message) => await _socket.SendToAsync(message, _server);

    /// <summary>Sends and waits for the answer; returns it parsed (and remembers a NONCE it carries).</summary>
    public async Task<StunMessage> TransactAsync(byte[] message)
    {
        await SendAsync(message);
        using var cts = TurnHarness.Deadline();
        while (true)
        {
            var d = await _socket.ReceiveFromAsync(_buffer, cts.Token);
            var m = StunMessage.Parse(_buffer.AsSpan(0, d.Length));
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

    /// <summary>Waits for anything from the server within <paramref name="timeout"/> (real time); null if none.
    /// Only used to show that a refused packet got no answer, after a later answered request proves delivery.</summary>
    public async Task<byte[]?> TryReceiveAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            var d = await _socket.ReceiveFromAsync(_buffer, cts.Token);
            return _buffer.AsSpan(0, d.Length).ToArray();
        }
        catch (OperationCanceledException)
        {
            return null;
        }
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

    public async ValueTask DisposeAsync() => await _socket.DisposeAsync();
}
