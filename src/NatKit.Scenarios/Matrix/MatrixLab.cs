using System.Net;
using NatKit.Lab;
using NatKit.Nat;
using NatKit.Packets;
using NatKit.PortMapping;

namespace NatKit.Scenarios.Matrix;

/// <summary>How each cell's lab is built.</summary>
public sealed record MatrixLabOptions
{
    /// <summary>Every link of the lab (every host's and every router side's): latency, loss, ... A hop crosses the
    /// sender's link and the receiver's, so a datagram between two peers behind one NAT each crosses six.</summary>
    public LinkProfile Link { get; init; } = new() { Latency = TimeSpan.FromMilliseconds(5) };

    /// <summary>A TURN server on the internet (false: `--no-relay`).</summary>
    public bool Relay { get; init; } = true;

    /// <summary>Routers serve the port mapping protocols their policy offers (NAT-PMP, PCP), and the peers ask
    /// their router for a mapping (`--portmap`). Only a peer's own router, and only when it is the peer's only
    /// NAT: behind a carrier NAT (which offers none here) a home router's mapping opens the inner NAT alone.</summary>
    public bool PortMapping { get; init; }
}

/// <summary>
/// One cell's lab, built fresh: the internet with the rendezvous host (two addresses: the rendezvous service, which
/// answers STUN, on the first; a second STUN server on the second, as port prediction needs two) and the TURN
/// host; each peer behind its NATs. Peer A's side uses 192.168.1.0/24 behind 198.51.100.1, B's 192.168.2.0/24
/// behind 198.51.100.2; carrier segments between NATs are /24s of 100.64.0.0/10; a peer with no NAT sits on the
/// internet at 198.51.100.10 (A) or .11 (B). Same-LAN cells put A at 192.168.1.10 and B at .11 behind one NAT.
/// </summary>
public sealed class MatrixCellLab
{
    public static readonly IPAddress RendezvousAddress = IPAddress.Parse("203.0.113.10");
    public static readonly IPAddress SecondStunAddress = IPAddress.Parse("203.0.113.11");
    public static readonly IPAddress TurnAddress = IPAddress.Parse("203.0.113.20");
    public const int ServicePort = 3478;

    /// <summary>What the TURN server lets allocations relay to: the peers' public side (their NATs' and open
    /// hosts' addresses in 198.51.100.0/24) and other relayed addresses (203.0.113.0/24). Everything else stays
    /// refused, as by default.</summary>
    public static readonly IReadOnlyList<string> TurnPeerAllow = ["198.51.100.0/24", "203.0.113.0/24"];

    public const string TurnUser = "matrix";
    public const string TurnPassword = "matrix-lab";

    internal MatrixCellLab(VirtualNetwork lab, MatrixType a, MatrixType b, LabHost hostA, LabHost hostB,
        LabHost rendezvous, LabHost? turn, IPEndPoint? portMapA = null, IPEndPoint? portMapB = null)
    {
        PortMapA = portMapA;
        PortMapB = portMapB;
        Lab = lab;
        TypeA = a;
        TypeB = b;
        A = hostA;
        B = hostB;
        RendezvousHost = rendezvous;
        TurnHost = turn;
    }

    public VirtualNetwork Lab { get; }

    public MatrixType TypeA { get; }

    public MatrixType TypeB { get; }

    /// <summary>The peer that connects (row of the grid).</summary>
    public LabHost A { get; }

    /// <summary>The peer that accepts (column of the grid).</summary>
    public LabHost B { get; }

    public LabHost RendezvousHost { get; }

    /// <summary>Where peer A asks for a port mapping (its router's NAT-PMP/PCP endpoint), or null.</summary>
    public IPEndPoint? PortMapA { get; }

    /// <summary>Where peer B asks for a port mapping, or null.</summary>
    public IPEndPoint? PortMapB { get; }

    /// <summary>The TURN host, or null with no relay.</summary>
    public LabHost? TurnHost { get; }

    /// <summary>The rendezvous service (which answers STUN Binding on the same port).</summary>
    public IPEndPoint Rendezvous => new(RendezvousAddress, ServicePort);

    /// <summary>The STUN servers a peer profiles its NAT against: the rendezvous and the second address.</summary>
    public IReadOnlyList<IPEndPoint> StunServers => [Rendezvous, new(SecondStunAddress, ServicePort)];

    /// <summary>The TURN server, or null with no relay.</summary>
    public IPEndPoint? Turn => TurnHost is null ? null : new(TurnAddress, ServicePort);
}

/// <summary>Builds <see cref="MatrixCellLab"/>s.</summary>
public static class MatrixLab
{
    /// <summary>A fresh lab for the cell (<paramref name="a"/> connects to <paramref name="b"/>), deterministic
    /// from <paramref name="seed"/>.</summary>
    public static MatrixCellLab Build(MatrixType a, MatrixType b, int seed, MatrixLabOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        options ??= new MatrixLabOptions();
        var lab = new VirtualNetwork(seed);
        var link = options.Link;
        var internet = lab.AddSegment(Internet, link: link);
        var rendezvous = lab.AddHost("rendezvous", internet, MatrixCellLab.RendezvousAddress.ToString(),
            MatrixCellLab.SecondStunAddress.ToString());
        var turn = options.Relay ? lab.AddHost("turn", internet, MatrixCellLab.TurnAddress.ToString()) : null;

        LabHost hostA, hostB;
        if (a.Placement == MatrixPlacement.SameLan || b.Placement == MatrixPlacement.SameLan)
        {
            if (a != b)
            {
                throw new ArgumentException($"{a.Name} x {b.Name}: a same-LAN type is a cell of its own, paired only with itself");
            }

            var lan = lab.AddSegment(Lan(0), "192.168.1.0/24", link);
            AddChain(lab, a, 0, lan, internet, link, dmzHost: null, portMapping: false);
            hostA = lab.AddHost("a", lan, "192.168.1.10");
            hostB = lab.AddHost("b", lan, "192.168.1.11");
        }
        else
        {
            hostA = AddPeer(lab, a, 0, internet, link, options.PortMapping);
            hostB = AddPeer(lab, b, 1, internet, link, options.PortMapping);
        }

        return new MatrixCellLab(lab, a, b, hostA, hostB, rendezvous, turn,
            options.PortMapping ? PortMapGateway(a, 0) : null, options.PortMapping ? PortMapGateway(b, 1) : null);
    }

    /// <summary>Where the peer on <paramref name="side"/> (0: A, 1: B) asks for a mapping: its router's inside
    /// address at the NAT-PMP/PCP port, when the router offers one (<see cref="OffersPortMapping"/>); else null.</summary>
    public static IPEndPoint? PortMapGateway(MatrixType type, int side) =>
        OffersPortMapping(type) ? new IPEndPoint(IPAddress.Parse(LanRouterAddress(side)), PortMappingHandler.Port) : null;

    /// <summary>The inside address of the router serving side <paramref name="side"/>'s LAN.</summary>
    private static string LanRouterAddress(int side) => $"192.168.{1 + side}.1";

    /// <summary>A peer of <paramref name="type"/> can get a useful mapping: its only NAT serves NAT-PMP or PCP (a kernel
    /// router of the namespace grid serves none).</summary>
    public static bool OffersPortMapping(MatrixType type)
    {
        ArgumentNullException.ThrowIfNull(type);
        return type.Placement == MatrixPlacement.BehindNat && type.Chain.Count == 1 && !type.DmzToPeer && type.Kernel is null &&
               (type.Chain[0].ServeNatPmp || type.Chain[0].ServePcp);
    }

    /// <summary>The host for side <paramref name="side"/> (0 = A, 1 = B) of type <paramref name="type"/>.</summary>
    private static LabHost AddPeer(VirtualNetwork lab, MatrixType type, int side, LabSegment internet, LinkProfile link,
        bool portMapping)
    {
        var name = side == 0 ? "a" : "b";
        if (type.Placement == MatrixPlacement.Open || type.Chain.Count == 0)
        {
            return lab.AddHost(name, internet, $"198.51.100.{10 + side}");
        }

        var lan = lab.AddSegment(Lan(side), $"192.168.{1 + side}.0/24", link);
        var address = $"192.168.{1 + side}.10";
        AddChain(lab, type, side, lan, internet, link, type.DmzToPeer ? address : null, portMapping && OffersPortMapping(type));
        return lab.AddHost(name, lan, address);
    }

    /// <summary>The routers of <paramref name="type"/>'s chain from <paramref name="lan"/> out to the internet.</summary>
    private static void AddChain(VirtualNetwork lab, MatrixType type, int side, LabSegment lan, LabSegment internet,
        LinkProfile link, string? dmzHost, bool portMapping)
    {
        var segments = new Dictionary<string, LabSegment>(StringComparer.Ordinal) { [Lan(side)] = lan, [Internet] = internet };
        foreach (var hop in Chain(type, side, Lan(side)))
        {
            if (hop.OutsidePrefix is { } prefix)
            {
                segments[hop.Outside] = lab.AddSegment(hop.Outside, prefix, link);
            }

            var dmz = hop.Level == 0 ? dmzHost : null;
            var router = lab.AddRouter(hop.Name, hop.Policy, segments[hop.Inside], hop.InsideAddress, segments[hop.Outside], [hop.OutsideAddress],
                dmz is null ? null : c => c with { DmzHost = Ipv4Address.Parse(dmz) });
            if (portMapping && hop.Level == 0)
            {
                var handler = new PortMappingHandler(router.Engine, router.NowMs);
                router.ServeUdp(PortMappingHandler.Port, handler.Handle);
                // the router's start-up announcements to its LAN (RFC 6886 section 3.2.1)
                _ = new PortMappingAnnouncer(handler, f => ValueTask.FromResult(f(router.NowMs)), router.SendInsideUdp, lab.TimeProvider).Start();
            }
        }
    }

    /// <summary>The public segment's name.</summary>
    internal const string Internet = "internet";

    /// <summary>The LAN segment of side <paramref name="side"/> (0 = A, 1 = B).</summary>
    internal static string Lan(int side) => side == 0 ? "lan-a" : "lan-b";

    /// <summary>
    /// The routers of <paramref name="type"/>'s chain from the LAN segment <paramref name="lan"/> out to the
    /// internet, as both the in-memory cell and the namespace cell build them: the first serves the LAN from
    /// 192.168.(1 + side).1, each next one serves a carrier segment 100.(65 + level).side.0/24 (inside .1, the
    /// inner router at .2), the last is on the internet at 198.51.100.(1 + side).
    /// </summary>
    internal static IReadOnlyList<MatrixHop> Chain(MatrixType type, int side, string lan)
    {
        var suffix = side == 0 ? "a" : "b";
        var hops = new List<MatrixHop>();
        var inside = lan;
        var insideAddress = LanRouterAddress(side);
        for (var level = 0; level < type.Chain.Count; level++)
        {
            var outermost = level == type.Chain.Count - 1;
            var prefix = $"100.{65 + level}.{side}";
            var outside = outermost ? Internet : $"carrier{level + 1}-{suffix}";
            hops.Add(new MatrixHop(level, level == 0 ? $"nat-{suffix}" : $"carrier{level}-nat-{suffix}", type.Chain[level],
                inside, insideAddress, outside, outermost ? $"198.51.100.{1 + side}" : $"{prefix}.2",
                outermost ? null : $"{prefix}.0/24"));
            inside = outside;
            insideAddress = $"{prefix}.1";
        }

        return hops;
    }
}

/// <summary>One router of a matrix peer's chain.</summary>
/// <param name="Level">0 for the peer's own router, 1 for the carrier NAT behind it, ...</param>
/// <param name="Name">The router's name in the lab.</param>
/// <param name="Policy">Its NAT behaviour.</param>
/// <param name="Inside">The segment its inside is on.</param>
/// <param name="InsideAddress">Its address there.</param>
/// <param name="Outside">The segment its outside is on.</param>
/// <param name="OutsideAddress">Its address there.</param>
/// <param name="OutsidePrefix">The carrier segment the router's outside is on, to create; null for the internet.</param>
internal sealed record MatrixHop(int Level, string Name, NatPolicy Policy, string Inside, string InsideAddress,
    string Outside, string OutsideAddress, string? OutsidePrefix);
