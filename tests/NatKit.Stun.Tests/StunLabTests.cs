using System.Net;
using NatKit.Lab;
using NatKit.Nat;
using NatKit.Stun.Client;
using NatKit.Stun.Server;

namespace NatKit.Stun.Tests;

/// <summary>The server and client inside the in-memory lab: behind a real NAT engine, over lossy links, in
/// virtual time. (Every NAT preset's RFC 5780 classification is pinned by NatKit.Scenarios.Tests' ProbeTests, which
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
                EnableTcp = false, // the lab carries UDP and ICMP only (so far)
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
    public void LoadGenerator_StopsAtMaxRequests_AndCountsEveryAnswer()
    {
        var (lab, serverHost, clientHost) = Build(NatPresets.FullCone);
        var result = lab.Run(async () =>
        {
            await using var server = await StunServer.StartAsync(serverHost, new StunServerOptions
            {
                Primary = new IPEndPoint(ServerAddress, 3478),
                EnableTcp = false,
                RateLimitPerSecond = 0,
            });
            var load = new NatKit.Stun.Load.StunLoadGenerator(clientHost, new IPEndPoint(ServerAddress, 3478),
                new NatKit.Stun.Load.StunLoadOptions { Sockets = 4, MaxRequests = 50, Duration = TimeSpan.FromMinutes(1) });
            return await load.RunAsync();
        });
        Assert.Equal(50, result.Requests);
        Assert.Equal(50, result.Responses);
        Assert.Equal(0, result.Lost);
        Assert.True(result.Elapsed < TimeSpan.FromMinutes(1));
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
}
