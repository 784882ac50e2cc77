using System.Globalization;
using NatKit.Nat;
using NatKit.Packets;

namespace NatKit.Linux;

/// <summary>A network of a namespace lab: a name and the prefix its addresses come from.</summary>
public sealed record NetnsSegment(string Name, Ipv4Prefix Prefix);

/// <summary>A NAT router of a namespace lab: run by a NatKit gateway between two segments.</summary>
public sealed record NetnsRouter(string Name, NatPolicy Policy, string InsideSegment, Ipv4Address InsideAddress,
    string OutsideSegment, IReadOnlyList<Ipv4Address> OutsideAddresses);

/// <summary>A host of a namespace lab; <paramref name="Gateway"/> null means the router inside its segment.</summary>
public sealed record NetnsHost(string Name, string Segment, IReadOnlyList<Ipv4Address> Addresses, Ipv4Address? Gateway);

/// <summary>What a namespace lab built: where each host, segment and router lives.</summary>
/// <param name="Tag">The run tag in every namespace name.</param>
/// <param name="Hosts">Host name to namespace.</param>
/// <param name="Segments">Segment name to namespace.</param>
/// <param name="Routers">The gateways to start, one per router (<see cref="Gateway.StartAsync(TunLink, TunLink, NatConfig, TunOffloads, DataPlaneOptions, CancellationToken)"/>
/// or `natkit gateway run` inside <see cref="NetnsGateway.Namespace"/>).</param>
public sealed record NetnsLabLayout(string Tag, IReadOnlyDictionary<string, string> Hosts,
    IReadOnlyDictionary<string, string> Segments, IReadOnlyList<NetnsGateway> Routers);

/// <summary>One router's gateway: its namespace, links and engine configuration.</summary>
public sealed record NetnsGateway(string Name, string Namespace, TunLink Inside, TunLink Outside, NatConfig Config);

/// <summary>
/// Builds a lab topology (segments, NAT routers, hosts) as network namespaces. Every segment is a namespace with a
/// bridge (<c>br0</c>) its hosts join over veth pairs; it routes (proxy ARP on the bridge) between the bridge and
/// the TUN links of the routers attached to it: a router's inside TUN is the segment's default route, and each of
/// its outside addresses is routed to its outside TUN in the outside segment. Hosts are namespaces with one
/// <c>eth0</c>. The routers' gateways are started by the caller from <see cref="NetnsLabLayout.Routers"/>.
/// </summary>
/// <remarks>
/// A segment's namespace is an L3 hop: a packet crossing one NAT passes the inside segment's kernel, the NatKit
/// gateway and the outside segment's kernel, and traceroute shows the inside address twice (the segment, then
/// the gateway). Link impairments (latency, loss) of the lab's topology files are not applied here.
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
        var lab = new NamespaceLab(tag);
        try
        {
            await lab.BuildAsync(segments, routers, hosts, cancellationToken).ConfigureAwait(false);
            return lab;
        }
        catch
        {
            await lab.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Removes every namespace this lab made (and with them every link).</summary>
    public ValueTask DisposeAsync() => _namespaces.DisposeAsync();

    /// <summary>Forgets the namespaces without removing them (`natkit lab netns up` leaves them for `down`).</summary>
    public void Detach() => _namespaces.Detach();

    private async Task BuildAsync(IReadOnlyList<NetnsSegment> segments, IReadOnlyList<NetnsRouter> routers,
        IReadOnlyList<NetnsHost> hosts, CancellationToken ct)
    {
        var segmentNs = new Dictionary<string, NetworkNamespace>(StringComparer.Ordinal);
        var prefixes = segments.ToDictionary(s => s.Name, s => s.Prefix, StringComparer.Ordinal);
        foreach (var s in segments)
        {
            var ns = await NamespaceAsync("seg-" + s.Name, ct).ConfigureAwait(false);
            segmentNs[s.Name] = ns;
            await ns.IpAsync(["link", "add", "br0", "type", "bridge"], ct).ConfigureAwait(false);
            await ns.IpAsync(["link", "set", "br0", "up"], ct).ConfigureAwait(false);
            await ns.SysctlAsync("net.ipv4.ip_forward", "1", ct).ConfigureAwait(false);
            await ns.SysctlAsync("net.ipv4.conf.br0.proxy_arp", "1", ct).ConfigureAwait(false);
            await ns.SysctlAsync("net.ipv4.neigh.br0.proxy_delay", "0", ct).ConfigureAwait(false); // answer at once
            if (!routers.Any(r => r.InsideSegment == s.Name))
            {
                // a segment with no router inside it still needs an address to send ARP and ICMP from
                await ns.IpAsync(["addr", "add", "169.254.0.1/32", "dev", "br0"], ct).ConfigureAwait(false);
            }
        }

        var gateways = new List<NetnsGateway>();
        var insideRouter = new Dictionary<string, Ipv4Address>(StringComparer.Ordinal);
        for (var i = 0; i < routers.Count; i++)
        {
            var r = routers[i];
            var gatewayNs = await NamespaceAsync(r.Name, ct).ConfigureAwait(false);
            var inside = Segment(segmentNs, r.InsideSegment, r.Name);
            var outside = Segment(segmentNs, r.OutsideSegment, r.Name);
            var insideTun = Invariant($"nki{i}");
            var outsideTun = Invariant($"nko{i}");
            await inside.IpAsync(["tuntap", "add", "dev", insideTun, "mode", "tun", "vnet_hdr"], ct).ConfigureAwait(false);
            await inside.IpAsync(["link", "set", insideTun, "up"], ct).ConfigureAwait(false);
            await outside.IpAsync(["tuntap", "add", "dev", outsideTun, "mode", "tun", "vnet_hdr"], ct).ConfigureAwait(false);
            await outside.IpAsync(["link", "set", outsideTun, "up"], ct).ConfigureAwait(false);

            var prefix = prefixes[r.InsideSegment];
            await inside.IpAsync(["addr", "add", Invariant($"{r.InsideAddress}/{prefix.Length}"), "dev", "br0"], ct).ConfigureAwait(false);
            await inside.IpAsync(["route", "add", "default", "dev", insideTun], ct).ConfigureAwait(false);
            // the gateway's own ICMP (Time Exceeded) comes from the inside address, which the segment also owns
            await inside.SysctlAsync($"net.ipv4.conf.{insideTun}.accept_local", "1", ct).ConfigureAwait(false);
            insideRouter[r.InsideSegment] = r.InsideAddress;
            foreach (var a in r.OutsideAddresses)
            {
                await outside.IpAsync(["route", "add", Invariant($"{a}/32"), "dev", outsideTun], ct).ConfigureAwait(false);
            }

            var config = new NatConfig
            {
                Policy = r.Policy,
                ExternalAddresses = r.OutsideAddresses,
                InsidePrefixes = [prefix],
                InsideAddress = r.InsideAddress,
                OutsideMtu = 65535,
                InsideMtu = 65535,
            };
            gateways.Add(new NetnsGateway(r.Name, gatewayNs.Name, new TunLink(inside.Name, insideTun),
                new TunLink(outside.Name, outsideTun), config));
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
            await segment.IpAsync(["link", "set", port, "master", "br0"], ct).ConfigureAwait(false);
            await segment.IpAsync(["link", "set", port, "up"], ct).ConfigureAwait(false);
            var prefix = prefixes[h.Segment];
            foreach (var a in h.Addresses)
            {
                var length = prefix.Length == 0 ? 32 : prefix.Length;
                await ns.IpAsync(["addr", "add", Invariant($"{a}/{length}"), "dev", "eth0"], ct).ConfigureAwait(false);
                await segment.IpAsync(["route", "replace", Invariant($"{a}/32"), "dev", "br0"], ct).ConfigureAwait(false);
            }

            await ns.IpAsync(["link", "set", "eth0", "up"], ct).ConfigureAwait(false);
            var gateway = h.Gateway ?? (insideRouter.TryGetValue(h.Segment, out var g) ? g : (Ipv4Address?)null);
            if (gateway is { } via)
            {
                await ns.IpAsync(["route", "add", "default", "via", via.ToString(), "dev", "eth0"], ct).ConfigureAwait(false);
            }
            else
            {
                await ns.IpAsync(["route", "add", "default", "dev", "eth0"], ct).ConfigureAwait(false); // on-link
            }
        }

        Layout = new NetnsLabLayout(Tag, hostNs, segmentNs.ToDictionary(p => p.Key, p => p.Value.Name, StringComparer.Ordinal), gateways);
    }

    private static NetworkNamespace Segment(Dictionary<string, NetworkNamespace> segments, string name, string user) =>
        segments.TryGetValue(name, out var ns) ? ns : throw new ArgumentException($"{user}: no segment '{name}'");

    private Task<NetworkNamespace> NamespaceAsync(string role, CancellationToken ct) => _namespaces.CreateAsync(role, ct);

    private static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
