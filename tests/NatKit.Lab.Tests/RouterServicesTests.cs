using System.Net;
using NatKit.Nat;
using NatKit.Net;

namespace NatKit.Lab.Tests;

/// <summary>A router's own host on its inside address (<see cref="LabRouter.Services"/>): where NAT-PMP, PCP and
/// UPnP servers bind in the lab. It hears its LAN (unicast and multicast), and nothing from outside.</summary>
public sealed class RouterServicesTests
{
    private static readonly IPAddress Ssdp = IPAddress.Parse("239.255.255.250");

    [Fact]
    public void TheServicesHost_HearsTheLansMulticast_AndUnicastToTheInsideAddress_AndAnswers()
    {
        var lab = LabFixture.TwoHomes(NatPresets.RfcRecommended, NatPresets.RfcRecommended);
        var router = lab.Router("nat-a");
        var alice = lab.Host("alice");
        lab.Run(async () =>
        {
            var services = router.Services;
            var inside = router.InsideAddress.ToIPAddress();
            await using var server = await services.BindMulticastUdpAsync(new IPEndPoint(IPAddress.Any, 1900));
            server.JoinGroup(Ssdp, inside);
            await using var client = await alice.BindMulticastUdpAsync(new IPEndPoint(alice.Address, 0));
            client.SetMulticastSend(alice.Address, 2);

            await client.SendToAsync("search"u8.ToArray(), new IPEndPoint(Ssdp, 1900));
            var buffer = new byte[64];
            var got = await server.ReceiveMessageFromAsync(buffer);
            Assert.Equal(Ssdp, got.Destination);
            Assert.Equal(alice.Address, got.RemoteEndPoint.Address);

            await client.SendToAsync("direct"u8.ToArray(), new IPEndPoint(inside, 1900));
            got = await server.ReceiveMessageFromAsync(buffer);
            Assert.Equal(inside, got.Destination);

            await server.SendToAsync("answer"u8.ToArray(), got.RemoteEndPoint);
            var answer = await client.ReceiveMessageFromAsync(buffer);
            Assert.Equal(inside, answer.RemoteEndPoint.Address);
            Assert.Equal(alice.Address, answer.Destination);
        });
    }

    [Fact]
    public void Multicast_StaysOnItsSegment_AndTheRouterDropsIt_WithoutAServicesHost()
    {
        var lab = LabFixture.TwoHomes(NatPresets.RfcRecommended, NatPresets.RfcRecommended);
        var alice = lab.Host("alice");
        var alan = lab.Host("alan");
        var server = lab.Host("server");
        lab.Run(async () =>
        {
            await using var onLan = await alan.BindMulticastUdpAsync(new IPEndPoint(IPAddress.Any, 1900));
            onLan.JoinGroup(Ssdp, alan.Address);
            await using var outside = await server.BindMulticastUdpAsync(new IPEndPoint(IPAddress.Any, 1900));
            outside.JoinGroup(Ssdp, server.Address);
            await using var client = await alice.BindMulticastUdpAsync(new IPEndPoint(alice.Address, 0));
            client.SetMulticastSend(alice.Address, 2);

            await client.SendToAsync("search"u8.ToArray(), new IPEndPoint(Ssdp, 1900));
            var buffer = new byte[64];
            Assert.Equal(6, (await onLan.ReceiveMessageFromAsync(buffer)).Length);
            Assert.Null(await LabFixture.ReceiveOrTimeout(outside, lab.TimeProvider, TimeSpan.FromSeconds(5)));
        });
        Assert.Equal(1, lab.Router("nat-a").MulticastDropped);
        Assert.Equal(0, lab.Router("nat-a").Engine.MappingCount);
    }

    [Fact]
    public void TheOutside_CannotReachTheServicesHost()
    {
        var lab = LabFixture.TwoHomes(NatPresets.RfcRecommended, NatPresets.RfcRecommended);
        var router = lab.Router("nat-a");
        var server = lab.Host("server");
        lab.Run(async () =>
        {
            await using var service = await router.Services.BindUdpAsync(new IPEndPoint(IPAddress.Any, 5351));
            await using var stranger = await server.BindUdpAsync(new IPEndPoint(server.Address, 0));
            await stranger.SendToAsync("map"u8.ToArray(),
                new IPEndPoint(router.OutsideAddresses[0].ToIPAddress(), 5351));
            Assert.Null(await LabFixture.ReceiveOrTimeout(service, lab.TimeProvider, TimeSpan.FromSeconds(5)));
        });
    }
}
