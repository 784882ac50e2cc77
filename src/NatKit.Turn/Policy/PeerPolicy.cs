using System.Net;

namespace NatKit.Turn.Policy;

/// <summary>Why a peer was allowed or refused. <see cref="Reason"/> is a constant string (no allocation).</summary>
public readonly record struct PeerDecision(bool Allowed, string Reason);

/// <summary>A built-in denied range and why it is denied.</summary>
public sealed record DeniedRange(IpPrefix Prefix, string Name, string Source);

/// <summary>
/// Which peers a TURN allocation may relay to. Deny by default for every address that reaches the inside of a
/// network rather than the internet: loopback, private, CGNAT, link-local (cloud metadata 169.254.169.254),
/// multicast, broadcast, documentation, benchmark and reserved ranges, their IPv6 counterparts, and the relay
/// server's own addresses. IPv4-mapped, SIIT and IPv4-compatible IPv6 forms are folded to IPv4 first, so
/// ::ffff:127.0.0.1 is loopback.
/// <para>Precedence, first match wins:</para>
/// <list type="number">
/// <item>the server's own listening endpoints (address and port): always denied, no rule changes that (a relay
///   that sends to its own TURN port loops);</item>
/// <item>an explicit deny rule: denied (deny wins over allow);</item>
/// <item>an explicit allow rule: allowed, even inside a built-in denied range or on the server's own
///   addresses (that is how a lab or a benchmark allows 127.0.0.0/8);</item>
/// <item>a built-in denied range, or one of the server's own addresses (any port): denied;</item>
/// <item>otherwise allowed.</item>
/// </list>
/// Pure and immutable: checking allocates nothing, so the relay can check every Send indication.
/// </summary>
public sealed class PeerPolicy
{
    public const string ReasonServerEndPoint = "the server's own listening endpoint";
    public const string ReasonOwnAddress = "the server's own address";
    public const string ReasonDenyRule = "an explicit deny rule";
    public const string ReasonAllowRule = "an explicit allow rule";
    public const string ReasonPublic = "a public address";

    /// <summary>The ranges refused unless an allow rule covers them, with the reason and the RFC that names them.</summary>
    public static IReadOnlyList<DeniedRange> DeniedRanges => Ranges;

    private static readonly DeniedRange[] Ranges =
    [
        new(IpPrefix.Parse("0.0.0.0/8"), "unspecified / \"this network\"", "RFC 791, RFC 6890"),
        new(IpPrefix.Parse("10.0.0.0/8"), "private", "RFC 1918"),
        new(IpPrefix.Parse("100.64.0.0/10"), "shared address space (CGNAT)", "RFC 6598"),
        new(IpPrefix.Parse("127.0.0.0/8"), "loopback", "RFC 1122"),
        new(IpPrefix.Parse("169.254.0.0/16"), "link-local (incl. cloud metadata 169.254.169.254)", "RFC 3927"),
        new(IpPrefix.Parse("172.16.0.0/12"), "private", "RFC 1918"),
        new(IpPrefix.Parse("192.0.0.0/24"), "IETF protocol assignments", "RFC 6890"),
        new(IpPrefix.Parse("192.0.2.0/24"), "documentation (TEST-NET-1)", "RFC 5737"),
        new(IpPrefix.Parse("192.88.99.0/24"), "6to4 relay anycast (deprecated)", "RFC 7526"),
        new(IpPrefix.Parse("192.168.0.0/16"), "private", "RFC 1918"),
        new(IpPrefix.Parse("198.18.0.0/15"), "benchmarking", "RFC 2544"),
        new(IpPrefix.Parse("198.51.100.0/24"), "documentation (TEST-NET-2)", "RFC 5737"),
        new(IpPrefix.Parse("203.0.113.0/24"), "documentation (TEST-NET-3)", "RFC 5737"),
        new(IpPrefix.Parse("224.0.0.0/4"), "multicast", "RFC 5771"),
        new(IpPrefix.Parse("240.0.0.0/4"), "reserved, incl. broadcast 255.255.255.255", "RFC 1112, RFC 919"),
        new(IpPrefix.Parse("::/128"), "unspecified", "RFC 4291"),
        new(IpPrefix.Parse("::1/128"), "loopback", "RFC 4291"),
        new(IpPrefix.Parse("64:ff9b::/96"), "NAT64 well-known prefix (reaches IPv4 inside)", "RFC 6052"),
        new(IpPrefix.Parse("64:ff9b:1::/48"), "NAT64 local-use prefix", "RFC 8215"),
        new(IpPrefix.Parse("100::/64"), "discard-only", "RFC 6666"),
        new(IpPrefix.Parse("2001:db8::/32"), "documentation", "RFC 3849"),
        new(IpPrefix.Parse("2002::/16"), "6to4 (embeds an IPv4 address)", "RFC 3056"),
        new(IpPrefix.Parse("fc00::/7"), "unique local", "RFC 4193"),
        new(IpPrefix.Parse("fe80::/10"), "link-local", "RFC 4291"),
        new(IpPrefix.Parse("fec0::/10"), "site-local (deprecated)", "RFC 3879"),
        new(IpPrefix.Parse("ff00::/8"), "multicast", "RFC 4291"),
    ];

    private readonly PeerRule[] _allow;
    private readonly PeerRule[] _deny;
    private readonly (IpKey Key, int Port)[] _serverEndPoints;
    private readonly IpKey[] _ownAddresses;

    /// <param name="allow">Rules that open addresses the built-in ranges would refuse.</param>
    /// <param name="deny">Rules that refuse addresses; they win over <paramref name="allow"/>.</param>
    /// <param name="serverEndPoints">Where the server listens for TURN clients (never relayable). Give concrete
    ///   addresses: the server expands a wildcard bind to the host's addresses.</param>
    /// <param name="ownAddresses">The server's own addresses (listening and relay): denied unless allowed.</param>
    public PeerPolicy(IEnumerable<PeerRule>? allow = null, IEnumerable<PeerRule>? deny = null,
        IEnumerable<IPEndPoint>? serverEndPoints = null, IEnumerable<IPAddress>? ownAddresses = null)
    {
        _allow = allow?.ToArray() ?? [];
        _deny = deny?.ToArray() ?? [];
        _serverEndPoints = serverEndPoints?.Select(e => (IpKey.Normalized(e.Address), e.Port)).ToArray() ?? [];
        _ownAddresses = ownAddresses?.Select(IpKey.Normalized).ToArray() ?? [];
    }

    /// <summary>The default policy with no rules and no own addresses.</summary>
    public static PeerPolicy Default { get; } = new();

    public IReadOnlyList<PeerRule> Allow => _allow;

    public IReadOnlyList<PeerRule> Deny => _deny;

    /// <summary>A copy of this policy that also knows the server's own endpoints and addresses.</summary>
    public PeerPolicy WithServer(IEnumerable<IPEndPoint> serverEndPoints, IEnumerable<IPAddress> ownAddresses) =>
        new(_allow, _deny, serverEndPoints, ownAddresses);

    public PeerDecision Check(IPEndPoint peer)
    {
        ArgumentNullException.ThrowIfNull(peer);
        return Check(peer.Address, peer.Port);
    }

    public PeerDecision Check(IPAddress address, int port)
    {
        var key = IpKey.Normalized(address);
        foreach (var (k, p) in _serverEndPoints)
        {
            if (p == port && k == key)
            {
                return new PeerDecision(false, ReasonServerEndPoint);
            }
        }

        return Decide(key, port, anyPort: false);
    }

    /// <summary>Whether any port of <paramref name="address"/> could be allowed: what CreatePermission (which names
    /// an address, and whose port is ignored) asks. A permission for an address whose every port is denied is
    /// refused; ports that a rule denies are still refused per packet.</summary>
    public PeerDecision CheckAddress(IPAddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        return Decide(IpKey.Normalized(address), 0, anyPort: true);
    }

    /// <summary>Steps 2-5 of the precedence. With <paramref name="anyPort"/>, only deny rules covering every port
    /// deny, and an allow rule for any port allows.</summary>
    private PeerDecision Decide(IpKey key, int port, bool anyPort)
    {
        foreach (var r in _deny)
        {
            if (anyPort ? r.FirstPort == 0 && r.LastPort == 65535 && r.Prefix.Contains(key) : r.Matches(key, port))
            {
                return new PeerDecision(false, ReasonDenyRule);
            }
        }

        foreach (var r in _allow)
        {
            if (anyPort ? r.Prefix.Contains(key) : r.Matches(key, port))
            {
                return new PeerDecision(true, ReasonAllowRule);
            }
        }

        foreach (var d in Ranges)
        {
            if (d.Prefix.Contains(key))
            {
                return new PeerDecision(false, d.Name);
            }
        }

        foreach (var k in _ownAddresses)
        {
            if (k == key)
            {
                return new PeerDecision(false, ReasonOwnAddress);
            }
        }

        return new PeerDecision(true, ReasonPublic);
    }
}
