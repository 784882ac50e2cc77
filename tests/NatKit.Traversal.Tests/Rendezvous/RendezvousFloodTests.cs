using System.Buffers.Binary;
using System.Net;
using NatKit.Lab;
using NatKit.Nat;
using NatKit.Net;
using NatKit.Stun;
using NatKit.Traversal.Identity;
using NatKit.Traversal.Rendezvous;

namespace NatKit.Traversal.Tests.Rendezvous;

/// <summary>
/// The "Bad input" bar: a service flooded with bogus, unsigned and forged registrations (and valid ones past
/// every limit) from many sources keeps serving real nodes, and what it holds stays bounded by its limits.
/// </summary>
public class RendezvousFloodTests
{
    private const int Attackers = 16;
    private const int SocketsPerAttacker = 2;
    private const int KeysPerAttacker = 8;
    private const int PerAddress = 4;
    private static readonly IPAddress ServerAddress = IPAddress.Parse("203.0.113.100");
    private static readonly TimeSpan FloodFor = TimeSpan.FromSeconds(2);

    [Fact]
    public void InTheLab_ManyHostsFlood_RealNodesBehindNatsStillRegisterLookUpAndConnect_AndHoldingsStayBounded()
    {
        var lab = new VirtualNetwork(seed: 5);
        var internet = lab.AddSegment("internet");
        var homeA = lab.AddSegment("home-a", "192.168.1.0/24");
        var homeB = lab.AddSegment("home-b", "192.168.2.0/24");
        lab.AddRouter("nat-a", NatPresets.Find("port-restricted-cone")!.Policy, homeA, "192.168.1.1", internet, "198.51.100.1");
        lab.AddRouter("nat-b", NatPresets.Find("symmetric")!.Policy, homeB, "192.168.2.1", internet, "198.51.100.2");
        var serverHost = lab.AddHost("rendezvous", internet, ServerAddress.ToString());
        var aHost = lab.AddHost("a", homeA, "192.168.1.10");
        var bHost = lab.AddHost("b", homeB, "192.168.2.10");
        var attackers = Enumerable.Range(1, Attackers)
            .Select(i => (Host: lab.AddHost($"x{i}", internet, $"192.0.2.{i}"), Address: IPAddress.Parse($"192.0.2.{i}")))
            .ToList();
        // Keys made outside the run: ECDSA key generation is real CPU time the lab's clock does not see anyway.
        var keys = attackers.Select(_ => Enumerable.Range(0, KeysPerAttacker).Select(_ => NodeIdentity.Create()).ToArray())
            .ToList();
        var options = new RendezvousServerOptions
        {
            Listen = new IPEndPoint(ServerAddress, RendezvousServerOptions.DefaultPort),
            MaxRegistrationsPerAddress = PerAddress,
            RequestsPerSecondPerAddress = 50,
        };

        var (outcome, held) = lab.Run(async () =>
        {
            await using var server = await RendezvousServer.StartAsync(serverHost, options);
            var target = server.LocalEndPoint;
            var floods = new List<Task<long>>();
            for (var i = 0; i < attackers.Count; i++)
            {
                for (var s = 0; s < SocketsPerAttacker; s++)
                {
                    floods.Add(FloodAsync(attackers[i].Host, attackers[i].Address, target, keys[i], seed: (i * 10) + s));
                }
            }

            // The real nodes start once the flood is in full swing, and finish while it still runs.
            await Task.Delay(TimeSpan.FromMilliseconds(500), serverHost.TimeProvider);
            var started = serverHost.TimeProvider.GetTimestamp();
            var o = await RendezvousEndToEndTests.NodesAsync(server, target, aHost, IPAddress.Parse("192.168.1.10"),
                bHost, IPAddress.Parse("192.168.2.10"));
            Assert.True(serverHost.TimeProvider.GetElapsedTime(started) < FloodFor - TimeSpan.FromMilliseconds(500),
                "the real nodes finished only after the flood");
            long sent = 0;
            foreach (var f in floods)
            {
                sent += await f;
            }

            return (o, new Held(sent, server.Handler.Registrations, server.Handler.RegisteredAddresses,
                server.Handler.PendingConnections, server.Handler.OutstandingRequests));
        });

        foreach (var k in keys.SelectMany(k => k))
        {
            k.Dispose();
        }

        // The real nodes were served in full.
        Assert.Equal(IPAddress.Parse("198.51.100.1"), outcome.AReflexive.Address);
        Assert.Equal(IPAddress.Parse("198.51.100.2"), outcome.BReflexive.Address);
        Assert.Equal(outcome.BReflexive, outcome.BAsLookedUpByA!.ReflexiveEndPoint);
        Assert.Equal("a's offer: ufrag a, candidates ...", outcome.Offer.Session);
        Assert.Equal(outcome.Connection.Start.ConnectionId, outcome.BStart.ConnectionId);

        // The flood was real, and every kind of it was turned away where it should be.
        var m = outcome.Metrics;
        Assert.True(held.Sent > 12_000, $"only {held.Sent} datagrams sent");
        Assert.True(m.RateLimited > held.Sent / 2, $"rate-limited {m.RateLimited} of {held.Sent}");
        Assert.True(m.Malformed > 0);
        Assert.True(m.NonceChallenges > 0);
        Assert.True(m.RefusedWith(StunErrorCode.Forbidden) > 0);
        Assert.True(m.RefusedWith(RendezvousErrors.QuotaReached) > 0);
        Assert.True(m.RefusedWith(RendezvousErrors.UnknownNode) > 0);

        // What the service holds is bounded by its limits, not by what arrived: at most PerAddress registrations
        // per attacking address (all of them valid, signed ones), the two real nodes, nothing left in progress.
        Assert.InRange(held.Registrations, 2, (Attackers * PerAddress) + 2);
        Assert.InRange(held.Addresses, 2, Attackers + 2);
        Assert.Equal(0, held.PendingConnections);
        Assert.Equal(0, held.OutstandingRequests);
    }

    [Fact]
    public void ManySpoofedSources_UnsignedAndForged_HoldNothing_AndARealNodeIsServed()
    {
        // A rate-limit table far smaller than the number of sources: it is fixed, whatever arrives.
        var h = new HandlerHarness(new RendezvousServerOptions { RateLimitTableSize = 1024 });
        var a = h.NewNode("198.51.100.7", 41000);
        var b = h.NewNode("203.0.113.9", 42000);
        a.FetchNonce();
        var valid = a.RegisterBytes();
        var forgedNonce = (byte[])valid.Clone();
        var at = forgedNonce.AsSpan().IndexOf(a.Nonce);
        forgedNonce[at + 20] ^= 0x01;
        var garbage = new byte[100];
        new Random(7).NextBytes(garbage);
        var unsigned = new byte[1280];
        var n = RendezvousRequests.Lookup(unsigned, StunTransactionId.NewRandom(), a.Id, default);
        unsigned = unsigned[..n];

        var challengesBefore = h.Handler.Metrics.NonceChallenges;

        // 20,000 sources (addresses and ports), each sending what a spoofer can: nothing it could have a nonce for.
        for (var i = 0; i < 20_000; i++)
        {
            var source = new IPEndPoint(new IPAddress(BinaryPrimitives.ReverseEndianness(0x0A000000u + (uint)i)),
                1024 + i);
            h.Send(garbage, source);
            h.Send(unsigned, source);
            h.Send(valid, source);   // a's own signed registration, replayed from elsewhere: a's nonce fails here
            h.Send(forgedNonce, source);
        }

        Assert.Equal(0, h.Handler.Registrations);
        Assert.Equal(0, h.Handler.RegisteredAddresses);
        Assert.Equal(0, h.Handler.Metrics.SignatureChecks);
        Assert.Equal(60_000, h.Handler.Metrics.NonceChallenges - challengesBefore);

        Assert.Equal(StunClass.SuccessResponse, h.Send(valid, a.EndPoint)!.Class);
        Assert.Equal(StunClass.SuccessResponse, b.Register()!.Class);
        Assert.Equal(StunClass.SuccessResponse, b.Lookup(a.Id)!.Class);
        Assert.Equal(StunClass.SuccessResponse, b.Connect(a.Id)!.Class);
        Assert.Equal(2, h.Handler.Registrations);
    }

    private sealed record Held(long Sent, int Registrations, int Addresses, int PendingConnections,
        int OutstandingRequests);

    /// <summary>
    /// One attacking socket for <see cref="FloodFor"/>: 250 datagrams a second (its address sends ten times the rate limit), a mix of
    /// garbage, unsigned requests, forged signatures with a valid nonce, lookups of nodes that do not exist, and valid
    /// registrations of more keys than one address may register. Returns how many it sent.
    /// </summary>
    private static async Task<long> FloodAsync(LabHost host, IPAddress address, IPEndPoint target,
        NodeIdentity[] keys, int seed)
    {
        var time = host.TimeProvider;
        var random = new Random(seed);
        await using var socket = await host.BindUdpAsync(new IPEndPoint(address, 0));
        var buffer = new byte[1280];

        // A nonce, the way a client gets one: ask without, read the 401.
        var n = RendezvousRequests.Lookup(buffer, StunTransactionId.NewRandom(), keys[0].Id, default);
        await socket.SendToAsync(buffer.AsMemory(0, n), target);
        var reply = new byte[1500];
        using (var wait = new CancellationTokenSource(TimeSpan.FromSeconds(1), time))
        {
            var r = await socket.ReceiveFromAsync(reply, wait.Token);
            Assert.True(StunMessageReader.TryParse(reply.AsSpan(0, r.Length), out var challenge));
            Assert.True(challenge.TryGet(StunAttributeType.Nonce, out var nonce));
            reply = nonce.ToArray();
        }

        var nonceBytes = reply;
        var garbage = new byte[200];
        long sent = 1;
        var start = time.GetTimestamp();
        for (var i = 0; time.GetElapsedTime(start) < FloodFor; i++)
        {
            var id = StunTransactionId.NewRandom();
            var key = keys[i / 5 % keys.Length];
            var unixMs = time.GetUtcNow().ToUnixTimeMilliseconds();
            int length;
            switch (i % 5)
            {
                case 0:
                    random.NextBytes(garbage);
                    length = random.Next(1, garbage.Length);
                    garbage.AsSpan(0, length).CopyTo(buffer);
                    break;
                case 1:
                    length = RendezvousRequests.Register(buffer, id, key, ["candidate:x"], unixMs + i, 120, default);
                    break;
                case 2:
                    // Signed, then a field changed: the signature no longer covers it.
                    length = RendezvousRequests.Register(buffer, id, key, ["candidate:x"], unixMs + i, 120, nonceBytes);
                    buffer[buffer.AsSpan(0, length).IndexOf("candidate:x"u8) + 10] = (byte)'y';
                    break;
                case 3:
                    random.NextBytes(garbage.AsSpan(0, NodeId.Size));
                    NodeId.TryRead(garbage.AsSpan(0, NodeId.Size), out var nobody);
                    length = RendezvousRequests.Lookup(buffer, id, nobody, nonceBytes);
                    break;
                default:
                    length = RendezvousRequests.Register(buffer, id, key, ["candidate:x"], unixMs + i, 120, nonceBytes);
                    break;
            }

            await socket.SendToAsync(buffer.AsMemory(0, length), target);
            sent++;
            // About 250 a second, jittered so that which kind gets past the rate limit is not locked to a phase.
            await Task.Delay(TimeSpan.FromMicroseconds(random.Next(2000, 6000)), time);
        }

        return sent;
    }
}
