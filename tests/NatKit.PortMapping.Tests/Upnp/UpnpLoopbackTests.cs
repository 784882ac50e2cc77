using System.Net;
using NatKit.Nat;
using NatKit.Net;
using NatKit.Packets;
using NatKit.PortMapping.Upnp;

namespace NatKit.PortMapping.Tests.Upnp;

/// <summary>NatKit's UPnP client and IGD on the real network, over loopback only: SSDP sent out of and joined on
/// 127.0.0.1 (on an ephemeral SSDP port, so parallel runs on one machine do not meet), HTTP on 127.0.0.1, and an
/// engine whose inside is 127.0.0.0/8. The same exchange the lab tests run in virtual time.</summary>
public sealed class UpnpLoopbackTests
{
    [Fact]
    public async Task TheClient_DiscoversTheIgdOnLoopback_AndMaps_Renews_AndDeletes()
    {
        using var engine = new NatEngine(new NatConfig
        {
            Policy = NatPresets.Symmetric with { ServeUpnp = true },
            InsidePrefixes = [Ipv4Prefix.Parse("127.0.0.0/8")],
            ExternalAddresses = [Ipv4Address.Parse("198.51.100.1")], // only a number here: no packet is ever sent to it
        });
        var gate = new Lock();
        var started = TimeProvider.System.GetTimestamp();
        long Now() => (long)TimeProvider.System.GetElapsedTime(started).TotalMilliseconds;
        await using var igd = await UpnpServer.StartAsync(SystemNetwork.Instance, IPAddress.Loopback,
            new UpnpControlHandler(engine, Now()), f =>
            {
                lock (gate)
                {
                    return ValueTask.FromResult(f(Now()));
                }
            }, new UpnpServerOptions { SsdpPort = 0 });

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var found = await UpnpClient.DiscoverAsync(SystemNetwork.Instance, IPAddress.Loopback, TimeSpan.FromSeconds(2),
            igd.SsdpEndPoint.Port, timeout.Token);
        Assert.Contains(igd.DescriptionUrl, found);
        var client = await UpnpClient.ConnectAsync(SystemNetwork.Instance, igd.DescriptionUrl, IPAddress.Loopback,
            timeout.Token);
        Assert.Equal(IPAddress.Parse("198.51.100.1"), await client.GetExternalAddressAsync(timeout.Token));

        var mapping = await client.AddPortMappingAsync(IpProtocol.Tcp, 8080, 0, TimeSpan.FromMinutes(5), "loopback",
            timeout.Token);
        var again = await client.AddPortMappingAsync(IpProtocol.Tcp, 8080, mapping.External.Port, TimeSpan.FromMinutes(5),
            "loopback", timeout.Token); // a renewal keeps the port
        Assert.Equal(mapping.External, again.External);
        lock (gate)
        {
            var m = Assert.Single(engine.ListMappings(Now()));
            Assert.Equal(new NatEndpoint(Ipv4Address.Loopback, 8080), m.Internal);
        }

        Assert.True(await client.DeletePortMappingAsync(IpProtocol.Tcp, mapping.External.Port, timeout.Token));
        lock (gate)
        {
            Assert.Empty(engine.ListMappings(Now()));
        }

        Assert.True(igd.SearchesAnswered >= 1);
    }
}
