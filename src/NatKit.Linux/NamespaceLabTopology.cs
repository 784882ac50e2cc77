using System.Globalization;
using NatKit.Lab;
using NatKit.Lab.Topology;
using NatKit.Packets;

namespace NatKit.Linux;

/// <summary>
/// A lab topology (NatKit.Lab's <see cref="TopologySpec"/>, the in-memory lab's YAML) as a <see cref="NamespaceLab"/>:
/// its segments, hosts and routers as namespace records, each router a NatKit gateway or kernel NAT, the links'
/// impairments as netem's. A mistake (an unknown router, a kernel NAT the policy has no twin for, reordering)
/// throws <see cref="FormatException"/> with one sentence before anything is built.
/// </summary>
public static class NamespaceLabTopology
{
    /// <summary>A kernel NAT kind by name: <c>persistent</c> (or <c>masquerade-persistent</c>, <c>eim</c>),
    /// <c>random</c> (or <c>masquerade-random</c>, <c>symmetric</c>), <c>dmz</c>.</summary>
    public static KernelNatKind ParseKernelKind(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return text.ToLowerInvariant() switch
        {
            "persistent" or "masquerade-persistent" or "eim" => KernelNatKind.MasqueradePersistent,
            "random" or "masquerade-random" or "symmetric" => KernelNatKind.MasqueradeRandom,
            "dmz" => KernelNatKind.Dmz,
            _ => throw new FormatException($"unknown kernel NAT '{text}'; use persistent, random or dmz."),
        };
    }

    /// <summary>A kernel NAT with its DMZ details: <c>persistent</c>, <c>random</c> or
    /// <c>dmz[:HOST[:PORT[:PUBLIC-PORT]]]</c> (host: the only one behind the router; ports 4000).</summary>
    public static KernelNat ParseKernelNat(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var parts = text.Split(':');
        var kind = ParseKernelKind(parts[0]);
        if (parts.Length == 1)
        {
            return new KernelNat(kind);
        }

        if (kind != KernelNatKind.Dmz || parts.Length > 4)
        {
            throw new FormatException($"kernel NAT '{text}': only dmz takes details (dmz:HOST:PORT:PUBLIC-PORT).");
        }

        var host = parts[1].Length == 0 ? (Ipv4Address?)null
            : Ipv4Address.TryParse(parts[1], out var a) ? a : throw new FormatException($"kernel NAT '{text}': '{parts[1]}' is not an IPv4 address.");
        var port = parts.Length > 2 ? Port(parts[2], text) : 4000;
        return new KernelNat(kind, host, port, parts.Length > 3 ? Port(parts[3], text) : port);

        static int Port(string p, string text) =>
            int.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n is >= 1 and <= 65535
                ? n : throw new FormatException($"kernel NAT '{text}': '{p}' is not a port.");
    }

    /// <summary>
    /// The routers of <paramref name="spec"/> as namespace routers: a NatKit gateway each, or kernel NAT for those
    /// named in <paramref name="kernels"/> (ROUTER=KIND, or KIND for all: <c>natkit lab netns up --kernel</c>) and,
    /// with <paramref name="allKernel"/>, for every router, its kind chosen from its policy
    /// (<see cref="KernelNatRules.KindFor"/>). A router whose policy has no kernel twin is refused in one sentence.
    /// </summary>
    public static IReadOnlyList<NetnsRouter> Routers(TopologySpec spec, bool allKernel, IReadOnlyList<string> kernels,
        bool impairments = true)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(kernels);
        var named = new Dictionary<string, KernelNat>(StringComparer.Ordinal);
        KernelNat? forAll = null;
        foreach (var k in kernels)
        {
            var eq = k.IndexOf('=', StringComparison.Ordinal);
            if (eq < 0)
            {
                forAll = ParseKernelNat(k);
                continue;
            }

            var router = k[..eq];
            if (!spec.Routers.Any(r => r.Name == router))
            {
                throw new FormatException($"--kernel {k}: the topology has no router '{router}' (routers: {string.Join(", ", spec.Routers.Select(r => r.Name))}).");
            }

            named[router] = ParseKernelNat(k[(eq + 1)..]);
        }

        var routers = new List<NetnsRouter>();
        foreach (var r in spec.Routers)
        {
            var kernel = named.GetValueOrDefault(r.Name) ?? forAll;
            if (kernel is null && allKernel)
            {
                kernel = KernelNatRules.KindFor(r.Policy, out var why) is { } kind ? new KernelNat(kind) : throw new FormatException(
                    $"router {r.Name} ({r.PresetName}) has no kernel NAT twin: {why}; run it as a NatKit gateway or name a kind with --kernel {r.Name}=persistent|random|dmz.");
            }

            routers.Add(new NetnsRouter(r.Name, r.Policy, r.InsideSegment, r.InsideAddress, r.OutsideSegment, r.OutsideAddresses, kernel,
                impairments ? Impairment(r.InsideLink, $"routers.{r.Name}.inside.link") : null,
                impairments ? Impairment(r.OutsideLink, $"routers.{r.Name}.outside.link") : null));
        }

        return routers;
    }

    /// <summary>The segments of <paramref name="spec"/>, their links impaired as the file says unless
    /// <paramref name="impairments"/> is false.</summary>
    public static IReadOnlyList<NetnsSegment> Segments(TopologySpec spec, bool impairments = true)
    {
        ArgumentNullException.ThrowIfNull(spec);
        return [.. spec.Segments.Select(s => new NetnsSegment(s.Name, s.Prefix, impairments ? Impairment(s.Link, $"segments.{s.Name}.link") : null))];
    }

    /// <summary>The hosts of <paramref name="spec"/>, their links impaired as the file says unless
    /// <paramref name="impairments"/> is false.</summary>
    public static IReadOnlyList<NetnsHost> Hosts(TopologySpec spec, bool impairments = true)
    {
        ArgumentNullException.ThrowIfNull(spec);
        return [.. spec.Hosts.Select(h => new NetnsHost(h.Name, h.Segment, h.Addresses, h.Gateway, impairments ? Impairment(h.Link, $"hosts.{h.Name}.link") : null))];
    }

    /// <summary>A lab link as a namespace link impairment (null when it changes nothing). Reordering is refused:
    /// netem's reorder sends some packets early, where the lab holds some back.</summary>
    /// <param name="link">The lab's link, or null.</param>
    /// <param name="where">Where the link is in the file (<c>segments.lan.link</c>), for the message.</param>
    public static LinkImpairment? Impairment(LinkProfile? link, string where)
    {
        if (link is null)
        {
            return null;
        }

        if (link.Reorder > 0)
        {
            throw new FormatException($"{where}: reorder is not available in namespaces (netem reorders by sending packets early, the lab by holding them back); remove it or use the in-memory lab.");
        }

        var impairment = new LinkImpairment(link.Latency, link.Jitter, link.Loss, link.Duplicate);
        return impairment.IsNone ? null : impairment;
    }

    /// <summary>Builds <paramref name="spec"/> as namespaces with <paramref name="routers"/> (from
    /// <see cref="Routers"/>); the NatKit gateways are the caller's to start (<see cref="NamespaceLab.Layout"/>).
    /// Impaired links on a machine without netem are refused with <see cref="NamespaceLab.NetemMissing"/> and the
    /// way round it.</summary>
    public static async Task<NamespaceLab> CreateAsync(TopologySpec spec, IReadOnlyList<NetnsRouter> routers, bool impairments,
        string? tag = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(spec);
        try
        {
            return await NamespaceLab.CreateAsync(Segments(spec, impairments), routers, Hosts(spec, impairments), tag,
                cancellationToken).ConfigureAwait(false);
        }
        catch (NotSupportedException e) when (e.Message == NamespaceLab.NetemMissing)
        {
            throw new NotSupportedException($"{NamespaceLab.NetemMissing[..^1]} (natkit lab netns up --no-impairments).", e);
        }
    }

    /// <summary>Which namespaces <c>natkit lab netns down</c> removes, as a name prefix: the lab
    /// <paramref name="tag"/> names, or every NatKit lab with <paramref name="all"/>; with neither, the only lab up
    /// (null: none), and a refusal naming the labs when there are several (they may be other users').</summary>
    /// <exception cref="ArgumentException">Both given, or several labs up and neither given.</exception>
    public static string? DownPrefix(IReadOnlyCollection<string> namespaces, string? tag, bool all)
    {
        ArgumentNullException.ThrowIfNull(namespaces);
        if (all && tag is not null)
        {
            throw new ArgumentException("--tag and --all: give one (--tag T removes one lab, --all every NatKit lab).");
        }

        if (all)
        {
            return NetworkNamespace.Prefix;
        }

        if (tag is not null)
        {
            return $"{NetworkNamespace.Prefix}{tag}-";
        }

        var tags = namespaces.Where(n => n.StartsWith(NetworkNamespace.Prefix, StringComparison.Ordinal))
            .Select(n => n[NetworkNamespace.Prefix.Length..])
            .Select(rest => rest.Contains('-', StringComparison.Ordinal) ? rest[..rest.IndexOf('-', StringComparison.Ordinal)] : rest)
            .Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        return tags.Count switch
        {
            0 => null,
            1 => $"{NetworkNamespace.Prefix}{tags[0]}-",
            _ => throw new ArgumentException($"several labs are up ({string.Join(", ", tags)}): name one with --tag T, or remove them all with --all."),
        };
    }
}
