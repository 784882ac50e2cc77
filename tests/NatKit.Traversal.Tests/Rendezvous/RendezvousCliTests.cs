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

    private static int FreeUdpPort()
    {
        using var s = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork,
            System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp);
        s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)s.LocalEndPoint!).Port;
    }
}
