using System.Globalization;
using NatKit.Nat;
using NatKit.Packets;

namespace NatKit.Linux;

/// <summary>A network of a namespace lab: a name, the prefix its addresses come from, and the default link of
/// everything attached to it (null: a clean link). A <paramref name="Routed"/> segment is a router between
/// everything on it, as the internet is, instead of one link: its bridge ports are isolated from each other and the
/// segment's namespace answers every ARP (private-VLAN proxy ARP) and forwards, so each datagram that crosses it
/// loses one TTL, and one sent with a TTL that only gets it out of a NAT dies there.</summary>
public sealed record NetnsSegment(string Name, Ipv4Prefix Prefix, LinkImpairment? Link = null, bool Routed = false);

/// <summary>A NAT router of a namespace lab between two segments: a NatKit gateway with <paramref name="Policy"/>,
/// or, when <paramref name="Kernel"/> is set, kernel nftables NAT with the reference rules. Its links default to
/// the segments'.</summary>
public sealed record NetnsRouter(string Name, NatPolicy Policy, string InsideSegment, Ipv4Address InsideAddress,
    string OutsideSegment, IReadOnlyList<Ipv4Address> OutsideAddresses, KernelNat? Kernel = null,
    LinkImpairment? InsideLink = null, LinkImpairment? OutsideLink = null);

/// <summary>A host of a namespace lab; <paramref name="Gateway"/> null means the router inside its segment;
/// <paramref name="Link"/> null means the segment's link.</summary>
public sealed record NetnsHost(string Name, string Segment, IReadOnlyList<Ipv4Address> Addresses, Ipv4Address? Gateway,
    LinkImpairment? Link = null);

/// <summary>What a namespace lab built: where each host, segment and router lives.</summary>
/// <param name="Tag">The run tag in every namespace name.</param>
/// <param name="Hosts">Host name to namespace.</param>
/// <param name="Segments">Segment name to namespace.</param>
/// <param name="Routers">The NatKit gateways to start, one per NatKit router (<see cref="Gateway.StartAsync(TunLink, TunLink, NatConfig, TunOffloads, DataPlaneOptions, CancellationToken)"/>
/// or `natkit gateway run` inside <see cref="NetnsGateway.Namespace"/>).</param>
public sealed record NetnsLabLayout(string Tag, IReadOnlyDictionary<string, string> Hosts,
    IReadOnlyDictionary<string, string> Segments, IReadOnlyList<NetnsGateway> Routers)
{
    /// <summary>The routers doing kernel NAT (already running: nothing to start).</summary>
    public IReadOnlyList<NetnsKernelRouter> KernelRouters { get; init; } = [];
}

/// <summary>One router's gateway: its namespace, links and engine configuration.</summary>
public sealed record NetnsGateway(string Name, string Namespace, TunLink Inside, TunLink Outside, NatConfig Config);

/// <summary>One kernel NAT router: its namespace (veth <c>in0</c> and <c>out0</c>, the nftables table) and rules.</summary>
public sealed record NetnsKernelRouter(string Name, string Namespace, KernelNat Nat, IReadOnlyList<Ipv4Address> OutsideAddresses);

/// <summary>
/// Builds a lab topology (segments, NAT routers, hosts) as network namespaces. Every segment is a namespace with a
/// bridge (<c>br0</c>) its hosts join over veth pairs; it routes (proxy ARP on the bridge) between the bridge and
/// the TUN links of the NatKit routers attached to it: a router's inside TUN is the segment's default route, and
/// each of its outside addresses is routed to its outside TUN in the outside segment. Hosts are namespaces with one
/// <c>eth0</c>. The NatKit routers' gateways are started by the caller from <see cref="NetnsLabLayout.Routers"/>.
/// A kernel NAT router is a namespace joined to both bridges by veth pairs (<c>in0</c>, <c>out0</c>), forwarding,
/// with the reference nftables rules (<see cref="KernelNatRules"/>) on <c>out0</c>; it runs as soon as it is built.
/// </summary>
/// <remarks>
/// A segment's namespace is an L3 hop for NatKit routers: a packet crossing one passes the inside segment's
/// kernel, the NatKit gateway and the outside segment's kernel, and traceroute shows the inside address twice (the
/// segment, then the gateway). Kernel routers sit on the bridges, so they are one hop.
/// Link impairments are netem qdiscs on both ends of each attachment: a host's <c>eth0</c> and its bridge port, a
/// kernel router's veths and their bridge ports, a NatKit router's TUN (its egress, and its ingress redirected to
/// an ifb device): so a packet crosses the sender's link and the receiver's, as in the in-memory lab.
/// </remarks>
public sealed class NamespaceLab : IAsyncDisposable
{
    private readonly NamespaceSet _namespaces;

    private NamespaceLab(string? tag)
    {
        _namespaces = new NamespaceSet(tag);
    }

    public string Tag => _namespaces.Tag;

    public NetnsLabLayout Layout { get; private set; } = null!;

    /// <summary>Builds every namespace, bridge, veth, TUN, address and route; removes all of it on failure.</summary>
    public static async Task<NamespaceLab> CreateAsync(IReadOnlyList<NetnsSegment> segments,
        IReadOnlyList<NetnsRouter> routers, IReadOnlyList<NetnsHost> hosts, string? tag = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(segments);
        ArgumentNullException.ThrowIfNull(routers);
        ArgumentNullException.ThrowIfNull(hosts);
        return await NamespaceSet.BuildOrRemoveAsync(new NamespaceLab(tag),
            lab => lab.BuildAsync(segments, routers, hosts, cancellationToken)).ConfigureAwait(false);
    }

    /// <summary>Removes every namespace this lab made (and with them every link).</summary>
    public ValueTask DisposeAsync() => _namespaces.DisposeAsync();

    /// <summary>Forgets the namespaces without removing them (`natkit lab netns up` leaves them for `down`).</summary>
    public void Detach() => _namespaces.Detach();

    private async Task BuildAsync(IReadOnlyList<NetnsSegment> segments, IReadOnlyList<NetnsRouter> routers,
        IReadOnlyList<NetnsHost> hosts, CancellationToken ct)
    {
        var segmentNs = new Dictionary<string, NetworkNamespace>(StringComparer.Ordinal);
        var bySegment = segments.ToDictionary(s => s.Name, StringComparer.Ordinal);
        // a segment's gateway: the inside address of the router serving it (one per segment)
        var insideRouter = routers.ToDictionary(r => r.InsideSegment, r => r.InsideAddress, StringComparer.Ordinal);
        foreach (var s in segments)
        {
            var ns = await NamespaceAsync("seg-" + s.Name, ct).ConfigureAwait(false);
            segmentNs[s.Name] = ns;
            await ns.IpAsync(["link", "add", "br0", "type", "bridge"], ct).ConfigureAwait(false);
            await ns.IpAsync(["link", "set", "br0", "up"], ct).ConfigureAwait(false);
            await ns.SysctlAsync("net.ipv4.ip_forward", "1", ct).ConfigureAwait(false);
            await ns.SysctlAsync("net.ipv4.conf.br0.proxy_arp", "1", ct).ConfigureAwait(false);
            await ns.SysctlAsync("net.ipv4.neigh.br0.proxy_delay", "0", ct).ConfigureAwait(false); // answer at once
            if (s.Routed)
            {
                await ns.SysctlAsync("net.ipv4.conf.br0.proxy_arp_pvlan", "1", ct).ConfigureAwait(false);
                // routing back out of the port a datagram came in is this segment's job, not a mistake to report
                await ns.SysctlAsync("net.ipv4.conf.all.send_redirects", "0", ct).ConfigureAwait(false);
                await ns.SysctlAsync("net.ipv4.conf.br0.send_redirects", "0", ct).ConfigureAwait(false);
            }
            if (!routers.Any(r => r.InsideSegment == s.Name && r.Kernel is null))
            {
                // a segment with no NatKit router inside it still needs an address to send ARP and ICMP from
                await ns.IpAsync(["addr", "add", "169.254.0.1/32", "dev", "br0"], ct).ConfigureAwait(false);
            }
        }

        var gateways = new List<NetnsGateway>();
        var kernelRouters = new List<NetnsKernelRouter>();
        for (var i = 0; i < routers.Count; i++)
        {
            var r = routers[i];
            var routerNs = await NamespaceAsync(r.Name, ct).ConfigureAwait(false);
            var inside = Segment(segmentNs, r.InsideSegment, r.Name);
            var outside = Segment(segmentNs, r.OutsideSegment, r.Name);
            var insideLink = r.InsideLink ?? bySegment[r.InsideSegment].Link;
            var outsideLink = r.OutsideLink ?? bySegment[r.OutsideSegment].Link;
            if (r.Kernel is { } kernel)
            {
                kernelRouters.Add(await BuildKernelRouterAsync(i, r, kernel, routerNs, inside, outside, bySegment,
                    insideRouter, hosts, insideLink, outsideLink, ct).ConfigureAwait(false));
                continue;
            }

            var insideTun = Invariant($"nki{i}");
            var outsideTun = Invariant($"nko{i}");
            await inside.IpAsync(["tuntap", "add", "dev", insideTun, "mode", "tun", "vnet_hdr"], ct).ConfigureAwait(false);
            await inside.IpAsync(["link", "set", insideTun, "up"], ct).ConfigureAwait(false);
            await outside.IpAsync(["tuntap", "add", "dev", outsideTun, "mode", "tun", "vnet_hdr"], ct).ConfigureAwait(false);
            await outside.IpAsync(["link", "set", outsideTun, "up"], ct).ConfigureAwait(false);
            await ImpairTunAsync(inside, insideTun, insideLink, ct).ConfigureAwait(false);
            await ImpairTunAsync(outside, outsideTun, outsideLink, ct).ConfigureAwait(false);

            var prefix = bySegment[r.InsideSegment].Prefix;
            await inside.IpAsync(["addr", "add", Invariant($"{r.InsideAddress}/{prefix.Length}"), "dev", "br0"], ct).ConfigureAwait(false);
            await inside.IpAsync(["route", "add", "default", "dev", insideTun], ct).ConfigureAwait(false);
            // the gateway's own ICMP (Time Exceeded) comes from the inside address, which the segment also owns
            await inside.SysctlAsync($"net.ipv4.conf.{insideTun}.accept_local", "1", ct).ConfigureAwait(false);
            if (r.Policy.ServeNatPmp || r.Policy.ServePcp || r.Policy.ServeUpnp)
            {
                await RouteServicesToGatewayAsync(inside, insideTun, r.InsideAddress, r.Policy.ServeNatPmp || r.Policy.ServePcp,
                    r.Policy.ServeUpnp, ct).ConfigureAwait(false);
            }
            foreach (var a in r.OutsideAddresses)
            {
                await outside.IpAsync(["route", "add", Invariant($"{a}/32"), "dev", outsideTun], ct).ConfigureAwait(false);
            }

            gateways.Add(new NetnsGateway(r.Name, routerNs.Name, new TunLink(inside.Name, insideTun),
                new TunLink(outside.Name, outsideTun), Gateway.Config(r.Policy, r.OutsideAddresses, [prefix], r.InsideAddress)));
        }

        var hostNs = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < hosts.Count; i++)
        {
            var h = hosts[i];
            var ns = await NamespaceAsync(h.Name, ct).ConfigureAwait(false);
            hostNs[h.Name] = ns.Name;
            var segment = Segment(segmentNs, h.Segment, h.Name);
            var port = Invariant($"vh{i}");
            await ns.IpAsync(["link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", segment.Name], ct).ConfigureAwait(false);
            await JoinBridgeAsync(segment, port, bySegment[h.Segment].Routed, ct).ConfigureAwait(false);
            await ImpairVethAsync(ns, "eth0", segment, port, h.Link ?? bySegment[h.Segment].Link, ct).ConfigureAwait(false);
            await AddressesAsync(ns, "eth0", segment, bySegment[h.Segment].Prefix, h.Addresses, ct).ConfigureAwait(false);
            await ns.IpAsync(["link", "set", "eth0", "up"], ct).ConfigureAwait(false);
            var gateway = h.Gateway ?? (insideRouter.TryGetValue(h.Segment, out var g) ? g : (Ipv4Address?)null);
            await DefaultRouteAsync(ns, "eth0", gateway, ct).ConfigureAwait(false);
        }

        Layout = new NetnsLabLayout(Tag, hostNs, segmentNs.ToDictionary(p => p.Key, p => p.Value.Name, StringComparer.Ordinal), gateways)
        {
            KernelRouters = kernelRouters,
        };
    }

    /// <summary>
    /// The segment owns the gateway's inside address (it answers ARP for it), so what the LAN sends to that address
    /// would end in the segment's own kernel. For the services the gateway answers itself, the local table's rule
    /// moves behind rules that send them from the bridge to the gateway's inside TUN: NAT-PMP/PCP (UDP 5351), and for
    /// UPnP the TCP to the inside address (the IGD's HTTP) and its unicast SSDP (UDP 1900). SSDP's multicast
    /// searches (239.255.255.250:1900) cannot be routed without a multicast router, so a tc filter on the bridge's
    /// ingress redirects them to the TUN (mirred drops the Ethernet header for the L3 device).
    /// </summary>
    private static async Task RouteServicesToGatewayAsync(NetworkNamespace segment, string insideTun, Ipv4Address insideAddress,
        bool natPmpPcp, bool upnp, CancellationToken ct)
    {
        const string table = "5351";
        await segment.IpAsync(["route", "add", "default", "dev", insideTun, "table", table], ct).ConfigureAwait(false);
        if (natPmpPcp)
        {
            await segment.IpAsync(["rule", "add", "pref", "100", "iif", "br0", "ipproto", "udp", "dport", "5351", "lookup", table], ct).ConfigureAwait(false);
        }

        if (upnp)
        {
            var to = Invariant($"{insideAddress}/32");
            await segment.IpAsync(["rule", "add", "pref", "101", "iif", "br0", "to", to, "ipproto", "tcp", "lookup", table], ct).ConfigureAwait(false);
            await segment.IpAsync(["rule", "add", "pref", "102", "iif", "br0", "to", to, "ipproto", "udp", "dport", "1900", "lookup", table], ct).ConfigureAwait(false);
            await segment.TcAsync(["qdisc", "add", "dev", "br0", "handle", "ffff:", "ingress"], ct).ConfigureAwait(false);
            await segment.TcAsync(["filter", "add", "dev", "br0", "parent", "ffff:", "protocol", "ip", "prio", "1", "u32",
                "match", "ip", "dst", "239.255.255.250/32", "match", "ip", "protocol", "17", "0xff", "match", "ip", "dport", "1900", "0xffff",
                "action", "mirred", "egress", "redirect", "dev", insideTun], ct).ConfigureAwait(false);
        }

        await segment.IpAsync(["rule", "add", "pref", "32765", "lookup", "local"], ct).ConfigureAwait(false);
        await segment.IpAsync(["rule", "del", "pref", "0", "lookup", "local"], ct).ConfigureAwait(false);
    }

    /// <summary>A router namespace on both bridges (veth <c>in0</c>/<c>out0</c>), forwarding, with the reference
    /// nftables rules on <c>out0</c>. Its inside segment's namespace routes what it must forward (traffic from a
    /// NatKit router's outside TUN there) to the router's inside address.</summary>
    private static async Task<NetnsKernelRouter> BuildKernelRouterAsync(int index, NetnsRouter r, KernelNat kernel,
        NetworkNamespace ns, NetworkNamespace inside, NetworkNamespace outside, Dictionary<string, NetnsSegment> segments,
        Dictionary<string, Ipv4Address> insideRouter, IReadOnlyList<NetnsHost> hosts, LinkImpairment? insideLink,
        LinkImpairment? outsideLink, CancellationToken ct)
    {
        var insidePrefix = segments[r.InsideSegment].Prefix;
        if (insidePrefix.Length == 0)
        {
            throw new ArgumentException($"{r.Name}: a kernel NAT router's inside segment needs a prefix narrower than 0.0.0.0/0");
        }

        var dmzHost = kernel.Kind == KernelNatKind.Dmz ? DmzHost(r, kernel, hosts) : default;
        var insidePort = Invariant($"vri{index}");
        var outsidePort = Invariant($"vro{index}");
        await ns.IpAsync(["link", "add", "in0", "type", "veth", "peer", "name", insidePort, "netns", inside.Name], ct).ConfigureAwait(false);
        await ns.IpAsync(["link", "add", "out0", "type", "veth", "peer", "name", outsidePort, "netns", outside.Name], ct).ConfigureAwait(false);
        await JoinBridgeAsync(inside, insidePort, segments[r.InsideSegment].Routed, ct).ConfigureAwait(false);
        await JoinBridgeAsync(outside, outsidePort, segments[r.OutsideSegment].Routed, ct).ConfigureAwait(false);
        await ImpairVethAsync(ns, "in0", inside, insidePort, insideLink, ct).ConfigureAwait(false);
        await ImpairVethAsync(ns, "out0", outside, outsidePort, outsideLink, ct).ConfigureAwait(false);
        await ns.IpAsync(["addr", "add", Invariant($"{r.InsideAddress}/{insidePrefix.Length}"), "dev", "in0"], ct).ConfigureAwait(false);
        await AddressesAsync(ns, "out0", outside, segments[r.OutsideSegment].Prefix, r.OutsideAddresses, ct).ConfigureAwait(false);
        await ns.IpAsync(["link", "set", "in0", "up"], ct).ConfigureAwait(false);
        await ns.IpAsync(["link", "set", "out0", "up"], ct).ConfigureAwait(false);
        await DefaultRouteAsync(ns, "out0", insideRouter.TryGetValue(r.OutsideSegment, out var up) ? up : null, ct).ConfigureAwait(false);
        await inside.IpAsync(["route", "add", "default", "via", r.InsideAddress.ToString(), "dev", "br0", "onlink"], ct).ConfigureAwait(false);
        await ns.SysctlAsync("net.ipv4.ip_forward", "1", ct).ConfigureAwait(false);
        var script = KernelNatRules.Script(kernel.Kind, "out0", r.OutsideAddresses[0].ToString(), dmzHost.ToString(),
            kernel.DmzHostPort, kernel.DmzPort);
        await ns.ExecAsync("nft", ["-f", "-"], ct, standardInput: script).ConfigureAwait(false);
        return new NetnsKernelRouter(r.Name, ns.Name, kernel with { DmzHost = kernel.Kind == KernelNatKind.Dmz ? dmzHost : null },
            r.OutsideAddresses);
    }

    /// <summary>The DMZ's inside host: the one named, or the only host on the router's inside segment.</summary>
    private static Ipv4Address DmzHost(NetnsRouter r, KernelNat kernel, IReadOnlyList<NetnsHost> hosts)
    {
        if (kernel.DmzHost is { } named)
        {
            return named;
        }

        var behind = hosts.Where(h => h.Segment == r.InsideSegment).ToList();
        return behind.Count == 1
            ? behind[0].Addresses[0]
            : throw new ArgumentException(
                $"{r.Name}: a kernel DMZ forwards to one host, and segment {r.InsideSegment} has {behind.Count}: name it (dmz:HOST:PORT).");
    }

    private static async Task JoinBridgeAsync(NetworkNamespace segment, string port, bool isolated, CancellationToken ct)
    {
        await segment.IpAsync(["link", "set", port, "master", "br0"], ct).ConfigureAwait(false);
        if (isolated)
        {
            await segment.IpAsync(["link", "set", port, "type", "bridge_slave", "isolated", "on"], ct).ConfigureAwait(false);
        }

        await segment.IpAsync(["link", "set", port, "up"], ct).ConfigureAwait(false);
    }

    /// <summary>Puts <paramref name="addresses"/> on a device attached to a segment (a /32 on a 0.0.0.0/0 segment)
    /// and routes each one to the segment's bridge in the segment namespace.</summary>
    private static async Task AddressesAsync(NetworkNamespace ns, string device, NetworkNamespace segment,
        Ipv4Prefix prefix, IReadOnlyList<Ipv4Address> addresses, CancellationToken ct)
    {
        foreach (var a in addresses)
        {
            var length = prefix.Length == 0 ? 32 : prefix.Length;
            await ns.IpAsync(["addr", "add", Invariant($"{a}/{length}"), "dev", device], ct).ConfigureAwait(false);
            await segment.IpAsync(["route", "replace", Invariant($"{a}/32"), "dev", "br0"], ct).ConfigureAwait(false);
        }
    }

    /// <summary>Default route via the segment's gateway, or on-link when it has none.</summary>
    private static Task DefaultRouteAsync(NetworkNamespace ns, string device, Ipv4Address? gateway, CancellationToken ct) =>
        gateway is { } via
            ? ns.IpAsync(["route", "add", "default", "via", via.ToString(), "dev", device, "onlink"], ct)
            : ns.IpAsync(["route", "add", "default", "dev", device], ct);

    /// <summary>A veth attachment's link: netem on both ends (each end delays what it sends).</summary>
    private static async Task ImpairVethAsync(NetworkNamespace a, string deviceA, NetworkNamespace b, string deviceB,
        LinkImpairment? link, CancellationToken ct)
    {
        if (link is null || link.IsNone)
        {
            return;
        }

        await NetemAsync(a, deviceA, link, ct).ConfigureAwait(false);
        await NetemAsync(b, deviceB, link, ct).ConfigureAwait(false);
    }

    /// <summary>A TUN attachment's link: netem on its egress (to the gateway), and its ingress (what the gateway
    /// writes) redirected through an ifb device with the same netem.</summary>
    private static async Task ImpairTunAsync(NetworkNamespace ns, string tun, LinkImpairment? link, CancellationToken ct)
    {
        if (link is null || link.IsNone)
        {
            return;
        }

        var ifb = tun + "x";
        await ns.IpAsync(["link", "add", "name", ifb, "type", "ifb"], ct).ConfigureAwait(false);
        await ns.IpAsync(["link", "set", ifb, "up"], ct).ConfigureAwait(false);
        await NetemAsync(ns, ifb, link, ct).ConfigureAwait(false);
        await NetemAsync(ns, tun, link, ct).ConfigureAwait(false);
        await ns.TcAsync(["qdisc", "add", "dev", tun, "handle", "ffff:", "ingress"], ct).ConfigureAwait(false);
        await ns.TcAsync(["filter", "add", "dev", tun, "parent", "ffff:", "protocol", "all", "u32", "match", "u32", "0", "0",
            "action", "mirred", "egress", "redirect", "dev", ifb], ct).ConfigureAwait(false);
    }

    private static async Task NetemAsync(NetworkNamespace ns, string device, LinkImpairment link, CancellationToken ct)
    {
        try
        {
            await ns.TcAsync(["qdisc", "add", "dev", device, "root", "netem", .. link.NetemArguments()], ct).ConfigureAwait(false);
        }
        catch (IOException e) when (e.Message.Contains("kind is unknown", StringComparison.OrdinalIgnoreCase) ||
                                    e.Message.Contains("unknown qdisc", StringComparison.OrdinalIgnoreCase))
        {
            throw new NotSupportedException(NetemMissing, e);
        }
    }

    /// <summary>The one sentence a user sees when a topology asks for impairments this kernel cannot apply.</summary>
    public const string NetemMissing = "this topology's links have latency, jitter, loss or duplication, which " +
        "namespaces get from the kernel's netem queueing discipline, and this kernel has no sch_netem: load it " +
        "(modprobe sch_netem) or leave the impairments out.";

    private static NetworkNamespace Segment(Dictionary<string, NetworkNamespace> segments, string name, string user) =>
        segments.TryGetValue(name, out var ns) ? ns : throw new ArgumentException($"{user}: no segment '{name}'");

    private Task<NetworkNamespace> NamespaceAsync(string role, CancellationToken ct) => _namespaces.CreateAsync(role, ct);

    private static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
