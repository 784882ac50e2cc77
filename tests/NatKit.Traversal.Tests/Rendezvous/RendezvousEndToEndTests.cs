using System.Net;
using NatKit.Lab;
using NatKit.Nat;
using NatKit.Net;
using NatKit.Stun;
using NatKit.Traversal.Identity;
using NatKit.Traversal.Rendezvous;

namespace NatKit.Traversal.Tests.Rendezvous;

/// <summary>
/// The service and two nodes end to end, once on real loopback sockets and once in the lab behind real NAT engines
/// (the same scenario code: only the networks differ).
/// </summary>
public class RendezvousEndToEndTests
{
    private static readonly IPAddress ServerAddress = IPAddress.Parse("203.0.113.100");

    internal sealed record Outcome(
        IPEndPoint AReflexive,
        IPEndPoint BReflexive,
        RendezvousPeer? BAsLookedUpByA,
        RendezvousOffer Offer,
        RendezvousConnection Connection,
        RendezvousStart BStart,
        IPEndPoint? ABinding,
        bool ClaimedForeign,
        RendezvousMetrics Metrics);

    /// <summary>A registers and looks B up, connects with an offer; B answers; both get a Start.</summary>
    internal static async Task<Outcome> ScenarioAsync(INetwork serverNetwork, IPEndPoint listen, INetwork aNetwork,
        IPAddress aAddress, INetwork bNetwork, IPAddress bAddress, IPEndPoint? serverSeenAs = null,
        RendezvousServerOptions? options = null)
    {
        await using var server = await RendezvousServer.StartAsync(serverNetwork,
            (options ?? new RendezvousServerOptions()) with { Listen = listen });
        return await NodesAsync(server, serverSeenAs ?? server.LocalEndPoint, aNetwork, aAddress, bNetwork, bAddress);
    }

    /// <summary>The nodes' part of <see cref="ScenarioAsync"/>, against a service already running.</summary>
    internal static async Task<Outcome> NodesAsync(RendezvousServer server, IPEndPoint target, INetwork aNetwork,
        IPAddress aAddress, INetwork bNetwork, IPAddress bAddress)
    {
        await using var aSocket = await aNetwork.BindUdpAsync(new IPEndPoint(aAddress, 0));
        await using var bSocket = await bNetwork.BindUdpAsync(new IPEndPoint(bAddress, 0));
        using var aIdentity = NodeIdentity.Create();
        using var bIdentity = NodeIdentity.Create();
        await using var a = new RendezvousClient(aSocket, target, aIdentity, aNetwork.TimeProvider);
        await using var b = new RendezvousClient(bSocket, target, bIdentity, bNetwork.TimeProvider);
        a.StartReceiving();
        b.StartReceiving();

        RendezvousOffer? offer = null;
        var bStarted = new TaskCompletionSource<RendezvousStart>();
        b.OfferReceived += o =>
        {
            offer = o;
            _ = AnswerAsync(o);
        };

        async Task AnswerAsync(RendezvousOffer o)
        {
            try
            {
                bStarted.TrySetResult(await o.AnswerAsync("b's answer: ufrag b, candidates ..."));
            }
            catch (Exception e)
            {
                bStarted.TrySetException(e);
            }
        }

        await a.RegisterAsync(["candidate:1 1 udp 2130706431 " + aAddress + " 1 typ host"]);
        await b.RegisterAsync(["candidate:1 1 udp 2130706431 " + bAddress + " 1 typ host"]);
        var peer = await a.LookupAsync(b.Id);
        var connection = await a.ConnectAsync(b.Id, "a's offer: ufrag a, candidates ...");
        var bStart = await bStarted.Task;
        // STUN Binding on the service's port, from the same socket.
        var binding = await a.BindingAsync();
        // What is not the service's stays for whoever else shares the socket: a STUN response from another server,
        // and the service's own address sending something that is not one of its messages.
        var foreign = new byte[StunMessageReader.HeaderLength];
        var w = new StunMessageWriter(foreign, StunMethods.Binding, StunClass.SuccessResponse,
            StunTransactionId.NewRandom());
        Assert.Equal(foreign.Length, w.Length);
        var claimed = a.TryReceive(foreign, target) || a.TryReceive(foreign, new IPEndPoint(target.Address, target.Port + 1)) ||
                      a.TryReceive("not stun at all"u8, target);
        return new Outcome(a.ReflexiveEndPoint!, b.ReflexiveEndPoint!, peer, offer!, connection, bStart, binding,
            claimed, server.Metrics);
    }

    [Fact]
    public async Task OnLoopback_TwoNodesRegisterLookUpConnectAndBothGetAStart()
    {
        var net = SystemNetwork.Instance;
        var loopback = IPAddress.Loopback;
        var o = await ScenarioAsync(net, new IPEndPoint(loopback, 0), net, loopback, net, loopback)
            .WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(loopback, o.AReflexive.Address);
        Assert.Equal(o.AReflexive, o.ABinding);
        Assert.False(o.ClaimedForeign);
        Assert.NotNull(o.BAsLookedUpByA);
        Assert.Equal(o.BReflexive, o.BAsLookedUpByA.ReflexiveEndPoint);
        Assert.Equal(o.AReflexive, o.Offer.FromEndPoint);
        Assert.Equal("a's offer: ufrag a, candidates ...", o.Offer.Session);
        Assert.Equal("b's answer: ufrag b, candidates ...", o.Connection.Answer.Session);
        Assert.Equal(o.BReflexive, o.Connection.Answer.FromEndPoint);
        Assert.Equal(o.Connection.Start.ConnectionId, o.BStart.ConnectionId);
        // On loopback both round trips are tiny: both wait about the margin.
        var margin = new RendezvousServerOptions().StartMargin;
        Assert.InRange(o.Connection.Start.Delay, TimeSpan.Zero, margin + TimeSpan.FromMilliseconds(50));
        Assert.InRange(o.BStart.Delay, TimeSpan.Zero, margin + TimeSpan.FromMilliseconds(50));
    }

    [Theory]
    [InlineData("port-restricted-cone", "symmetric")]
    [InlineData("symmetric", "symmetric")]
    [InlineData("full-cone", "port-restricted-cone")]
    public void InTheLab_NodesBehindNats_LearnEachOthersReflexiveAddress_AndStartAtTheSameMoment(string natA,
        string natB)
    {
        var lab = new VirtualNetwork(seed: 11);
        var internet = lab.AddSegment("internet");
        // Different distances. A segment's latency applies at both ends of each hop on it (the host's and the NAT's),
        // so A's side has a 20 ms round trip to the service, B's 140 ms.
        var homeA = lab.AddSegment("home-a", "192.168.1.0/24", new LinkProfile { Latency = TimeSpan.FromMilliseconds(5) });
        var homeB = lab.AddSegment("home-b", "192.168.2.0/24", new LinkProfile { Latency = TimeSpan.FromMilliseconds(35) });
        lab.AddRouter("nat-a", NatPresets.Find(natA)!.Policy, homeA, "192.168.1.1", internet, "198.51.100.1");
        lab.AddRouter("nat-b", NatPresets.Find(natB)!.Policy, homeB, "192.168.2.1", internet, "198.51.100.2");
        var serverHost = lab.AddHost("rendezvous", internet, ServerAddress.ToString());
        var aHost = lab.AddHost("a", homeA, "192.168.1.10");
        var bHost = lab.AddHost("b", homeB, "192.168.2.10");

        var o = lab.Run(() => ScenarioAsync(serverHost, new IPEndPoint(ServerAddress, RendezvousServerOptions.DefaultPort),
            aHost, IPAddress.Parse("192.168.1.10"), bHost, IPAddress.Parse("192.168.2.10")));

        Assert.Equal(IPAddress.Parse("198.51.100.1"), o.AReflexive.Address);
        Assert.Equal(IPAddress.Parse("198.51.100.2"), o.BReflexive.Address);
        Assert.Equal(o.AReflexive, o.Offer.FromEndPoint);
        Assert.Equal(o.BReflexive, o.Connection.Answer.FromEndPoint);
        Assert.Equal(o.BReflexive, o.BAsLookedUpByA!.ReflexiveEndPoint);
        Assert.Equal(o.AReflexive, o.ABinding);
        Assert.False(o.ClaimedForeign);

        // Both nodes share the lab's clock: the first punches leave at the same virtual moment.
        var startA = o.Connection.Start.ReceivedAt + (long)(o.Connection.Start.Delay.TotalSeconds * TimeProviderFrequency(aHost));
        var startB = o.BStart.ReceivedAt + (long)(o.BStart.Delay.TotalSeconds * TimeProviderFrequency(bHost));
        var skew = TimeSpan.FromSeconds(Math.Abs(startA - startB) / (double)TimeProviderFrequency(aHost));
        Assert.True(skew <= TimeSpan.FromMilliseconds(1), $"the two starts are {skew.TotalMilliseconds} ms apart");
        Assert.InRange(o.BStart.RoundTrip, TimeSpan.FromMilliseconds(139), TimeSpan.FromMilliseconds(145));
        Assert.InRange(o.Connection.Start.RoundTrip, TimeSpan.FromMilliseconds(19), TimeSpan.FromMilliseconds(25));
        Assert.True(o.Connection.Start.Delay > o.BStart.Delay, "the nearer side waits longer");
        Assert.Equal(1, o.Metrics.Started);
    }

    private static long TimeProviderFrequency(INetwork network) => network.TimeProvider.TimestampFrequency;
}

public class RendezvousStartTests
{
    [Fact]
    public void DueIn_CountsDownFromWhenTheStartArrived_OnTheSameClock_AndStopsAtZero()
    {
        var time = new ManualTimeProvider();
        var start = new RendezvousStart(1, time.GetTimestamp(), TimeSpan.FromMilliseconds(100), TimeSpan.FromMilliseconds(40));
        Assert.Equal(TimeSpan.FromMilliseconds(100), start.DueIn(time));
        time.Advance(TimeSpan.FromMilliseconds(30));
        Assert.Equal(TimeSpan.FromMilliseconds(70), start.DueIn(time));
        time.Advance(TimeSpan.FromMilliseconds(100));
        Assert.Equal(TimeSpan.Zero, start.DueIn(time));
    }
}
