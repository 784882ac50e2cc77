using System.Net;
using NatKit.Lab;
using NatKit.Linux;
using NatKit.Net;
using NatKit.Packets;
using NatKit.PortMapping;

namespace NatKit.Scenarios.Matrix;

/// <summary>How a cell is built as namespaces.</summary>
public sealed record NetnsMatrixOptions
{
    /// <summary>Every link (netem on both ends of each attachment, as <see cref="NamespaceLab"/> does); null for
    /// clean links.</summary>
    public LinkImpairment? Link { get; init; }

    /// <summary>A TURN server on the public segment (false: `--no-relay`).</summary>
    public bool Relay { get; init; } = true;

    /// <summary>Gateways serve the NAT-PMP and PCP their policy offers (`--portmap`).</summary>
    public bool PortMapping { get; init; }

    /// <summary>Start the cell's STUN and TURN servers (false: none; the caller runs its own on the same addresses,
    /// as `natkit peer`'s namespace test runs `natkit ... serve` processes; <see cref="NetnsMatrixCell.Services"/>
    /// is then null).</summary>
    public bool Services { get; init; } = true;

    /// <summary>The run tag in every namespace name (<c>nk-TAG-...</c>); default a fresh one.</summary>
    public string? Tag { get; init; }

    /// <summary>The in-memory lab's link as namespace impairment (null when it has none).</summary>
    public static LinkImpairment? From(LinkProfile link)
    {
        ArgumentNullException.ThrowIfNull(link);
        var l = new LinkImpairment(link.Latency, link.Jitter, link.Loss, link.Duplicate);
        return l.IsNone ? null : l;
    }
}

/// <summary>
/// One matrix cell on real Linux networking: every host, segment and router a network namespace
/// (<see cref="NamespaceLab"/>), with the in-memory cell's addresses (<see cref="MatrixLab"/>): the public segment
/// (0.0.0.0/0, no route out of the namespaces) holds the rendezvous host (203.0.113.10 and .11, NatKit's STUN
/// server in RFC 5780 mode on both) and the TURN host (203.0.113.20, NatKit's TURN server); each peer sits
/// behind its type's routers, NatKit gateways running the type's policies (started here, in this process), or for a
/// <see cref="MatrixType.Kernel"/> type a kernel nftables router with that reference rule set. Agents run as real
/// processes inside a peer's namespace (<see cref="Start"/>) or in this process on real sockets there
/// (<see cref="Network"/>). <see cref="DisposeAsync"/> tears everything down (processes, servers, gateways,
/// namespaces), and a failed or cancelled build removes what it made.
/// </summary>
public sealed class NetnsMatrixCell : IAsyncDisposable
{
    /// <summary>The UDP port an agent binds: a DMZ router (kernel or one2one) leads its public port here.</summary>
    public const int AgentPort = 4000;

    private readonly NamespaceLab _lab;
    private readonly List<Gateway> _gateways = [];
    private readonly List<PortMappingAnnouncer> _announcers = [];
    private readonly List<NamespaceProcess> _processes = [];
    private int _disposed;

    private readonly Dictionary<string, IPAddress> _addresses = new(StringComparer.Ordinal);

    private NetnsMatrixCell(NamespaceLab lab, MatrixType a, MatrixType b, bool relay)
    {
        _lab = lab;
        TypeA = a;
        TypeB = b;
        Relay = relay;
    }

    public MatrixType TypeA { get; }

    public MatrixType TypeB { get; }

    public bool Relay { get; }

    /// <summary>The run tag in every namespace name.</summary>
    public string Tag => _lab.Tag;

    /// <summary>The namespaces by role: <c>a</c>, <c>b</c>, <c>rendezvous</c>, <c>turn</c> (with a relay), and
    /// every segment and router the layout made.</summary>
    public NetnsLabLayout Layout => _lab.Layout;

    /// <summary>The STUN (and, with a relay, TURN) servers, running in their namespaces (null when
    /// <see cref="NetnsMatrixOptions.Services"/> is false).</summary>
    public MatrixServices Services { get; private set; } = null!;

    /// <summary>The rendezvous service, which answers STUN Binding on the same port.</summary>
    public IPEndPoint Rendezvous => new(MatrixCellLab.RendezvousAddress, MatrixCellLab.ServicePort);

    /// <summary>The two STUN servers a peer profiles its NAT against.</summary>
    public IReadOnlyList<IPEndPoint> StunServers => [Rendezvous, new(MatrixCellLab.SecondStunAddress, MatrixCellLab.ServicePort)];

    /// <summary>The TURN server (user <see cref="MatrixCellLab.TurnUser"/>), or null with no relay.</summary>
    public IPEndPoint? Turn => Relay ? new(MatrixCellLab.TurnAddress, MatrixCellLab.ServicePort) : null;

    /// <summary>The namespace of a host role (<c>a</c>, <c>b</c>, <c>rendezvous</c>, <c>turn</c>).</summary>
    public string Namespace(string role) => Layout.Hosts.TryGetValue(role, out var ns)
        ? ns
        : throw new ArgumentException($"no host '{role}' in this cell (hosts: {string.Join(", ", Layout.Hosts.Keys)})", nameof(role));

    /// <summary>A host role's (first) address, for an agent that binds it.</summary>
    public IPAddress Address(string role) => _addresses.TryGetValue(role, out var a)
        ? a
        : throw new ArgumentException($"no host '{role}' in this cell", nameof(role));

    /// <summary>Real sockets inside a host's namespace, for an agent run in this process.</summary>
    public INetwork Network(string role) => new NamespaceNetwork(Namespace(role));

    /// <summary>Starts <paramref name="program"/> as a process inside a host's namespace; the cell stops it on
    /// dispose if it still runs.</summary>
    public NamespaceProcess Start(string role, string program, IEnumerable<string> arguments,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var p = NamespaceProcess.Start(Namespace(role), program, arguments, environment);
        lock (_processes) _processes.Add(p);
        return p;
    }

    /// <summary>Builds the cell <paramref name="a"/> connects to <paramref name="b"/> (root; a same-LAN type only
    /// with itself) and starts its gateways and servers. On failure or cancellation nothing is left behind.</summary>
    public static async Task<NetnsMatrixCell> CreateAsync(MatrixType a, MatrixType b, NetnsMatrixOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        options ??= new NetnsMatrixOptions();
        var (segments, routers, hosts, dmz) = Topology(a, b, options);
        var lab = await NamespaceLab.CreateAsync(segments, routers, hosts, options.Tag, cancellationToken).ConfigureAwait(false);
        var cell = new NetnsMatrixCell(lab, a, b, options.Relay);
        foreach (var h in hosts)
        {
            cell._addresses[h.Name] = h.Addresses[0].ToIPAddress();
        }

        try
        {
            foreach (var g in lab.Layout.Routers)
            {
                var config = dmz.TryGetValue(g.Name, out var host) ? g.Config with { DmzHost = host } : g.Config;
                var gateway = await Gateway.StartAsync(g.Inside, g.Outside, config, cancellationToken: cancellationToken)
                    .ConfigureAwait(false);
                cell._gateways.Add(gateway);
                if (options.PortMapping && await GatewayPortMapping.ServeAsync(gateway).ConfigureAwait(false) is { } announcer)
                {
                    cell._announcers.Add(announcer);
                }
            }

            if (options.Services)
            {
                cell.Services = await MatrixServices.StartAsync(cell.Network("rendezvous"),
                    options.Relay ? cell.Network("turn") : null, cancellationToken).ConfigureAwait(false);
            }

            return cell;
        }
        catch
        {
            await cell.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The cell's segments, routers and hosts (the in-memory cell's addresses), and the NatKit routers
    /// that forward unsolicited traffic to a DMZ host.</summary>
    internal static (List<NetnsSegment> Segments, List<NetnsRouter> Routers, List<NetnsHost> Hosts, Dictionary<string, Ipv4Address> Dmz)
        Topology(MatrixType a, MatrixType b, NetnsMatrixOptions options)
    {
        // The internet is a router between the NATs, not one wire: a punch that only has to leave its own NAT dies
        // on it (TraversalOptions.PrimeHopLimit), as it would at the first router of a real ISP.
        var segments = new List<NetnsSegment> { new(MatrixLab.Internet, Ipv4Prefix.Parse("0.0.0.0/0"), options.Link, Routed: true) };
        var routers = new List<NetnsRouter>();
        var dmz = new Dictionary<string, Ipv4Address>(StringComparer.Ordinal);
        var hosts = new List<NetnsHost>
        {
            new("rendezvous", MatrixLab.Internet, [Ip(MatrixCellLab.RendezvousAddress), Ip(MatrixCellLab.SecondStunAddress)], null),
        };
        if (options.Relay)
        {
            hosts.Add(new("turn", MatrixLab.Internet, [Ip(MatrixCellLab.TurnAddress)], null));
        }

        if (a.Placement == MatrixPlacement.SameLan || b.Placement == MatrixPlacement.SameLan)
        {
            if (a != b)
            {
                throw new ArgumentException($"{a.Name} x {b.Name}: a same-LAN type is a cell of its own, paired only with itself");
            }

            var shared = MatrixLab.Lan(0);
            segments.Add(new(shared, Ipv4Prefix.Parse("192.168.1.0/24"), options.Link));
            AddChain(a, 0, shared, null, segments, routers, dmz, options);
            hosts.Add(new("a", shared, [Ipv4Address.Parse("192.168.1.10")], null));
            hosts.Add(new("b", shared, [Ipv4Address.Parse("192.168.1.11")], null));
            return (segments, routers, hosts, dmz);
        }

        foreach (var (type, side) in new[] { (a, 0), (b, 1) })
        {
            var name = side == 0 ? "a" : "b";
            if (type.Placement == MatrixPlacement.Open || type.Chain.Count == 0)
            {
                hosts.Add(new(name, MatrixLab.Internet, [Ipv4Address.Parse($"198.51.100.{10 + side}")], null));
                continue;
            }

            var lan = MatrixLab.Lan(side);
            var address = Ipv4Address.Parse($"192.168.{1 + side}.10");
            segments.Add(new(lan, Ipv4Prefix.Parse($"192.168.{1 + side}.0/24"), options.Link));
            AddChain(type, side, lan, type.DmzToPeer ? address : null, segments, routers, dmz, options);
            hosts.Add(new(name, lan, [address], null));
        }

        return (segments, routers, hosts, dmz);
    }

    /// <summary>The routers of <paramref name="type"/>'s chain (<see cref="MatrixLab.Chain"/>): NatKit gateways, or
    /// for a kernel type one kernel router.</summary>
    private static void AddChain(MatrixType type, int side, string lan, Ipv4Address? dmzHost, List<NetnsSegment> segments,
        List<NetnsRouter> routers, Dictionary<string, Ipv4Address> dmz, NetnsMatrixOptions options)
    {
        if (type.Kernel is not null && type.Chain.Count != 1)
        {
            throw new ArgumentException($"{type.Name}: a kernel NAT type has one router");
        }

        foreach (var hop in MatrixLab.Chain(type, side, lan))
        {
            if (hop.OutsidePrefix is { } prefix)
            {
                segments.Add(new(hop.Outside, Ipv4Prefix.Parse(prefix), options.Link));
            }

            KernelNat? kernel = type.Kernel is { } kind
                ? new KernelNat(kind, kind == KernelNatKind.Dmz ? dmzHost : null, AgentPort, AgentPort)
                : null;
            routers.Add(new NetnsRouter(hop.Name, hop.Policy, hop.Inside, Ipv4Address.Parse(hop.InsideAddress), hop.Outside,
                [Ipv4Address.Parse(hop.OutsideAddress)], kernel));
            if (hop.Level == 0 && dmzHost is { } host && kernel is null)
            {
                dmz[hop.Name] = host;
            }
        }
    }

    /// <summary>Stops the processes (SIGTERM, then kill), the servers and the gateways, and removes every
    /// namespace. Safe to call twice; never throws for what is already gone.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        NamespaceProcess[] processes;
        lock (_processes) processes = [.. _processes];
        foreach (var p in processes)
        {
            await p.DisposeAsync().ConfigureAwait(false);
        }

        if (Services is not null) await Services.DisposeAsync().ConfigureAwait(false);
        foreach (var a in _announcers)
        {
            a.Dispose();
        }

        foreach (var g in _gateways)
        {
            await g.DisposeAsync().ConfigureAwait(false);
        }

        await _lab.DisposeAsync().ConfigureAwait(false);
    }

    private static Ipv4Address Ip(IPAddress address) => Ipv4Address.FromIPAddress(address);
}
