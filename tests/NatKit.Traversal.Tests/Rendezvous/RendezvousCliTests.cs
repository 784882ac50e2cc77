using System.Net;
using NatKit.Net;
using NatKit.TestSupport;
using NatKit.Traversal.Identity;
using NatKit.Traversal.Rendezvous;

namespace NatKit.Traversal.Tests.Rendezvous;

/// <summary>`natkit rendezvous serve` as a user runs it.</summary>
public class RendezvousCliTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    private static string Natkit => Path.Combine(AppContext.BaseDirectory, "natkit.dll");

    [Theory]
    [InlineData("--max-registrations 0", "--max-registrations 0: must be at least 1")]
    [InlineData("--rate-limit abc", "--rate-limit abc: expected a whole number.")]
    [InlineData("--min-lifetime 300 --max-lifetime 200", "--min-lifetime/--max-lifetime 300/200:")]
    [InlineData("--timestamp-window 90", "--timestamp-window 90: must be positive and shorter than --min-lifetime")]
    [InlineData("--redis http://x", "--redis http://x: expected redis://")]
    [InlineData("--listen-to 1", "'--listen-to'")]
    public async Task Serve_ABadFlag_IsOneSentenceNamingIt_ExitCode2(string arguments, string expected)
    {
        var (code, output, errors) = await ExternalProcess.RunAsync("dotnet",
            [Natkit, "rendezvous", "serve", .. arguments.Split(' ')], Deadline);
        var all = output + errors;
        Assert.Equal(2, code);
        Assert.Contains(expected, all, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", all, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", all, StringComparison.Ordinal);
        Assert.Single(all.Trim().Split('\n', StringSplitOptions.RemoveEmptyEntries), l => l.Contains("natkit:", StringComparison.Ordinal));
    }

    [PeerFact("redis-server")]
    public async Task Serve_WithRedis_RegistersANode_WhoseRecordTheOtherInstancesSee()
    {
        await using var redis = await RedisPeer.StartAsync();
        var port = FreeUdpPort();
        await using var server = ExternalProcess.Start("dotnet",
            [Natkit, "rendezvous", "serve", "--listen", $"127.0.0.1:{port}", "--redis", redis.Url]);
        await server.WaitForOutputAsync("Ctrl+C stops", Deadline);
        Assert.Contains("shared through Redis", server.Output, StringComparison.Ordinal);

        var net = SystemNetwork.Instance;
        await using var socket = await net.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        using var identity = NodeIdentity.Create();
        await using var client = new RendezvousClient(socket, new IPEndPoint(IPAddress.Loopback, port), identity,
            net.TimeProvider);
        client.StartReceiving();
        await client.RegisterAsync(["candidate:cli"]).WaitAsync(Deadline);
        Assert.Equal(socket.LocalEndPoint, client.ReflexiveEndPoint);

        await using var shared = await NatKit.Traversal.Redis.RedisRendezvousRegistry.ConnectAsync(redis.Url);
        var record = await shared.LookupAsync(identity.Id, CancellationToken.None);
        Assert.NotNull(record);
        Assert.Equal(socket.LocalEndPoint, record.Reflexive.ToEndPoint());
    }

    /// <summary>SIGTERM drains: a connection attempt in progress runs to its Start while a new Connect is refused
    /// with 508, then the process prints its summary and exits 0, before --drain-timeout.</summary>
    [Fact]
    public async Task Sigterm_LetsAnAttemptInProgressFinish_RefusesANewOne508_ThenExits0()
    {
        // port 0 and the one bound read back from the banner: no window for another test to take a "free" port
        await using var server = ExternalProcess.Start("dotnet",
            [Natkit, "rendezvous", "serve", "--listen", "127.0.0.1:0", "--drain-timeout", "600"]);
        await server.WaitForOutputAsync("Ctrl+C stops", Deadline);
        var port = int.Parse(System.Text.RegularExpressions.Regex.Match(server.Output, @"127\.0\.0\.1:([0-9]+)").Groups[1].Value,
            System.Globalization.CultureInfo.InvariantCulture);

        var net = SystemNetwork.Instance;
        var service = new IPEndPoint(IPAddress.Loopback, port);
        await using var aSocket = await net.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        await using var bSocket = await net.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        await using var cSocket = await net.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        using var aId = NodeIdentity.Create();
        using var bId = NodeIdentity.Create();
        using var cId = NodeIdentity.Create();
        await using var a = new RendezvousClient(aSocket, service, aId, net.TimeProvider);
        await using var b = new RendezvousClient(bSocket, service, bId, net.TimeProvider);
        await using var c = new RendezvousClient(cSocket, service, cId, net.TimeProvider);
        a.StartReceiving();
        b.StartReceiving();
        c.StartReceiving();

        // b holds its answer until the test lets it go: the attempt stays in progress at the service meanwhile
        var offered = new TaskCompletionSource<RendezvousOffer>(TaskCreationOptions.RunContinuationsAsynchronously);
        b.OfferReceived += o => offered.TrySetResult(o);
        await a.RegisterAsync(["candidate:a"]).WaitAsync(Deadline);
        await b.RegisterAsync(["candidate:b"]).WaitAsync(Deadline);
        await c.RegisterAsync(["candidate:c"]).WaitAsync(Deadline);
        var connecting = a.ConnectAsync(b.Id, "a's offer");
        var offer = await offered.Task.WaitAsync(Deadline);

        server.Signal(15);
        await server.WaitForOutputAsync("draining: 1 connection attempt(s)", Deadline);
        var refused = await Assert.ThrowsAsync<RendezvousException>(() => c.ConnectAsync(b.Id, "c's offer").WaitAsync(Deadline));
        Assert.Equal(RendezvousErrors.InsufficientCapacity, refused.Code);
        Assert.False(server.HasExited);

        var bStart = offer.AnswerAsync("b's answer");
        await connecting.WaitAsync(Deadline);
        await bStart.WaitAsync(Deadline);
        Assert.Equal(0, await server.WaitForExitAsync(Deadline));
        Assert.Contains("stopped: 0 attempt(s) cut, 1 finished while draining", server.Output, StringComparison.Ordinal);
    }

    private static int FreeUdpPort()
    {
        using var s = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork,
            System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp);
        s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)s.LocalEndPoint!).Port;
    }
}
