using System.Net;
using NatKit.Lab;
using NatKit.Nat;
using NatKit.Net;
using NatKit.Stun.Client;
using NatKit.Stun.Discovery;
using NatKit.Stun.Server;
using NatKit.Stun.Transactions;

namespace NatKit.Stun.Tests;

/// <summary>The server and client inside the in-memory lab where only the lab can go: behind a real NAT engine, over
/// lossy links, timed in virtual time (what runs on both networks is Shared/StunServerContract.cs). (Every NAT preset's RFC 5780 classification is pinned by NatKit.Scenarios.Tests' ProbeTests, which
/// run this part's discovery client.)</summary>
public class StunLabTests
{
    private static readonly IPAddress ServerAddress = IPAddress.Parse("203.0.113.100");

    private static (VirtualNetwork Lab, LabHost Server, LabHost Client) Build(NatPolicy policy, LinkProfile? link = null)
    {
        var lab = new VirtualNetwork(seed: 7);
        var internet = lab.AddSegment("internet", link: link);
        var home = lab.AddSegment("home", "192.168.1.0/24", link);
        lab.AddRouter("nat", policy, home, "192.168.1.1", internet, "198.51.100.1");
        var server = lab.AddHost("server", internet, "203.0.113.100", "203.0.113.101");
        var client = lab.AddHost("client", home, "192.168.1.10");
        return (lab, server, client);
    }

    [Fact]
    public void BehindANat_MappedAddressIsTheRoutersOutside_AndServerStopsCleanlyInTheLab()
    {
        var (lab, serverHost, clientHost) = Build(NatPresets.Symmetric);
        var response = lab.Run(async () =>
        {
            await using var server = await StunServer.StartAsync(serverHost, new StunServerOptions
            {
                Primary = new IPEndPoint(ServerAddress, 3478),
                AlternateAddress = IPAddress.Parse("203.0.113.101"),
                EnableTcp = false,
            });
            var client = new StunClient(clientHost);
            return await client.BindingAsync(new IPEndPoint(ServerAddress, 3478));
        });
        Assert.Equal(IPAddress.Parse("198.51.100.1"), response!.MappedAddress!.Address);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("203.0.113.101"), 3479), response.OtherAddress);
    }

    [Fact]
    public void OnTheCallersSocket_ThroughAFullCone_PortKept_AndServerDisposesInTheLab()
    {
        // StunServer.DisposeAsync cancels with CancelAsync, whose callbacks run on the thread pool: the lab
        // marshals them back onto its loop.
        var (lab, serverHost, clientHost) = Build(NatPresets.FullCone);
        var mapped = lab.Run(async () =>
        {
            var server = await StunServer.StartAsync(serverHost, new StunServerOptions
            {
                Primary = new IPEndPoint(ServerAddress, 3478),
                EnableTcp = false,
            });
            await using (server)
            {
                var client = new StunClient(clientHost, new StunClientOptions());
                using var socket = await clientHost.BindUdpAsync(new IPEndPoint(IPAddress.Any, 41000));
                var response = await client.BindingAsync(socket, new IPEndPoint(ServerAddress, 3478), default);
                return response!.MappedAddress;
            }
        });
        Assert.Equal(new IPEndPoint(IPAddress.Parse("198.51.100.1"), 41000), mapped);
    }

    [Fact]
    public void Rfc8489_Retransmission_GetsThroughHeavyLoss_InVirtualTime()
    {
        var (lab, serverHost, clientHost) = Build(NatPresets.FullCone, new LinkProfile { Loss = 0.1 });
        var results = lab.Run(async () =>
        {
            await using var server = await StunServer.StartAsync(serverHost, new StunServerOptions
            {
                Primary = new IPEndPoint(ServerAddress, 3478),
                EnableTcp = false,
            });
            var client = new StunClient(clientHost);
            var list = new List<StunResponse?>();
            for (var i = 0; i < 20; i++)
            {
                list.Add(await client.BindingAsync(new IPEndPoint(ServerAddress, 3478)));
            }

            return list;
        });
        // A round trip crosses eight lossy links (two per hop) at 10% each: over half the first tries fail, and seven
        // tries bring the success rate to about 98%.
        Assert.True(results.Count(r => r is { IsSuccess: true }) >= 17, string.Join(", ", results.Select(r => r is null ? "timeout" : r.RoundTrip.TotalMilliseconds.ToString(System.Globalization.CultureInfo.InvariantCulture))));
        Assert.Contains(results, r => r is not null && r.RoundTrip >= TimeSpan.FromMilliseconds(500));
    }

    [Fact]
    public void Rfc8489_NoServer_TimesOutAfter39_5VirtualSeconds()
    {
        var (lab, _, clientHost) = Build(NatPresets.FullCone);
        var start = lab.Now;
        var response = lab.Run(() => new StunClient(clientHost).BindingAsync(new IPEndPoint(ServerAddress, 3478)));
        Assert.Null(response);
        Assert.InRange((lab.Now - start).TotalMilliseconds, 39_500, 39_600);
    }

    [Fact]
    public void OnASharedSocket_DiscoveryAndBindings_RunBesideOtherTraffic_AndLeaveItAllToItsReader()
    {
        var (lab, serverHost, clientHost) = Build(NatPresets.Symmetric);
        var peerHost = lab.AddHost("peer", lab.Segments.Single(x => x.Name == "internet"), "203.0.113.50");
        var (behavior, bindings, echoes, claimedByTable) = lab.Run(async () =>
        {
            _ = await StunServer.StartAsync(serverHost, new StunServerOptions
            {
                Primary = new IPEndPoint(ServerAddress, 3478),
                AlternateAddress = IPAddress.Parse("203.0.113.101"),
                EnableTcp = false,
                RateLimitPerSecond = 0,
            });
            var peer = await peerHost.BindUdpAsync(new IPEndPoint(IPAddress.Parse("203.0.113.50"), 7));
            _ = EchoAsync(peer);
            await using var mux = new DatagramMultiplexer(
                await clientHost.BindUdpAsync(new IPEndPoint(IPAddress.Parse("192.168.1.10"), 0)));
            using var table = new StunTransactions(mux, lab.TimeProvider);
            using var rest = mux.CreateUnclaimedSocket();

            // Another protocol's traffic on the same socket all along: 40 datagrams out, echoed back.
            var talk = TalkAsync(rest, peer.LocalEndPoint, lab.TimeProvider);
            var discovery = new NatBehaviorDiscovery(clientHost, new IPEndPoint(ServerAddress, 3478));
            var found = await discovery.RunAsync(table);
            var client = new StunClient(clientHost);
            // Two at once on one socket (no Task.WhenAll in the lab: docs/lab.md rule 4)
            var first = client.BindingAsync(table, new IPEndPoint(ServerAddress, 3478));
            var second = client.BindingAsync(table, new IPEndPoint(IPAddress.Parse("203.0.113.101"), 3478));
            var both = new[] { await first, await second };
            return (found, both, await talk, table.Count);
        });

        Assert.True(behavior.Reachable);
        Assert.Equal(NatMapping.AddressAndPortDependent, behavior.Mapping);
        Assert.Equal(NatFiltering.AddressAndPortDependent, behavior.Filtering);
        Assert.Equal(IPAddress.Parse("198.51.100.1"), behavior.MappedEndPoint!.Address);
        Assert.All(bindings, b => Assert.True(b is { IsSuccess: true }));
        Assert.NotEqual(bindings[0]!.MappedAddress, bindings[1]!.MappedAddress); // two servers, two mappings (APDM)
        Assert.Equal(Enumerable.Range(0, 40), echoes); // every echo reached the other protocol, in order
        Assert.Equal(0, claimedByTable);
    }

    private static async Task EchoAsync(IDatagramSocket socket)
    {
        var buffer = new byte[1500];
        while (true)
        {
            var got = await socket.ReceiveFromAsync(buffer);
            await socket.SendToAsync(buffer.AsMemory(0, got.Length), got.RemoteEndPoint);
        }
    }

    private static async Task<List<int>> TalkAsync(IDatagramSocket socket, IPEndPoint peer, TimeProvider time)
    {
        var seen = new List<int>();
        var buffer = new byte[1500];
        for (var i = 0; i < 40; i++)
        {
            await socket.SendToAsync(new byte[] { 0x41, (byte)i, 0, 0 }, peer); // a uTP SYN's first byte
            var got = await socket.ReceiveFromAsync(buffer);
            Assert.Equal(peer, got.RemoteEndPoint);
            seen.Add(buffer[1]);
            await Task.Delay(TimeSpan.FromMilliseconds(250), time);
        }

        return seen;
    }
}
