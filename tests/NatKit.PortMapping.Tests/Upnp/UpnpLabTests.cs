using System.Net;
using NatKit.Lab;
using NatKit.Nat;
using NatKit.Net;
using NatKit.Packets;
using NatKit.PortMapping.Upnp;

namespace NatKit.PortMapping.Tests.Upnp;

/// <summary>NatKit's UPnP client and IGD together in the lab: a home router (port-restricted, so nothing unsolicited
/// gets in) serving UPnP on its services host, a host behind it, and a server on the internet.</summary>
public sealed class UpnpLabTests
{
    private static readonly NatPolicy Policy = NatPresets.Symmetric with { ServeUpnp = true };

    /// <summary>Runs <paramref name="body"/> with the IGD started on router nat-a.</summary>
    private static void WithIgd(Func<VirtualNetwork, UpnpServer, Task> body, NatPolicy? policy = null)
    {
        var lab = new VirtualNetwork(seed: 5);
        var internet = lab.AddSegment("internet");
        var home = lab.AddSegment("home", "192.168.1.0/24");
        var router = lab.AddRouter("nat-a", policy ?? Policy, home, "192.168.1.1", internet, ["198.51.100.1"]);
        lab.AddHost("alice", home, "192.168.1.10");
        lab.AddHost("alan", home, "192.168.1.11");
        lab.AddHost("server", internet, "203.0.113.100");
        long Now() => lab.Scheduler.NowTicks / TimeSpan.TicksPerMillisecond;
        lab.Run(async () =>
        {
            var control = new UpnpControlHandler(router.Engine, Now());
            await using var igd = await UpnpServer.StartAsync(router.Services, router.InsideAddress.ToIPAddress(), control,
                f => ValueTask.FromResult(f(Now())), new UpnpServerOptions { HttpPort = 5000 });
            await body(lab, igd);
        });
    }

    [Fact]
    public void TheClient_DiscoversTheIgd_GetsTheExternalAddress_AndAMappingTheInternetReaches_UntilItDeletesIt()
    {
        WithIgd(async (lab, igd) =>
        {
            var alice = lab.Host("alice");
            var server = lab.Host("server");
            var client = await UpnpClient.DiscoverAndConnectAsync(alice, alice.Address, TimeSpan.FromSeconds(2));
            Assert.Equal(igd.DescriptionUrl, client.Location);
            Assert.Equal(UpnpDeviceDescription.WanIpConnection2, client.Service.ServiceType);
            Assert.Equal(IPAddress.Parse("198.51.100.1"), await client.GetExternalAddressAsync());

            await using var service = await alice.BindUdpAsync(new IPEndPoint(alice.Address, 7000));
            var mapping = await client.AddPortMappingAsync(IpProtocol.Udp, 7000, 0, TimeSpan.FromHours(1), "test");
            Assert.Equal(IPAddress.Parse("198.51.100.1"), mapping.External.Address);
            var entry = await client.GetSpecificPortMappingEntryAsync(IpProtocol.Udp, mapping.External.Port);
            Assert.NotNull(entry);
            Assert.Equal(new IPEndPoint(alice.Address, 7000), entry.Value.Internal);
            Assert.Equal("test", entry.Value.Description);

            await using var stranger = await server.BindUdpAsync(new IPEndPoint(server.Address, 0));
            await stranger.SendToAsync("hello"u8.ToArray(), mapping.External);
            var got = await LabWait(service, lab);
            Assert.NotNull(got);
            Assert.Equal(server.Address, got.Value.From.Address);

            Assert.True(await client.DeletePortMappingAsync(IpProtocol.Udp, mapping.External.Port));
            Assert.False(await client.DeletePortMappingAsync(IpProtocol.Udp, mapping.External.Port));
            await stranger.SendToAsync("again"u8.ToArray(), mapping.External);
            Assert.Null(await LabWait(service, lab));
        });
    }

    [Fact]
    public void PortMapper_FallsBackToUpnp_WhenNeitherPcpNorNatPmpAnswers_RenewsTheLease_AndDeletesItOnDispose()
    {
        WithIgd(async (lab, igd) =>
        {
            var alice = lab.Host("alice");
            var mapper = new PortMapper(alice, new IPEndPoint(IPAddress.Parse("192.168.1.1"), 5351));
            var lease = await mapper.MapAsync(IpProtocol.Udp, 7000, TimeSpan.FromMinutes(10));
            Assert.NotNull(lease);
            Assert.Equal(PortMappingProtocol.Upnp, lease.Grant.Protocol);
            Assert.Equal(IPAddress.Parse("198.51.100.1"), lease.External.Address);
            Assert.Equal(igd.DescriptionUrl, mapper.Upnp!.Location);

            await Task.Delay(TimeSpan.FromMinutes(8), lab.TimeProvider); // past half the lifetime: renewed once
            var entry = await mapper.Upnp.GetSpecificPortMappingEntryAsync(IpProtocol.Udp, lease.External.Port);
            Assert.NotNull(entry);
            Assert.True(entry.Value.LeaseLeft > TimeSpan.FromMinutes(6), $"lease left {entry.Value.LeaseLeft}");
            Assert.Equal(0, lease.FailedRenewals);

            await lease.DisposeAsync();
            Assert.Null(await mapper.Upnp.GetSpecificPortMappingEntryAsync(IpProtocol.Udp, lease.External.Port));
        });
    }

    [Fact]
    public void AddPortMapping_OfAPortAnotherHostHolds_Is718_AndAnotherHostsMappingCannotBeDeleted()
    {
        WithIgd(async (lab, igd) =>
        {
            var alice = lab.Host("alice");
            var alan = lab.Host("alan");
            var a = await UpnpClient.ConnectAsync(alice, igd.DescriptionUrl, alice.Address);
            var b = await UpnpClient.ConnectAsync(alan, igd.DescriptionUrl, alan.Address);
            await a.AddPortMappingAsync(IpProtocol.Tcp, 8080, 8080, TimeSpan.FromMinutes(10));
            var conflict = await Assert.ThrowsAsync<UpnpException>(() =>
                b.AddPortMappingAsync(IpProtocol.Tcp, 8080, 8080, TimeSpan.FromMinutes(10)));
            Assert.Equal(UpnpError.ConflictInMappingEntry, conflict.Error);
            var denied = await Assert.ThrowsAsync<UpnpException>(() => b.DeletePortMappingAsync(IpProtocol.Tcp, 8080));
            Assert.Equal(UpnpError.ActionNotAuthorized, denied.Error);
            Assert.NotNull(await a.GetSpecificPortMappingEntryAsync(IpProtocol.Tcp, 8080));
        });
    }

    [Fact]
    public void TheInternet_CannotReadTheDescription_NorSeeTheIgd()
    {
        WithIgd(async (lab, igd) =>
        {
            var server = lab.Host("server");
            // The router's outside address leads to the NAT engine only: the TCP connection goes nowhere.
            var outside = new Uri("http://198.51.100.1:5000/rootDesc.xml");
            await Assert.ThrowsAsync<UpnpException>(() => UpnpClient.ConnectAsync(server, outside, server.Address));
            Assert.Empty(await UpnpClient.DiscoverAsync(server, server.Address, TimeSpan.FromSeconds(2)));
            Assert.Equal(0, igd.RequestsServed);
        });
    }

    [Fact]
    public void AClientOfTheServicesHost_ThatIsNotInside_GetsA403_ForTheDescription()
    {
        // The HTTP handler itself refuses sources outside the NAT's prefixes (defence behind the routing).
        var lab = new VirtualNetwork(seed: 5);
        var engine = new NatEngine(new NatConfig
        {
            Policy = Policy,
            InsidePrefixes = [Ipv4Prefix.Parse("192.168.1.0/24")],
            ExternalAddresses = [Ipv4Address.Parse("198.51.100.1")],
        });
        var handler = new UpnpHttpHandler(new UpnpControlHandler(engine, 0), "uuid:x", "n", "s");
        Assert.True(UpnpHttpHead.TryParse("GET /rootDesc.xml HTTP/1.1\r\nHost: x\r\n\r\n"u8, out var head));
        var outside = System.Text.Encoding.ASCII.GetString(handler.Handle(head, [], Ipv4Address.Parse("203.0.113.9"), 0));
        Assert.StartsWith("HTTP/1.1 403", outside, StringComparison.Ordinal);
        var inside = System.Text.Encoding.ASCII.GetString(handler.Handle(head, [], Ipv4Address.Parse("192.168.1.10"), 0));
        Assert.StartsWith("HTTP/1.1 200", inside, StringComparison.Ordinal);
        Assert.Contains(UpnpDeviceDescription.WanIpConnection2, inside, StringComparison.Ordinal);
        _ = lab;
    }

    private static async Task<(byte[] Data, IPEndPoint From)?> LabWait(IDatagramSocket socket, VirtualNetwork lab)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5), lab.TimeProvider);
        var buffer = new byte[2048];
        try
        {
            var r = await socket.ReceiveFromAsync(buffer, cts.Token);
            return (buffer[..r.Length], r.RemoteEndPoint);
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }
}
