namespace NatKit.Linux;

/// <summary>One NAT hop of a <see cref="GatewayTopology"/> run by NatKit: where its two TUN links are and which
/// addresses it owns.</summary>
/// <param name="Index">1 for the hop nearest the LAN host.</param>
/// <param name="Namespace">Where the gateway process runs (only a loopback: it reaches nothing but its TUNs).</param>
/// <param name="InsideNamespace">The namespace holding the inside TUN (the LAN host's, or the middle router's).</param>
/// <param name="InsideTun">The inside TUN's name.</param>
/// <param name="OutsideNamespace">The namespace holding the outside TUN.</param>
/// <param name="OutsideTun">The outside TUN's name.</param>
/// <param name="InsideAddress">The gateway's own inside address (source of its Time Exceeded).</param>
/// <param name="ExternalAddress">The gateway's public address.</param>
/// <param name="InsidePrefixes">The prefixes behind it.</param>
public sealed record GatewayHop(int Index, string Namespace, string InsideNamespace, string InsideTun,
    string OutsideNamespace, string OutsideTun, string InsideAddress, string ExternalAddress,
    IReadOnlyList<string> InsidePrefixes);

/// <summary>
/// A LAN host, one or more NAT gateways, and a WAN host, as network namespaces with no route out of them.
/// </summary>
/// <remarks>
/// <para><b>NatKit gateways</b> (<see cref="CreateNatKitAsync"/>): the links on both sides of every gateway are
/// TUN devices, so nothing reaches the far side unless the gateway's process reads it, translates it and writes it
/// on. The LAN host's default route is its TUN; the WAN host's addresses sit on the last gateway's outside TUN.
/// Between two NatKit hops a middle namespace routes from one gateway's outside TUN to the next one's inside TUN
/// (an ordinary router hop). No namespace has an nftables table; the kernel forwards nothing around NatKit.</para>
/// <para><b>Kernel NAT</b> (<see cref="CreateKernelAsync"/>): the same addresses over veth pairs, with a gateway
/// namespace that forwards and applies the reference nftables rules.</para>
/// <para>Addresses: LAN host 10.0.0.2/24 (gateway 10.0.0.1); WAN host 198.51.100.2 and 198.51.100.3 (/24); the
/// last gateway's public address 198.51.100.1. Between hops k and k+1: hop k's public address 100.64.k.1, the
/// middle router 100.64.k.2 and 10.k.0.2, hop k+1's inside address 10.k.0.1.</para>
/// </remarks>
public sealed class GatewayTopology : IAsyncDisposable
{
    public const string LanHostAddress = "10.0.0.2";
    public const string LanGatewayAddress = "10.0.0.1";
    public const string WanHostAddress = "198.51.100.2";
    public const string WanHostSecondAddress = "198.51.100.3";
    public const string PublicAddress = "198.51.100.1";

    private readonly NamespaceSet _namespaces;

    private GatewayTopology(string? tag)
    {
        _namespaces = new NamespaceSet(tag);
    }

    /// <summary>The run tag in every namespace name (<c>nk-TAG-...</c>).</summary>
    public string Tag => _namespaces.Tag;

    public NetworkNamespace Lan { get; private set; } = null!;

    public NetworkNamespace Wan { get; private set; } = null!;

    /// <summary>NatKit hops, nearest the LAN first (empty for kernel NAT).</summary>
    public IReadOnlyList<GatewayHop> Hops { get; private set; } = [];

    /// <summary>The gateway namespaces: where NatKit gateways run, or the kernel NAT router.</summary>
    public IReadOnlyList<NetworkNamespace> Gateways { get; private set; } = [];

    /// <summary>Kernel NAT kind, or null for NatKit gateways.</summary>
    public KernelNatKind? Kernel { get; private set; }

    /// <summary>A LAN and a WAN host joined by <paramref name="hops"/> NatKit gateways (on TUN devices that wait for
    /// a gateway process to attach).</summary>
    public static async Task<GatewayTopology> CreateNatKitAsync(int hops = 1, string? tag = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(hops, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(hops, 9);
        return await NamespaceSet.BuildOrRemoveAsync(new GatewayTopology(tag),
            t => t.BuildNatKitAsync(hops, cancellationToken)).ConfigureAwait(false);
    }

    /// <summary>A LAN and a WAN host joined by a gateway namespace doing kernel NAT with nftables.</summary>
    public static async Task<GatewayTopology> CreateKernelAsync(KernelNatKind kind, string? tag = null,
        int dmzInsidePort = 4000, int dmzPort = 4000, CancellationToken cancellationToken = default)
    {
        return await NamespaceSet.BuildOrRemoveAsync(new GatewayTopology(tag),
            t => t.BuildKernelAsync(kind, dmzInsidePort, dmzPort, cancellationToken)).ConfigureAwait(false);
    }

    /// <summary>The LAN host and the WAN host joined by one veth pair, no NAT: the baseline for added latency.</summary>
    public static async Task<GatewayTopology> CreateDirectAsync(string? tag = null,
        CancellationToken cancellationToken = default) =>
        await NamespaceSet.BuildOrRemoveAsync(new GatewayTopology(tag), t => t.BuildDirectAsync(cancellationToken))
            .ConfigureAwait(false);

    /// <summary>Removes every namespace (and with them every link and TUN) this topology made.</summary>
    public ValueTask DisposeAsync() => _namespaces.DisposeAsync();

    private async Task BuildDirectAsync(CancellationToken ct)
    {
        Lan = await NamespaceAsync("lan", ct).ConfigureAwait(false);
        Wan = await NamespaceAsync("wan", ct).ConfigureAwait(false);
        await Lan.IpAsync(["link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", Wan.Name], ct)
            .ConfigureAwait(false);
        await Address(Lan, "eth0", LanHostAddress + "/24", ct).ConfigureAwait(false);
        await Address(Wan, "eth0", WanHostAddress + "/24", ct).ConfigureAwait(false);
        await Up(Lan, "eth0", ct).ConfigureAwait(false);
        await Up(Wan, "eth0", ct).ConfigureAwait(false);
        await Lan.IpAsync(["route", "add", "default", "dev", "eth0"], ct).ConfigureAwait(false);
        await Wan.IpAsync(["route", "add", "default", "dev", "eth0"], ct).ConfigureAwait(false);
    }

    private async Task BuildNatKitAsync(int hops, CancellationToken ct)
    {
        Lan = await NamespaceAsync("lan", ct).ConfigureAwait(false);
        Wan = await NamespaceAsync("wan", ct).ConfigureAwait(false);
        var gateways = new List<NetworkNamespace>();
        var list = new List<GatewayHop>();
        var inside = Lan;
        for (var k = 1; k <= hops; k++)
        {
            var gateway = await NamespaceAsync($"g{k}", ct).ConfigureAwait(false);
            gateways.Add(gateway);
            var last = k == hops;
            var outside = last ? Wan : await NamespaceAsync($"m{k}", ct).ConfigureAwait(false);
            var insideTun = $"nk{k}l";
            var outsideTun = $"nk{k}w";
            await Tun(inside, insideTun, ct).ConfigureAwait(false);
            await Tun(outside, outsideTun, ct).ConfigureAwait(false);

            string insideAddress;
            List<string> insidePrefixes;
            if (k == 1)
            {
                insideAddress = LanGatewayAddress;
                insidePrefixes = ["10.0.0.0/24"];
                await Address(inside, insideTun, LanHostAddress + "/24", ct).ConfigureAwait(false);
            }
            else
            {
                // inside is the middle router between hop k-1 and hop k
                insideAddress = $"10.{k - 1}.0.1";
                insidePrefixes = [$"10.{k - 1}.0.0/24", $"100.64.{k - 1}.0/24"];
                await Address(inside, insideTun, $"10.{k - 1}.0.2/24", ct).ConfigureAwait(false);
            }

            await Up(inside, insideTun, ct).ConfigureAwait(false);
            await inside.IpAsync(["route", "add", "default", "via", insideAddress, "dev", insideTun], ct)
                .ConfigureAwait(false);

            string externalAddress;
            if (last)
            {
                externalAddress = PublicAddress;
                await Address(outside, outsideTun, WanHostAddress + "/24", ct).ConfigureAwait(false);
                await Address(outside, outsideTun, WanHostSecondAddress + "/24", ct).ConfigureAwait(false);
            }
            else
            {
                externalAddress = $"100.64.{k}.1";
                await Address(outside, outsideTun, $"100.64.{k}.2/24", ct).ConfigureAwait(false);
                await outside.SysctlAsync("net.ipv4.ip_forward", "1", ct).ConfigureAwait(false);
            }

            await Up(outside, outsideTun, ct).ConfigureAwait(false);
            list.Add(new GatewayHop(k, gateway.Name, inside.Name, insideTun, outside.Name, outsideTun, insideAddress,
                externalAddress, insidePrefixes));
            inside = outside;
        }

        Hops = list;
        Gateways = gateways;
    }

    private async Task BuildKernelAsync(KernelNatKind kind, int dmzInsidePort, int dmzPort, CancellationToken ct)
    {
        Kernel = kind;
        Lan = await NamespaceAsync("lan", ct).ConfigureAwait(false);
        var gateway = await NamespaceAsync("g1", ct).ConfigureAwait(false);
        Wan = await NamespaceAsync("wan", ct).ConfigureAwait(false);
        Gateways = [gateway];
        await Lan.IpAsync(["link", "add", "eth0", "type", "veth", "peer", "name", "lan0", "netns", gateway.Name], ct)
            .ConfigureAwait(false);
        await Wan.IpAsync(["link", "add", "eth0", "type", "veth", "peer", "name", "wan0", "netns", gateway.Name], ct)
            .ConfigureAwait(false);
        await Address(Lan, "eth0", LanHostAddress + "/24", ct).ConfigureAwait(false);
        await Address(gateway, "lan0", LanGatewayAddress + "/24", ct).ConfigureAwait(false);
        await Address(gateway, "wan0", PublicAddress + "/24", ct).ConfigureAwait(false);
        await Address(Wan, "eth0", WanHostAddress + "/24", ct).ConfigureAwait(false);
        await Address(Wan, "eth0", WanHostSecondAddress + "/24", ct).ConfigureAwait(false);
        await Up(Lan, "eth0", ct).ConfigureAwait(false);
        await Up(gateway, "lan0", ct).ConfigureAwait(false);
        await Up(gateway, "wan0", ct).ConfigureAwait(false);
        await Up(Wan, "eth0", ct).ConfigureAwait(false);
        await Lan.IpAsync(["route", "add", "default", "via", LanGatewayAddress], ct).ConfigureAwait(false);
        await gateway.SysctlAsync("net.ipv4.ip_forward", "1", ct).ConfigureAwait(false);
        var script = KernelNatRules.Script(kind, "wan0", PublicAddress, LanHostAddress, dmzInsidePort, dmzPort);
        await gateway.ExecAsync("nft", ["-f", "-"], ct, standardInput: script).ConfigureAwait(false);
    }

    private Task<NetworkNamespace> NamespaceAsync(string role, CancellationToken ct) => _namespaces.CreateAsync(role, ct);

    private static Task Tun(NetworkNamespace ns, string name, CancellationToken ct) =>
        ns.IpAsync(["tuntap", "add", "dev", name, "mode", "tun", "vnet_hdr"], ct);

    private static Task Address(NetworkNamespace ns, string device, string cidr, CancellationToken ct) =>
        ns.IpAsync(["addr", "add", cidr, "dev", device], ct);

    private static Task Up(NetworkNamespace ns, string device, CancellationToken ct) =>
        ns.IpAsync(["link", "set", device, "up"], ct);
}
