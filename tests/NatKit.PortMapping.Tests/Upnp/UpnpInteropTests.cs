using System.Net;
using System.Text;
using NatKit.Linux;
using NatKit.Net;
using NatKit.Packets;
using NatKit.PortMapping.Upnp;

namespace NatKit.PortMapping.Tests.Upnp;

/// <summary>
/// UPnP IGD against Debian's miniupnp in network namespaces the test creates and removes (LAN host, kernel-NAT
/// router, WAN host; no route out of them).
/// </summary>
public sealed class UpnpInteropTests
{
    /// <summary>miniupnpd 2.3.1 refuses every reserved external address (RFC 1918, 100.64/10, the three TEST-NETs), so
    /// its router gets this one besides the topology's: just outside the CGN block, and only ever inside the test's
    /// namespaces.</summary>
    private const string MiniupnpdExternal = "100.128.0.1";

    private const string MiniupnpdWanHost = "100.128.0.2";

    [PeerFact("miniupnpd", "nft", "ip", Root = true)]
    public async Task NatKitsClient_GetsAWorkingMapping_FromMiniupnpd_OnAKernelNatRouter()
    {
        await using var topology = await GatewayTopology.CreateKernelAsync(KernelNatKind.MasqueradePersistent);
        var router = topology.Gateways[0];
        await router.IpAsync(["addr", "add", MiniupnpdExternal + "/24", "dev", "wan0"]);
        await topology.Wan.IpAsync(["addr", "add", MiniupnpdWanHost + "/24", "dev", "eth0"]);
        await router.ExecAsync("nft", ["-f", "-"], standardInput: MiniupnpdTables);
        var directory = Directory.CreateTempSubdirectory("natkit-miniupnpd-");
        try
        {
            var config = Path.Combine(directory.FullName, "miniupnpd.conf");
            await File.WriteAllTextAsync(config, MiniupnpdConfig);
            await using var miniupnpd = NamespaceProcess.Start(router.Name, "miniupnpd",
                ["-d", "-f", config, "-P", Path.Combine(directory.FullName, "miniupnpd.pid")]);

            var lan = new NamespaceNetwork(topology.Lan.Name);
            var wan = new NamespaceNetwork(topology.Wan.Name);
            var lanAddress = IPAddress.Parse(GatewayTopology.LanHostAddress);
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            var client = await DiscoverAsync(lan, lanAddress, miniupnpd, timeout.Token);
            Assert.Equal(IPAddress.Parse(MiniupnpdExternal), await client.GetExternalAddressAsync(timeout.Token));

            await using var service = await lan.BindUdpAsync(new IPEndPoint(lanAddress, 7000), timeout.Token);
            var mapping = await client.AddPortMappingAsync(IpProtocol.Udp, 7000, 0, TimeSpan.FromMinutes(10), "natkit-test",
                timeout.Token);
            Assert.Equal(IPAddress.Parse(MiniupnpdExternal), mapping.External.Address);
            var entry = await client.GetSpecificPortMappingEntryAsync(IpProtocol.Udp, mapping.External.Port, timeout.Token);
            Assert.Equal(new IPEndPoint(lanAddress, 7000), entry?.Internal);

            await using var outside = await wan.BindUdpAsync(new IPEndPoint(IPAddress.Parse(MiniupnpdWanHost), 0), timeout.Token);
            await outside.SendToAsync("through miniupnpd"u8.ToArray(), mapping.External, timeout.Token);
            var buffer = new byte[100];
            var got = await service.ReceiveFromAsync(buffer, timeout.Token);
            Assert.Equal("through miniupnpd", Encoding.ASCII.GetString(buffer, 0, got.Length));
            Assert.Equal(IPAddress.Parse(MiniupnpdWanHost), got.RemoteEndPoint.Address);

            Assert.True(await client.DeletePortMappingAsync(IpProtocol.Udp, mapping.External.Port, timeout.Token));
            Assert.Null(await client.GetSpecificPortMappingEntryAsync(IpProtocol.Udp, mapping.External.Port, timeout.Token));
            var ruleset = await router.ExecAsync("nft", ["list", "table", "inet", "miniupnpd"]);
            Assert.DoesNotContain("dport " + mapping.External.Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ruleset, StringComparison.Ordinal);
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    [PeerFact("upnpc", "ip", Root = true)]
    public async Task Upnpc_GetsTheExternalAddress_AndAWorkingMapping_FromNatKitsGateway()
    {
        await using var topology = await GatewayTopology.CreateNatKitAsync();
        var hop = topology.Hops[0];
        await using var gateway = await Gateway.StartAsync(hop, NatKit.Nat.NatPresets.Symmetric with { ServeUpnp = true });
        await using var stack = await GatewayInsideStack.StartAsync(gateway, hop.Namespace);
        await using var igd = await UpnpServer.StartAsync(stack.Network, stack.Address,
            new UpnpControlHandler(gateway.Engine, gateway.DataPlane.EngineNow),
            f => new ValueTask<byte[]>(gateway.DataPlane.InvokeAsync(() => f(gateway.DataPlane.EngineNow))));

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var lan = new NamespaceNetwork(topology.Lan.Name);
        var lanAddress = IPAddress.Parse(GatewayTopology.LanHostAddress);
        await using var service = await lan.BindUdpAsync(new IPEndPoint(lanAddress, 7000), timeout.Token);

        // -i: miniupnpc calls an IGD whose external address is reserved (TEST-NET-2 here) "not connected" and stops
        var (code, output, errors) = await topology.Lan.TryExecAsync("upnpc",
            ["-i", "-m", GatewayTopology.LanHostAddress, "-e", "natkit-interop", "-a", GatewayTopology.LanHostAddress, "7000",
                "7000", "UDP", "600"], timeout.Token);
        Assert.True(code == 0, output + errors);
        Assert.Contains("ExternalIPAddress = " + GatewayTopology.PublicAddress, output, StringComparison.Ordinal);
        Assert.Contains("external " + GatewayTopology.PublicAddress + ":7000 UDP is redirected to internal " +
                        GatewayTopology.LanHostAddress + ":7000", output, StringComparison.Ordinal);

        var wan = new NamespaceNetwork(topology.Wan.Name);
        await using var outside = await wan.BindUdpAsync(new IPEndPoint(IPAddress.Parse(GatewayTopology.WanHostAddress), 0),
            timeout.Token);
        await outside.SendToAsync("through natkit"u8.ToArray(),
            new IPEndPoint(IPAddress.Parse(GatewayTopology.PublicAddress), 7000), timeout.Token);
        var buffer = new byte[100];
        var got = await service.ReceiveFromAsync(buffer, timeout.Token);
        Assert.Equal("through natkit", Encoding.ASCII.GetString(buffer, 0, got.Length));

        (code, output, errors) = await topology.Lan.TryExecAsync("upnpc",
            ["-i", "-m", GatewayTopology.LanHostAddress, "-d", "7000", "UDP"], timeout.Token);
        Assert.True(code == 0, output + errors);
        Assert.Empty(await gateway.DataPlane.InvokeAsync(() => gateway.Engine.ListMappings(gateway.DataPlane.EngineNow)));
        Assert.True(igd.SearchesAnswered >= 2, $"{igd.SearchesAnswered} searches answered"); // one per upnpc run
        Assert.True(stack.Counters.Delivered > 0 && stack.Counters.Sent > 0, stack.Counters.ToString());
    }

    /// <summary>SSDP until miniupnpd answers (it takes a moment to start listening), within the token.</summary>
    private static async Task<UpnpClient> DiscoverAsync(INetwork lan, IPAddress local, NamespaceProcess peer,
        CancellationToken cancellationToken)
    {
        while (true)
        {
            Assert.False(peer.HasExited, "miniupnpd exited: " + peer.Output + peer.Errors);
            try
            {
                return await UpnpClient.DiscoverAndConnectAsync(lan, local, TimeSpan.FromSeconds(1), cancellationToken);
            }
            catch (UpnpException) when (!cancellationToken.IsCancellationRequested)
            {
                // not listening yet: search again
            }
        }
    }

    /// <summary>The chains miniupnpd fills (its nft_init.sh, which Debian ships without its helper script): a
    /// forward filter that accepts, DNAT in prerouting, and its postrouting chain.</summary>
    private const string MiniupnpdTables = """
        table inet miniupnpd {
          chain forward {
            type filter hook forward priority 0; policy accept;
            jump miniupnpd
          }
          chain miniupnpd {
          }
          chain prerouting {
            type nat hook prerouting priority -100; policy accept;
            jump prerouting_miniupnpd
          }
          chain postrouting {
            type nat hook postrouting priority 100; policy accept;
            jump postrouting_miniupnpd
          }
          chain prerouting_miniupnpd {
          }
          chain postrouting_miniupnpd {
          }
        }

        """;

    private const string MiniupnpdConfig = $"""
        ext_ifname=wan0
        listening_ip=lan0
        ext_ip={MiniupnpdExternal}
        port=0
        enable_natpmp=no
        enable_upnp=yes
        secure_mode=yes
        system_uptime=yes
        uuid=6e61746b-6974-4947-4400-6d696e697570
        upnp_table_name=miniupnpd
        upnp_nat_table_name=miniupnpd
        upnp_forward_chain=miniupnpd
        upnp_nat_chain=prerouting_miniupnpd
        upnp_nat_postrouting_chain=postrouting_miniupnpd
        allow 1024-65535 10.0.0.0/24 1024-65535
        deny 0-65535 0.0.0.0/0 0-65535

        """;
}
