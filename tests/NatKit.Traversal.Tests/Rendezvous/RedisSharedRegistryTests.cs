using System.Net;
using System.Net.Sockets;
using NatKit.Net;
using NatKit.TestSupport;
using NatKit.Traversal.Identity;
using NatKit.Traversal.Redis;
using NatKit.Traversal.Rendezvous;

namespace NatKit.Traversal.Tests.Rendezvous;

/// <summary>Two service instances on loopback sharing one registry through a real Redis (Debian's redis-server).</summary>
public class RedisSharedRegistryTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    [PeerFact("redis-server")]
    public async Task TwoInstances_ShareOneRegistry_ANodeAtOneLooksUpAndConnectsToANodeAtTheOther()
    {
        await using var redis = await RedisPeer.StartAsync();
        var prefix = $"test-{Guid.NewGuid():N}:";
        await using var shared1 = await RedisRendezvousRegistry.ConnectAsync(redis.Url, prefix);
        await using var shared2 = await RedisRendezvousRegistry.ConnectAsync(redis.Url, prefix);
        var options = new RendezvousServerOptions { Listen = new IPEndPoint(IPAddress.Loopback, 0) };
        await using var s1 = await RendezvousServer.StartAsync(SystemNetwork.Instance, options, shared1);
        await using var s2 = await RendezvousServer.StartAsync(SystemNetwork.Instance, options, shared2);
        Assert.NotEqual(s1.Handler.Instance, s2.Handler.Instance);

        var net = SystemNetwork.Instance;
        await using var aSocket = await net.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        await using var bSocket = await net.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        using var aIdentity = NodeIdentity.Create();
        using var bIdentity = NodeIdentity.Create();
        using var stranger = NodeIdentity.Create();
        await using var a = new RendezvousClient(aSocket, s1.LocalEndPoint, aIdentity, net.TimeProvider);
        await using var b = new RendezvousClient(bSocket, s2.LocalEndPoint, bIdentity, net.TimeProvider);
        a.StartReceiving();
        b.StartReceiving();
        var bStarted = new TaskCompletionSource<RendezvousStart>(TaskCreationOptions.RunContinuationsAsynchronously);
        b.OfferReceived += o => _ = AnswerAsync(o);

        async Task AnswerAsync(RendezvousOffer o)
        {
            try
            {
                Assert.Equal("offer via instance 1", o.Session);
                bStarted.TrySetResult(await o.AnswerAsync("answer via instance 2"));
            }
            catch (Exception e)
            {
                bStarted.TrySetException(e);
            }
        }

        await a.RegisterAsync(["candidate:a"]).WaitAsync(Deadline);
        await b.RegisterAsync(["candidate:b"]).WaitAsync(Deadline);

        // B's record is in Redis, said to be held by instance 2, with B's own signature.
        var stored = await shared1.LookupAsync(b.Id, CancellationToken.None);
        Assert.NotNull(stored);
        Assert.Equal(s2.Handler.Instance, stored.Instance);
        Assert.Equal(b.ReflexiveEndPoint, stored.Reflexive.ToEndPoint());

        // Instance 1 knows B only through Redis.
        var peer = await a.LookupAsync(b.Id).WaitAsync(Deadline);
        Assert.NotNull(peer);
        Assert.Equal(b.ReflexiveEndPoint, peer.ReflexiveEndPoint);
        Assert.Equal(["candidate:b"], peer.Candidates);
        Assert.Null(await a.LookupAsync(stranger.Id).WaitAsync(Deadline));

        // The offer crosses from instance 1 to instance 2 over the bus, the answer and the start come back.
        var connection = await a.ConnectAsync(b.Id, "offer via instance 1").WaitAsync(Deadline);
        var bStart = await bStarted.Task.WaitAsync(Deadline);
        Assert.Equal("answer via instance 2", connection.Answer.Session);
        Assert.Equal(b.ReflexiveEndPoint, connection.Answer.FromEndPoint);
        Assert.Equal(connection.Start.ConnectionId, bStart.ConnectionId);
        Assert.Equal(1, s1.Metrics.Connects);
        Assert.Equal(0, s2.Metrics.Connects);
        Assert.Equal(1, s1.Metrics.Started);
        Assert.Equal(1, s2.Handler.Registrations);
    }

    [Theory]
    [InlineData("redis://127.0.0.1:7000/3", "127.0.0.1:7000", 3, null, false)]
    [InlineData("127.0.0.1", "127.0.0.1:6379", 0, null, false)]
    [InlineData("rediss://:s%40cret@[::1]:7001", "[::1]:7001", 0, "s@cret", true)]
    [InlineData("redis://localhost", "localhost:6379", 0, null, false)]
    public void ParseUrl_ReadsHostPortDatabasePasswordAndTls(string url, string endPoint, int database,
        string? password, bool tls)
    {
        var (options, db) = RedisRendezvousRegistry.ParseUrl(url);
        Assert.Equal(endPoint, Format(options.EndPoints.Single()));
        Assert.Equal(database, db);
        Assert.Equal(password, options.Password);
        Assert.Equal(tls, options.Ssl);
    }

    [Theory]
    [InlineData("http://127.0.0.1")]
    [InlineData("redis://127.0.0.1/16")]
    [InlineData("redis://127.0.0.1/x")]
    [InlineData("redis://")]
    [InlineData("redis://h/0?x=1")]
    public void ParseUrl_RefusesWhatIsNotARedisUrl_WithTheReason(string url)
    {
        var e = Assert.Throws<FormatException>(() => RedisRendezvousRegistry.ParseUrl(url));
        Assert.StartsWith(url, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Connect_ToNothing_IsOneIOException_NamingTheUrl_WithoutThePassword()
    {
        var port = FreeTcpPort();
        var e = await Assert.ThrowsAsync<IOException>(() =>
            RedisRendezvousRegistry.ConnectAsync($"redis://:hunter2@127.0.0.1:{port}", connectTimeout: TimeSpan.FromSeconds(2)));
        Assert.Contains($"127.0.0.1:{port}", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("hunter2", e.Message, StringComparison.Ordinal);
    }

    private static string Format(EndPoint e) => e switch
    {
        IPEndPoint ip => ip.ToString(),
        DnsEndPoint dns => $"{dns.Host}:{dns.Port}",
        _ => e.ToString()!,
    };

    internal static int FreeTcpPort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }
}

/// <summary>A redis-server of the test's own on 127.0.0.1 at a free port, nothing saved to disk, killed on disposal.</summary>
internal sealed class RedisPeer : IAsyncDisposable
{
    private readonly ExternalProcess _process;

    private RedisPeer(ExternalProcess process, int port)
    {
        _process = process;
        Port = port;
    }

    public int Port { get; }

    public string Url => $"redis://127.0.0.1:{Port}";

    public static async Task<RedisPeer> StartAsync()
    {
        var port = RedisSharedRegistryTests.FreeTcpPort();
        var process = ExternalProcess.Start("redis-server",
        [
            "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "notice",
        ]);
        try
        {
            await process.WaitForOutputAsync("Ready to accept connections", TimeSpan.FromSeconds(20));
            return new RedisPeer(process, port);
        }
        catch
        {
            await process.DisposeAsync();
            throw;
        }
    }

    public ValueTask DisposeAsync() => _process.DisposeAsync();
}
