using System.Net;
using NatKit.Linux;
using NatKit.Nat;
using NatKit.Packets;
using NatKit.Stun.Server;

namespace NatKit.PortMapping.Tests;

/// <summary>
/// Real peers in network namespaces the tests create and remove: Debian's natpmpc against a NatKit gateway, and
/// NatKit's NAT-PMP and PCP clients against Debian's miniupnpd (nftables build) on a kernel NAT router. In both, an
/// outside host then reaches the inside socket through the mapping.
/// </summary>
public sealed class NetnsInteropTests
{
    private static readonly IPAddress Wan = IPAddress.Parse("203.0.113.100");
    private static readonly IPAddress Lan = IPAddress.Parse("192.168.1.10");

    private static NetnsSegment[] Segments =>
    [
        new("internet", Ipv4Prefix.Parse("0.0.0.0/0")),
        new("home", Ipv4Prefix.Parse("192.168.1.0/24")),
    ];

    private static NetnsHost[] Hosts =>
    [
        new("wan", "internet", [Ipv4Address.Parse("203.0.113.100"), Ipv4Address.Parse("203.0.113.101")], null),
        new("lan", "home", [Ipv4Address.Parse("192.168.1.10")], null),
    ];

    /// <summary>Sends from the WAN host to <paramref name="external"/>; true when the LAN socket on
    /// <paramref name="port"/> gets it within <paramref name="wait"/>.</summary>
    private static async Task<bool> ReachesAsync(NamespaceLab lab, IPEndPoint external, int port, TimeSpan wait)
    {
        var lan = new NamespaceNetwork(lab.Layout.Hosts["lan"]);
        var wan = new NamespaceNetwork(lab.Layout.Hosts["wan"]);
        await using var listener = await lan.BindUdpAsync(new IPEndPoint(Lan, port));
        await using var sender = await wan.BindUdpAsync(new IPEndPoint(Wan, 0));
        using var timeout = new CancellationTokenSource(wait);
        var receive = listener.ReceiveFromAsync(new byte[64], timeout.Token).AsTask();
        await sender.SendToAsync(new byte[] { 7, 7, 7 }, external);
        try
        {
            return (await receive).Length == 3;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    [PeerFact("ip", "natpmpc", Root = true)]
    public async Task Natpmpc_GetsTheExternalAddressAndAWorkingMapping_FromNatKitGateway()
    {
        NetnsRouter[] routers = [new("home-nat", NatPresets.PortRestrictedCone, "home", Ipv4Address.Parse("192.168.1.1"), "internet", [Ipv4Address.Parse("198.51.100.10")])];
        await using var lab = await NamespaceLab.CreateAsync(Segments, routers, Hosts);
        var r = lab.Layout.Routers[0];
        await using var gateway = await Gateway.StartAsync(r.Inside, r.Outside, r.Config);
        await gateway.ServeInsideUdpAsync(PortMappingHandler.Port, (engine, now) => new PortMappingHandler(engine, now).Handle);
        var lan = lab.Layout.Hosts["lan"];

        Assert.False(await ReachesAsync(lab, new IPEndPoint(IPAddress.Parse("198.51.100.10"), 4000), 4000, TimeSpan.FromMilliseconds(500)));
        var (code, output, errors) = await SystemCommand.TryRunAsync("ip", ["netns", "exec", lan, "natpmpc", "-g", "192.168.1.1"], timeout: TimeSpan.FromSeconds(30));
        Assert.True(code == 0, output + errors);
        Assert.True(output.Contains("Public IP address : 198.51.100.10", StringComparison.Ordinal), output);

        (code, output, errors) = await SystemCommand.TryRunAsync("ip", ["netns", "exec", lan, "natpmpc", "-g", "192.168.1.1", "-a", "4000", "4000", "udp", "3600"],
            timeout: TimeSpan.FromSeconds(30));
        Assert.True(code == 0, output + errors);
        // natpmpc 20150609 prints "liftime": match up to it
        Assert.True(output.Contains("Mapped public port 4000 protocol UDP to local port 4000 lif", StringComparison.Ordinal), output);
        Assert.True(await ReachesAsync(lab, new IPEndPoint(IPAddress.Parse("198.51.100.10"), 4000), 4000, TimeSpan.FromSeconds(5)));
        var mappings = await GatewayControl.MappingsOf(gateway);
        Assert.Equal("192.168.1.10:4000", Assert.Single(mappings).Internal);

        (code, output, errors) = await SystemCommand.TryRunAsync("ip", ["netns", "exec", lan, "natpmpc", "-g", "192.168.1.1", "-a", "4000", "0", "udp", "0"],
            timeout: TimeSpan.FromSeconds(30));
        Assert.True(code == 0, output + errors);
        Assert.Empty(await GatewayControl.MappingsOf(gateway));
    }

    [PeerTheory("ip", "nft", "miniupnpd", Root = true)]
    [InlineData(PortMappingProtocol.Pcp)]
    [InlineData(PortMappingProtocol.NatPmp)]
    public async Task NatKitClients_GetWorkingMappings_FromMiniupnpd_OnAKernelNat(PortMappingProtocol protocol)
    {
        NetnsRouter[] routers =
        [
            new("home-nat", NatPresets.PortRestrictedCone, "home", Ipv4Address.Parse("192.168.1.1"), "internet", [Ipv4Address.Parse("198.51.100.10")],
                new KernelNat(KernelNatKind.MasqueradePersistent)),
        ];
        await using var lab = await NamespaceLab.CreateAsync(Segments, routers, Hosts);
        var routerNs = lab.Layout.KernelRouters[0].Namespace;

        // miniupnpd refuses to map behind a reserved address (TEST-NET here) unless STUN says the address is reachable
        // from outside: a NatKit RFC 5780 server on the WAN host tells it so.
        await using var stun = await StunServer.StartAsync(new NamespaceNetwork(lab.Layout.Hosts["wan"]), new StunServerOptions
        {
            Primary = new IPEndPoint(Wan, 3478),
            AlternateAddress = IPAddress.Parse("203.0.113.101"),
            EnableTcp = false,
        });
        // The chains miniupnpd's nftables build fills (its defaults: table inet filter, chains miniupnpd,
        // prerouting_miniupnpd, postrouting_miniupnpd); the forward policy drops what no mapping opened.
        await SystemCommand.RunAsync("ip", ["netns", "exec", routerNs, "nft", "-f", "-"], standardInput: """
            table inet filter {
              chain forward { type filter hook forward priority 0; policy drop; ct state established,related accept; iifname "in0" accept; jump miniupnpd; }
              chain miniupnpd { }
              chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }
              chain postrouting { type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd; }
              chain prerouting_miniupnpd { }
              chain postrouting_miniupnpd { }
            }
            """);
        var dir = Directory.CreateTempSubdirectory("natkit-miniupnpd-");
        try
        {
            var conf = Path.Combine(dir.FullName, "miniupnpd.conf");
            await File.WriteAllTextAsync(conf, $"""
                ext_ifname=out0
                listening_ip=in0
                enable_natpmp=yes
                enable_upnp=no
                secure_mode=yes
                ext_perform_stun=yes
                ext_stun_host={Wan}
                ext_stun_port=3478
                lease_file={Path.Combine(dir.FullName, "leases")}
                allow 1024-65535 192.168.1.0/24 1024-65535
                deny 0-65535 0.0.0.0/0 0-65535

                """);
            await using var miniupnpd = NamespaceProcess.Start(routerNs, "miniupnpd", ["-f", conf, "-d", "-P", Path.Combine(dir.FullName, "pid")]);
            var mapper = new PortMapper(new NamespaceNetwork(lab.Layout.Hosts["lan"]), new IPEndPoint(IPAddress.Parse("192.168.1.1"), 0),
                new PortMappingClientOptions { LocalAddress = Lan, Attempts = 6 });
            var probe = await mapper.ProbeAsync();
            Assert.True(probe.NatPmp && probe.Pcp, miniupnpd.Output + miniupnpd.Errors);

            var lease = await mapper.MapAsync(IpProtocol.Udp, 4000, TimeSpan.FromHours(1), 4000, protocol);
            Assert.True(lease is not null, miniupnpd.Errors);
            Assert.Equal(protocol, lease.Grant.Protocol);
            Assert.Equal(4000, lease.External.Port);
            Assert.True(await ReachesAsync(lab, new IPEndPoint(IPAddress.Parse("198.51.100.10"), 4000), 4000, TimeSpan.FromSeconds(5)),
                miniupnpd.Errors);
            await lease.DisposeAsync(); // deleted: the forward rule goes
            Assert.False(await ReachesAsync(lab, new IPEndPoint(IPAddress.Parse("198.51.100.10"), 4000), 4000, TimeSpan.FromMilliseconds(500)));
            await miniupnpd.StopAsync();
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}
