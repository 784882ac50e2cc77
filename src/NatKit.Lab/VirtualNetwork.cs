using NatKit.Lab.Capture;
using NatKit.Lab.Internal;
using NatKit.Lab.Scheduling;
using NatKit.Nat;
using NatKit.Packets;

namespace NatKit.Lab;

/// <summary>
/// The lab: segments, hosts and NAT routers in virtual time. Build a topology (by code, or from a file with
/// <see cref="Topology.TopologyLoader"/>), then run async scenarios on it with <see cref="Run(Func{Task},
/// LabRunOptions?)"/>. One seeded <see cref="Random"/> drives every random choice (ephemeral ports, NAT port
/// choice, link impairments), so the same seed replays the same run, packet for packet.
/// </summary>
public sealed class VirtualNetwork
{
    private readonly Dictionary<string, LabSegment> _segments = new(StringComparer.Ordinal);
    private readonly Dictionary<string, LabNode> _nodes = new(StringComparer.Ordinal);
    private readonly List<LabHost> _hosts = [];
    private readonly List<LabRouter> _routers = [];

    public VirtualNetwork(int seed = 1, DateTimeOffset? epoch = null)
    {
        Seed = seed;
        Random = new Random(seed);
        Scheduler = new LabScheduler(epoch);
    }

    /// <summary>The seed this lab's random choices come from.</summary>
    public int Seed { get; }

    /// <summary>The one source of randomness in the lab. Code running in the lab may use it too.</summary>
    public Random Random { get; }

    /// <summary>The event loop and virtual clock.</summary>
    public LabScheduler Scheduler { get; }

    /// <summary>The virtual clock (also every host's <see cref="LabHost.TimeProvider"/>).</summary>
    public TimeProvider TimeProvider => Scheduler.TimeProvider;

    /// <summary>Packet counters for the whole lab.</summary>
    public LabStats Stats { get; } = new();

    public IReadOnlyCollection<LabSegment> Segments => _segments.Values;

    public IReadOnlyList<LabHost> Hosts => _hosts;

    public IReadOnlyList<LabRouter> Routers => _routers;

    internal PacketPool Pool { get; } = new();

    /// <summary>Adds a segment. <paramref name="prefix"/> "0.0.0.0/0" makes a flat core where every address is
    /// reached directly.</summary>
    public LabSegment AddSegment(string name, string prefix = "0.0.0.0/0", LinkProfile? link = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        if (!Ipv4Prefix.TryParse(prefix, out var p))
        {
            throw new ArgumentException($"segment {name}: {prefix} is not an IPv4 prefix (a.b.c.d/n)", nameof(prefix));
        }

        var segment = new LabSegment(this, name, p, link ?? LinkProfile.Perfect);
        if (!_segments.TryAdd(name, segment))
        {
            throw new ArgumentException($"a segment named {name} already exists", nameof(name));
        }

        return segment;
    }

    /// <summary>Adds a host on <paramref name="segment"/> with one or more addresses (the first is primary).</summary>
    public LabHost AddHost(string name, LabSegment segment, params string[] addresses)
    {
        ArgumentNullException.ThrowIfNull(segment);
        var parsed = ParseAddresses($"host {name}", addresses);
        foreach (var a in parsed)
        {
            if (!segment.Prefix.Contains(a))
            {
                throw new ArgumentException($"host {name}: {a} is not in segment {segment}");
            }
        }

        var host = new LabHost(this, name, segment, parsed, segment.Link);
        AddNode(host);
        segment.Attach(host.Interface);
        _hosts.Add(host);
        return host;
    }

    /// <summary>
    /// Adds a NAT router between <paramref name="inside"/> (at <paramref name="insideAddress"/>, which becomes the
    /// inside segment's gateway) and <paramref name="outside"/> (at <paramref name="outsideAddresses"/>, its
    /// external pool). <paramref name="configure"/> may adjust the engine's config (static forwards, limits);
    /// the inside prefix, addresses, MTUs and random seed are filled in from the topology and the lab's seed.
    /// </summary>
    public LabRouter AddRouter(string name, NatPolicy policy, LabSegment inside, string insideAddress,
        LabSegment outside, IReadOnlyList<string> outsideAddresses, Func<NatConfig, NatConfig>? configure = null,
        LinkProfile? insideLink = null, LinkProfile? outsideLink = null)
    {
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentNullException.ThrowIfNull(inside);
        ArgumentNullException.ThrowIfNull(outside);
        ArgumentNullException.ThrowIfNull(outsideAddresses);
        var insideIp = ParseAddresses($"router {name} inside", [insideAddress])[0];
        var outsideIps = ParseAddresses($"router {name} outside", outsideAddresses);
        if (!inside.Prefix.Contains(insideIp))
        {
            throw new ArgumentException($"router {name}: inside address {insideIp} is not in segment {inside}");
        }

        if (inside.Gateway is not null)
        {
            throw new ArgumentException($"router {name}: segment {inside.Name} already has a router");
        }

        var inLink = insideLink ?? inside.Link;
        var outLink = outsideLink ?? outside.Link;
        var config = new NatConfig
        {
            Policy = policy,
            InsidePrefixes = [inside.Prefix],
            ExternalAddresses = outsideIps,
            InsideAddress = insideIp,
            InsideMtu = inLink.Mtu,
            OutsideMtu = outLink.Mtu,
            RandomSeed = Random.Next(),
        };
        config = configure?.Invoke(config) ?? config;
        var router = new LabRouter(this, name, config, inside, insideIp, inLink, outside, outsideIps, outLink);
        AddNode(router);
        inside.Attach(router.Inside);
        outside.Attach(router.Outside);
        inside.Gateway = insideIp;
        _routers.Add(router);
        return router;
    }

    /// <inheritdoc cref="AddRouter(string, NatPolicy, LabSegment, string, LabSegment, IReadOnlyList{string}, Func{NatConfig, NatConfig}?, LinkProfile?, LinkProfile?)"/>
    public LabRouter AddRouter(string name, NatPolicy policy, LabSegment inside, string insideAddress,
        LabSegment outside, string outsideAddress) =>
        AddRouter(name, policy, inside, insideAddress, outside, [outsideAddress]);

    /// <summary>
    /// Adds a packet port on <paramref name="segment"/> with one or more addresses (see <see cref="LabPort"/>).
    /// <paramref name="gateway"/> makes its first address the segment's gateway, so the segment's hosts send it
    /// everything for addresses beyond the segment (a tunnel client's inside); without, it receives only what is
    /// sent to its own addresses (a tunnel server's external address on the internet).
    /// </summary>
    public LabPort AddPort(string name, LabSegment segment, bool gateway, params string[] addresses)
    {
        ArgumentNullException.ThrowIfNull(segment);
        var parsed = ParseAddresses($"port {name}", addresses);
        foreach (var a in parsed)
        {
            if (!segment.Prefix.Contains(a))
            {
                throw new ArgumentException($"port {name}: {a} is not in segment {segment}");
            }
        }

        if (gateway && segment.Gateway is not null)
        {
            throw new ArgumentException($"port {name}: segment {segment.Name} already has a gateway");
        }

        var port = new LabPort(this, name, segment, parsed, capacity: 4096);
        AddNode(port);
        segment.Attach(port.Interface);
        if (gateway)
        {
            segment.Gateway = parsed[0];
        }

        return port;
    }

    public LabHost Host(string name) =>
        _nodes.TryGetValue(name, out var n) && n is LabHost h ? h : throw new KeyNotFoundException($"no host {name}");

    public LabRouter Router(string name) =>
        _nodes.TryGetValue(name, out var n) && n is LabRouter r ? r : throw new KeyNotFoundException($"no router {name}");

    public LabSegment Segment(string name) =>
        _segments.TryGetValue(name, out var s) ? s : throw new KeyNotFoundException($"no segment {name}");

    /// <summary>Captures every packet put on <paramref name="segment"/> (as its sender sent it) to a pcap stream.</summary>
    public PacketCapture Capture(LabSegment segment, Stream pcap)
    {
        ArgumentNullException.ThrowIfNull(segment);
        return new PacketCapture(this, $"segment {segment.Name}", new PcapWriter(pcap), segment.Captures);
    }

    /// <summary>Captures every packet <paramref name="host"/> sends or receives to a pcap stream.</summary>
    public PacketCapture Capture(LabHost host, Stream pcap)
    {
        ArgumentNullException.ThrowIfNull(host);
        return new PacketCapture(this, $"host {host.Name}", new PcapWriter(pcap), host.Interface.Captures);
    }

    /// <summary>Captures one of a router's links: what it sends on that side and what reaches it there. The
    /// inside and outside captures of one router show each packet before and after translation.</summary>
    public PacketCapture Capture(LabRouter router, NatSide side, Stream pcap)
    {
        ArgumentNullException.ThrowIfNull(router);
        var iface = side == NatSide.Inside ? router.Inside : router.Outside;
        return new PacketCapture(this, $"router {router.Name} {side.ToString().ToLowerInvariant()}",
            new PcapWriter(pcap), iface.Captures);
    }

    /// <summary>Runs an async scenario in the lab on this thread; see <see cref="LabScheduler.Run(Func{Task}, LabRunOptions?)"/>.</summary>
    public void Run(Func<Task> scenario, LabRunOptions? options = null) => Scheduler.Run(scenario, options);

    /// <inheritdoc cref="Run(Func{Task}, LabRunOptions?)"/>
    public T Run<T>(Func<Task<T>> scenario, LabRunOptions? options = null) => Scheduler.Run(scenario, options);

    /// <summary>Lets <paramref name="duration"/> of virtual time pass, running everything due in it.</summary>
    public void Advance(TimeSpan duration) => Scheduler.Advance(duration);

    /// <summary>Virtual time since the lab started.</summary>
    public TimeSpan Now => Scheduler.Now;

    private void AddNode(LabNode node)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(node.Name);
        if (!_nodes.TryAdd(node.Name, node))
        {
            throw new ArgumentException($"a host or router named {node.Name} already exists");
        }
    }

    private static Ipv4Address[] ParseAddresses(string what, IReadOnlyList<string> addresses)
    {
        if (addresses.Count == 0)
        {
            throw new ArgumentException($"{what}: at least one address is needed");
        }

        var result = new Ipv4Address[addresses.Count];
        for (var i = 0; i < addresses.Count; i++)
        {
            if (!Ipv4Address.TryParse(addresses[i], out result[i]))
            {
                throw new ArgumentException($"{what}: {addresses[i]} is not an IPv4 address");
            }
        }

        return result;
    }
}

/// <summary>Packet counters for a whole lab.</summary>
public sealed class LabStats
{
    /// <summary>Packets hosts sent.</summary>
    public long Sent { get; internal set; }

    /// <summary>Packets that reached the far end of a hop.</summary>
    public long Delivered { get; internal set; }

    /// <summary>Packets lost to link loss.</summary>
    public long Lost { get; internal set; }

    /// <summary>Extra copies made by link duplication.</summary>
    public long Duplicated { get; internal set; }

    /// <summary>Packets bigger than a link's MTU.</summary>
    public long MtuDropped { get; internal set; }

    /// <summary>Packets whose next hop nobody on the segment owns.</summary>
    public long NoRoute { get; internal set; }

    /// <summary>Packets a NAT engine dropped (its own counters say why).</summary>
    public long NatDropped { get; internal set; }

    public override string ToString() =>
        $"sent {Sent}, delivered {Delivered}, lost {Lost}, duplicated {Duplicated}, mtu-dropped {MtuDropped}, " +
        $"no-route {NoRoute}, nat-dropped {NatDropped}";
}
