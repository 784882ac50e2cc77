using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using NatKit.Net;
using NatKit.Traversal.Identity;
using NatKit.Traversal.Peer;
using NatKit.Traversal.Rendezvous;

namespace NatKit.Traversal.Tests.Peer;

/// <summary>Two peer networks on loopback that know each other, with a real rendezvous: <see cref="A"/> forwards
/// a local port to the service <c>web</c> that <see cref="B"/> exposes.</summary>
internal sealed class LoopbackPeers : IAsyncDisposable
{
    private readonly RendezvousServer _rendezvous;

    private LoopbackPeers(RendezvousServer rendezvous, NodeIdentity a, NodeIdentity b, PeerNetwork na, PeerNetwork nb)
    {
        _rendezvous = rendezvous;
        IdentityA = a;
        IdentityB = b;
        A = na;
        B = nb;
    }

    public NodeIdentity IdentityA { get; }

    public NodeIdentity IdentityB { get; }

    public PeerNetwork A { get; }

    public PeerNetwork B { get; }

    /// <summary>A's forwarded port (to B's <c>web</c>).</summary>
    public IPEndPoint Forward => A.Forwards[0].Listen;

    public static readonly IPEndPoint Any = new(IPAddress.Loopback, 0);

    public static async Task<LoopbackPeers> StartAsync(IPEndPoint service, INetwork? network = null,
        Func<PeerNetworkOptions, PeerNetworkOptions>? tweak = null)
    {
        network ??= SystemNetwork.Instance;
        var rendezvous = await RendezvousServer.StartAsync(SystemNetwork.Instance,
            new RendezvousServerOptions { Listen = Any });
        var a = NodeIdentity.Create();
        var b = NodeIdentity.Create();
        var traversal = new TraversalOptions
        {
            Rendezvous = rendezvous.LocalEndPoint,
            ConnectTimeout = TimeSpan.FromSeconds(20),
        };
        var options = new PeerNetworkOptions { Listen = Any, Traversal = traversal };
        tweak ??= o => o;
        var na = new PeerNetwork(network, PeerNetworkHost.InMemory(a, [new PeerInfo(b.Id) { Name = "b" }], "a", FileLogger.For("a")),
            tweak(options with { Forward = [new PortForward(Any, b.Id, "web")] }));
        var nb = new PeerNetwork(network, PeerNetworkHost.InMemory(b, [new PeerInfo(a.Id) { Name = "a" }], "b", FileLogger.For("b")),
            tweak(options with { Expose = [new ExposedService("web", service)] }));
        await na.StartAsync();
        await nb.StartAsync();
        return new LoopbackPeers(rendezvous, a, b, na, nb);
    }

    public async ValueTask DisposeAsync()
    {
        await A.DisposeAsync();
        await B.DisposeAsync();
        await _rendezvous.DisposeAsync();
        IdentityA.Dispose();
        IdentityB.Dispose();
    }
}

/// <summary>A TCP service on loopback for pipe tests: echo (reads to the client's FIN, then answers everything
/// back and closes: only a carried half-close lets it answer), or HTTP/1.1 GET answered with a fixed body.</summary>
internal sealed class TestService : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private readonly byte[]? _body;

    private TestService(byte[]? body)
    {
        _body = body;
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        _loop = RunAsync();
    }

    public IPEndPoint EndPoint => (IPEndPoint)_listener.LocalEndpoint;

    /// <summary>Connections accepted so far.</summary>
    public int Accepted;

    public static TestService Echo() => new(null);

    public static TestService Http(byte[] body) => new(body);

    /// <summary>Deterministic bytes (a seeded generator), and their SHA-256.</summary>
    public static (byte[] Body, string Sha256) Blob(int length, int seed = 1)
    {
        var body = new byte[length];
        new Random(seed).NextBytes(body);
        return (body, Convert.ToHexStringLower(SHA256.HashData(body)));
    }

    private async Task RunAsync()
    {
        var clients = new List<Task>();
        try
        {
            while (true)
            {
                var c = await _listener.AcceptTcpClientAsync(_stop.Token);
                Interlocked.Increment(ref Accepted);
                clients.Add(_body is null ? EchoAsync(c) : ServeHttpAsync(c, _body));
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }

        await Task.WhenAll(clients);
    }

    private async Task EchoAsync(TcpClient client)
    {
        using var _ = client;
        try
        {
            var stream = client.GetStream();
            var all = new MemoryStream();
            await stream.CopyToAsync(all, _stop.Token);
            await stream.WriteAsync(all.GetBuffer().AsMemory(0, (int)all.Length), _stop.Token);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or SocketException)
        {
        }
    }

    private async Task ServeHttpAsync(TcpClient client, byte[] body)
    {
        using var _ = client;
        try
        {
            var stream = client.GetStream();
            var request = new StringBuilder();
            var buffer = new byte[4096];
            while (!request.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
            {
                var n = await stream.ReadAsync(buffer, _stop.Token);
                if (n == 0)
                {
                    return;
                }

                request.Append(Encoding.ASCII.GetString(buffer, 0, n));
            }

            var head = Encoding.ASCII.GetBytes(
                $"HTTP/1.1 200 OK\r\nContent-Length: {body.Length}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n");
            await stream.WriteAsync(head, _stop.Token);
            await stream.WriteAsync(body, _stop.Token);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or SocketException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _loop;
        _stop.Dispose();
    }
}

/// <summary>Debug aid: every log line to the file named by PEER_TEST_LOG (nothing when unset).</summary>
internal sealed class FileLogger(string prefix) : Microsoft.Extensions.Logging.ILogger
{
    private static readonly string? PathName = Environment.GetEnvironmentVariable("PEER_TEST_LOG");
    private static readonly Lock Gate = new();

    public static Microsoft.Extensions.Logging.ILogger? For(string prefix) => PathName is null ? null : new FileLogger(prefix);

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => true;

    public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId,
        TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        lock (Gate)
        {
            File.AppendAllText(PathName!, $"{DateTime.UtcNow:HH:mm:ss.fff} {prefix} {logLevel} {formatter(state, exception)} {exception?.Message}\n");
        }
    }
}
