using System.Net;
using NatKit.Lab;
using NatKit.Nat;
using NatKit.Stun;
using NatKit.Turn.Client;
using NatKit.Turn.Policy;
using NatKit.Turn.Server;

namespace NatKit.Turn.Tests;

/// <summary>The same server and client inside the in-memory lab: two peers behind symmetric NATs (where hole
/// punching fails) reach each other through the relay, in virtual time.</summary>
public class TurnLabTests
{
    private static readonly IPAddress ServerAddress = IPAddress.Parse("203.0.113.100");

    private static (VirtualNetwork Lab, LabHost Server, LabHost A, LabHost B) Build()
    {
        var lab = new VirtualNetwork(seed: 11);
        var internet = lab.AddSegment("internet");
        var homeA = lab.AddSegment("home-a", "192.168.1.0/24");
        var homeB = lab.AddSegment("home-b", "192.168.2.0/24");
        lab.AddRouter("nat-a", NatPresets.Symmetric, homeA, "192.168.1.1", internet, "198.51.100.1");
        lab.AddRouter("nat-b", NatPresets.Symmetric, homeB, "192.168.2.1", internet, "198.51.100.2");
        var server = lab.AddHost("turn", internet, "203.0.113.100");
        var a = lab.AddHost("a", homeA, "192.168.1.10");
        var b = lab.AddHost("b", homeB, "192.168.2.10");
        return (lab, server, a, b);
    }

    private static TurnServerOptions Options(PeerPolicy policy) => new()
    {
        UdpListen = [new IPEndPoint(ServerAddress, 3478)],
        RelayAddress = ServerAddress,
        Users = new Dictionary<string, string> { ["a"] = "pa", ["b"] = "pb" },
        Policy = policy,
    };

    [Fact]
    public void TwoPeersBehindSymmetricNats_TalkThroughTheRelay()
    {
        var (lab, serverHost, a, b) = Build();
        var received = lab.Run(async () =>
        {
            // The lab's "internet" is TEST-NET: the relay's own range must be allowed explicitly here.
            await using var server = await TurnServer.StartAsync(serverHost,
                Options(new PeerPolicy(allow: [PeerRule.Parse("203.0.113.0/24")])));
            await using var ca = await TurnClient.AllocateAsync(a, new TurnClientOptions(new IPEndPoint(ServerAddress, 3478), "a", "pa"));
            await using var cb = await TurnClient.AllocateAsync(b, new TurnClientOptions(new IPEndPoint(ServerAddress, 3478), "b", "pb"));
            Assert.Equal(IPAddress.Parse("198.51.100.1"), ca.MappedEndPoint.Address);
            await ca.BindChannelAsync(cb.RelayedEndPoint);
            await cb.BindChannelAsync(ca.RelayedEndPoint);
            await ca.SendAsync("over the relay"u8.ToArray(), cb.RelayedEndPoint);
            var buffer = new byte[100];
            var r = await cb.ReceiveAsync(buffer);
            Assert.Equal(ca.RelayedEndPoint, r.Peer);

            // Keep-alive holds the allocation past its 600 s lifetime, in virtual time.
            await Task.Delay(TimeSpan.FromMinutes(25), serverHost.TimeProvider);
            Assert.Equal(2, server.AllocationCount);
            await cb.SendAsync("still there"u8.ToArray(), ca.RelayedEndPoint);
            var back = await ca.ReceiveAsync(buffer);
            return System.Text.Encoding.UTF8.GetString(buffer, 0, back.Length);
        });
        Assert.Equal("still there", received);
    }

    [Fact]
    public void Rfc8489_S6_2_1_Client_GivesUpOnASilentServer_After39_5Seconds()
    {
        var (lab, serverHost, a, _) = Build();
        var elapsed = lab.Run(async () =>
        {
            // A socket that is bound but never answers: the Allocate goes unanswered seven times.
            await using var silent = await serverHost.BindUdpAsync(new IPEndPoint(ServerAddress, 3478));
            var time = a.TimeProvider;
            var start = time.GetTimestamp();
            await Assert.ThrowsAsync<TimeoutException>(() =>
                TurnClient.AllocateAsync(a, new TurnClientOptions(new IPEndPoint(ServerAddress, 3478), "a", "pa")));
            return time.GetElapsedTime(start);
        });
        Assert.Equal(TimeSpan.FromMilliseconds(39_500), elapsed);
    }

    [Fact]
    public void DefaultPolicy_InTheLab_RefusesTheDocumentationRange()
    {
        var (lab, serverHost, a, _) = Build();
        var code = lab.Run(async () =>
        {
            await using var server = await TurnServer.StartAsync(serverHost, Options(PeerPolicy.Default));
            await using var ca = await TurnClient.AllocateAsync(a, new TurnClientOptions(new IPEndPoint(ServerAddress, 3478), "a", "pa"));
            var e = await Assert.ThrowsAsync<TurnException>(() => ca.CreatePermissionAsync(IPAddress.Parse("203.0.113.7")));
            return e.Code;
        });
        Assert.Equal(403, code);
    }

    /// <summary>True once the other side closed (FIN or reset).</summary>
    private static async Task<bool> ClosedAsync(NatKit.Net.IStreamConnection c)
    {
        try
        {
            return await c.Stream.ReadAsync(new byte[64]) == 0;
        }
        catch (IOException)
        {
            return true;
        }
    }

    [Fact]
    public void TcpStrangers_InTheLab_OneSlotPerNatAddress_AndSilenceEndsAfterTheHandshakeWindow()
    {
        var (lab, serverHost, a, b) = Build();
        var (rejected, silentFor, answered, timedOut) = lab.Run(async () =>
        {
            var ep = new IPEndPoint(ServerAddress, 3478);
            await using var server = await TurnServer.StartAsync(serverHost, Options(PeerPolicy.Default) with
            {
                TcpListen = [ep],
                MaxTcpConnectionsPerAddress = 1,
                MaxTcpConnections = 4,
            });
            var time = a.TimeProvider;
            var start = time.GetTimestamp();
            await using var silent = await a.ConnectTcpAsync(ep);
            await using var second = await a.ConnectTcpAsync(ep); // the same NAT address: over its cap
            var rejected = await ClosedAsync(second);

            // Another NAT address is served: a Binding over TCP answered with its mapped address.
            await using var other = await b.ConnectTcpAsync(ep);
            var request = new byte[20];
            var w = new StunMessageWriter(request, StunMethods.Binding, StunClass.Request, StunTransactionId.NewRandom());
            await other.Stream.WriteAsync(request.AsMemory(0, w.Length));
            var answer = new byte[128];
            var n = await other.Stream.ReadAsync(answer);
            var mapped = StunMessage.Parse(answer.AsSpan(0, n))?.Class == StunClass.SuccessResponse;

            Assert.True(await ClosedAsync(silent));
            return (rejected, time.GetElapsedTime(start), mapped, server.Metrics.ConnectionsTimedOut);
        });
        Assert.True(rejected);
        Assert.InRange(silentFor, TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(10.5));
        Assert.True(answered);
        Assert.Equal(1, timedOut);
    }
}
