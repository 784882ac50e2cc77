using System.Net;
using System.Text;
using NatKit.Lab;
using NatKit.Nat;
using NatKit.Stun.Server;
using NatKit.Traversal.Identity;
using NatKit.Traversal.Rendezvous;
using NatKit.Turn.Policy;
using NatKit.Turn.Server;

namespace NatKit.Traversal.Tests;

/// <summary>
/// Two <see cref="TraversalNode"/>s behind the lab's real NAT engine find each other through a real rendezvous and
/// STUN server, in virtual time: the method each pair of NAT behaviours calls for (plain checks, port prediction,
/// birthday probing) is the one that connects, and datagrams then flow both ways over the path.
/// </summary>
public sealed class TraversalNodeLabTests
{
    private static readonly NatPolicy SequentialSymmetric = NatPresets.Symmetric with
    {
        PortAssignment = PortAssignment.Sequential,
    };

    [Fact]
    public void PortRestrictedConesConnectDirectlyOverReflexiveCandidates()
    {
        var r = TraversalLab.Run(NatPresets.PortRestrictedCone, NatPresets.PortRestrictedCone, seed: 1);
        Assert.True(r.Path == PathKind.Direct, r.Detail);
        Assert.True(r.Method is TraversalMethod.Reflexive or TraversalMethod.PeerReflexive, r.Detail);
    }

    [Fact]
    public void SequentialSymmetricOnBothSidesConnectsByPrediction()
    {
        var r = TraversalLab.Run(SequentialSymmetric, SequentialSymmetric, seed: 2);
        Assert.True(r.Path == PathKind.Direct, r.Detail);
        Assert.Equal(TraversalMethod.Prediction, r.Method);
    }

    [Fact]
    public void SequentialSymmetricAgainstPortRestrictedConnectsByPrediction()
    {
        var r = TraversalLab.Run(SequentialSymmetric, NatPresets.PortRestrictedCone, seed: 3);
        Assert.True(r.Path == PathKind.Direct, r.Detail);
        Assert.Equal(TraversalMethod.Prediction, r.Method);
    }

    [Fact]
    public void RandomSymmetricAgainstPortRestrictedConnectsByBirthdayProbing()
    {
        var r = TraversalLab.Run(NatPresets.TailscaleHard, NatPresets.PortRestrictedCone, seed: 4);
        Assert.True(r.Path == PathKind.Direct, r.Detail);
        Assert.Equal(TraversalMethod.Birthday, r.Method);
        Assert.InRange(r.ProbesSent, 1, 4 * 1024);
    }

    [Fact]
    public void PortRestrictedAgainstRandomSymmetricConnectsByBirthdayProbingToo()
    {
        var r = TraversalLab.Run(NatPresets.PortRestrictedCone, NatPresets.TailscaleHard, seed: 5);
        Assert.True(r.Path == PathKind.Direct, r.Detail);
        Assert.Equal(TraversalMethod.Birthday, r.Method);
    }

    [Fact]
    public void RandomSymmetricOnBothSidesFindsNoDirectPathWithoutARelay()
    {
        var r = TraversalLab.Run(NatPresets.TailscaleHard, NatPresets.TailscaleHard, seed: 6,
            connectTimeout: TimeSpan.FromSeconds(10), relay: false);
        Assert.Null(r.Path);
    }

    [Fact]
    public void RandomSymmetricOnBothSidesConnectsThroughTheRelay()
    {
        var r = TraversalLab.Run(NatPresets.TailscaleHard, NatPresets.TailscaleHard, seed: 6);
        Assert.True(r.Path == PathKind.Relay, r.Detail);
        Assert.Equal(TraversalMethod.Relay, r.Method);
    }

    [Fact]
    public void SequentialAgainstRandomSymmetricConnectsThroughTheRelay()
    {
        var r = TraversalLab.Run(SequentialSymmetric, NatPresets.TailscaleHard, seed: 8);
        Assert.True(r.Path == PathKind.Relay, r.Detail);
    }

    [Fact]
    public void OpenHostsConnectOverHostCandidates()
    {
        var r = TraversalLab.Run(null, null, seed: 7);
        Assert.True(r.Path == PathKind.Direct, r.Detail);
        Assert.Equal(TraversalMethod.Host, r.Method);
    }
}

/// <summary>A small lab for node tests: the internet with the rendezvous/STUN host, each peer behind its NAT (or
/// on the internet when the policy is null).</summary>
internal static class TraversalLab
{
    public static readonly IPEndPoint Rendezvous = new(IPAddress.Parse("203.0.113.10"), 3479);

    public static readonly IPEndPoint[] StunServers =
    [
        new(IPAddress.Parse("203.0.113.10"), 3478),
        new(IPAddress.Parse("203.0.113.11"), 3478),
        new(IPAddress.Parse("203.0.113.11"), 3480),
    ];

    public sealed record Result(PathKind? Path, TraversalMethod? Method, TimeSpan TimeToConnect, long ProbesSent,
        string Detail);

    public static readonly IPEndPoint Turn = new(IPAddress.Parse("203.0.113.20"), 3478);

    /// <summary>The lab: the internet with the services host (rendezvous, STUN) and the TURN host, and peers a and b
    /// behind their NATs.</summary>
    public sealed record Topology(VirtualNetwork Lab, LabHost Services, LabHost TurnHost, LabHost A, LabHost B);

    public static Topology Build(NatPolicy? a, NatPolicy? b, int seed, LinkProfile? link = null)
    {
        var lab = new VirtualNetwork(seed);
        var internet = lab.AddSegment("internet", link: link ?? new LinkProfile { Latency = TimeSpan.FromMilliseconds(5) });
        var services = lab.AddHost("services", internet, "203.0.113.10", "203.0.113.11");
        var turnHost = lab.AddHost("turn", internet, Turn.Address.ToString());
        return new Topology(lab, services, turnHost, Peer(lab, internet, a, 0), Peer(lab, internet, b, 1));
    }

    /// <summary>The rendezvous, STUN and TURN servers on the topology's internet (run inside the lab).</summary>
    public static async Task<IAsyncDisposable> StartServersAsync(Topology t)
    {
        var rendezvous = await RendezvousServer.StartAsync(t.Services,
            new RendezvousServerOptions { Listen = Rendezvous });
        var stun = await StunServer.StartAsync(t.Services, new StunServerOptions
        {
            Primary = StunServers[0],
            AlternateAddress = StunServers[1].Address,
            AlternatePort = StunServers[2].Port,
            EnableTcp = false,
            RateLimitPerSecond = 0,
        });
        var turn = await TurnServer.StartAsync(t.TurnHost, new TurnServerOptions
        {
            UdpListen = [Turn],
            RelayAddress = Turn.Address,
            Users = new Dictionary<string, string> { ["lab"] = "lab-password" },
            Policy = new PeerPolicy(allow: new[] { "198.51.100.0/24", "203.0.113.0/24" }.Select(PeerRule.Parse)),
            UnauthenticatedRequestsPerSecond = 0,
        });
        return new Servers(rendezvous, stun, turn);
    }

    /// <summary>The traversal's options for a node in the topology (the lab's random source, its servers).</summary>
    public static TraversalOptions Options(Topology t, bool relay = true, TimeSpan? connectTimeout = null) => new()
    {
        Turn = relay ? new TurnServerCredentials(Turn, "lab", "lab-password") : null,
        Rendezvous = Rendezvous,
        StunServers = StunServers,
        Random = t.Lab.Random,
        ConnectTimeout = connectTimeout ?? TimeSpan.FromSeconds(30),
    };

    public static Result Run(NatPolicy? a, NatPolicy? b, int seed, TimeSpan? connectTimeout = null,
        LinkProfile? link = null, bool relay = true)
    {
        var t = Build(a, b, seed, link);
        return t.Lab.Run(async () =>
        {
            await using var servers = await StartServersAsync(t);
            var options = Options(t, relay, connectTimeout);
            await using var nodeA = await TraversalNode.StartAsync(t.A, new IPEndPoint(IPAddress.Any, 0),
                NodeIdentity.Create(), options);
            await using var nodeB = await TraversalNode.StartAsync(t.B, new IPEndPoint(IPAddress.Any, 0),
                NodeIdentity.Create(), options);
            var accept = nodeB.AcceptAsync();
            PeerConnection ca;
            try
            {
                ca = await nodeA.ConnectAsync(nodeB.Id);
            }
            catch (TraversalException e)
            {
                return new Result(null, null, TimeSpan.Zero, 0, e.Message);
            }

            await using var _ = ca;
            await using var cb = await accept;
            Assert.Equal("ping", await ExchangeAsync(ca, cb, "ping", t.Lab.TimeProvider));
            Assert.Equal("pong", await ExchangeAsync(cb, ca, "pong", t.Lab.TimeProvider));
            return new Result(ca.Path, ca.Method, ca.TimeToConnect, ca.ProbesSent + cb.ProbesSent, ca.ToString());
        });
    }

    private sealed class Servers(IAsyncDisposable rendezvous, IAsyncDisposable stun, IAsyncDisposable turn)
        : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await turn.DisposeAsync();
            await stun.DisposeAsync();
            await rendezvous.DisposeAsync();
        }
    }

    /// <summary>Sends <paramref name="text"/> from one side until the other receives a datagram (links may lose
    /// some), and returns what it received.</summary>
    public static async Task<string> ExchangeAsync(PeerConnection from, PeerConnection to, string text,
        TimeProvider time)
    {
        var buffer = new byte[64];
        for (var attempt = 0; attempt < 20; attempt++)
        {
            await from.Socket.SendToAsync(Encoding.ASCII.GetBytes(text), from.RemoteEndPoint);
            using var wait = new CancellationTokenSource(TimeSpan.FromMilliseconds(500), time);
            try
            {
                var got = await to.Socket.ReceiveFromAsync(buffer, wait.Token);
                return Encoding.ASCII.GetString(buffer, 0, got.Length);
            }
            catch (OperationCanceledException)
            {
            }
        }

        return "";
    }

    private static LabHost Peer(VirtualNetwork lab, LabSegment internet, NatPolicy? policy, int side)
    {
        var name = side == 0 ? "a" : "b";
        if (policy is null)
        {
            return lab.AddHost(name, internet, $"198.51.100.{10 + side}");
        }

        var lan = lab.AddSegment($"lan-{name}", $"192.168.{1 + side}.0/24");
        lab.AddRouter($"nat-{name}", policy, lan, $"192.168.{1 + side}.1", internet, $"198.51.100.{1 + side}");
        return lab.AddHost(name, lan, $"192.168.{1 + side}.10");
    }
}
