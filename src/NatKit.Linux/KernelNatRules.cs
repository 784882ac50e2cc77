using NatKit.Nat;
using NatKit.Packets;

namespace NatKit.Linux;

/// <summary>
/// The kernel NAT types NatKit is compared with: nftables rules in the gateway namespace, as in the reference
/// network-module document (DMZ, endpoint-independent <c>masquerade persistent</c>, symmetric
/// <c>masquerade random</c>).
/// </summary>
public enum KernelNatKind
{
    /// <summary><c>masquerade persistent</c>: port-restricted cone (endpoint-independent mapping).</summary>
    MasqueradePersistent,

    /// <summary><c>masquerade random</c>: symmetric (a random port per new connection).</summary>
    MasqueradeRandom,

    /// <summary>DMZ: UDP from the inside host is sent from one fixed external port, and that port leads back to
    /// the host's own port.</summary>
    Dmz,
}

/// <summary>A router of a namespace lab run by kernel nftables NAT instead of a NatKit gateway.</summary>
/// <param name="Kind">Which reference rules.</param>
/// <param name="DmzHost">For <see cref="KernelNatKind.Dmz"/>: the inside host (AGENT_HOST); null means the only
/// host of the router's inside segment.</param>
/// <param name="DmzHostPort">For DMZ: the host's UDP port (AGENT_PORT).</param>
/// <param name="DmzPort">For DMZ: the router's public UDP port (DMZ_PORT).</param>
public sealed record KernelNat(KernelNatKind Kind, Ipv4Address? DmzHost = null, int DmzHostPort = 4000, int DmzPort = 4000);

/// <summary>Builds the nft script for a <see cref="KernelNatKind"/>.</summary>
public static class KernelNatRules
{
    /// <summary>
    /// The reference kernel NAT that behaves as <paramref name="policy"/> does on the RFC 4787 axes STUN sees
    /// (mapping and filtering), or null with the reason in <paramref name="reason"/>. Conntrack only lets replies
    /// from the address and port a host sent to back in (APDF) and does not hairpin, so only such policies map:
    /// endpoint-independent mapping, or Linux's own port-keeping masquerade (<c>linux-masquerade</c>), is
    /// <c>masquerade persistent</c> (the source port is kept while the reply tuple is unique, so one socket shows
    /// one public port to every destination); address-and-port-dependent mapping on random ports is
    /// <c>masquerade random</c>. DMZ is never chosen: it needs a host and a port, so it is named explicitly.
    /// Timers and port ranges are the kernel's own (nf_conntrack sysctls), whatever the policy says.
    /// </summary>
    public static KernelNatKind? KindFor(NatPolicy policy, out string reason)
    {
        ArgumentNullException.ThrowIfNull(policy);
        reason = "";
        if (policy.Filtering != FilteringBehavior.AddressAndPortDependent)
        {
            reason = $"kernel masquerade lets in only replies from the address and port a host sent to, not {Words(policy.Filtering)} filtering";
            return null;
        }

        if (policy.Hairpinning != HairpinBehavior.None)
        {
            reason = "kernel masquerade does not hairpin";
            return null;
        }

        switch (policy.Mapping)
        {
            case MappingBehavior.EndpointIndependent:
            case MappingBehavior.AddressAndPortDependent when policy.PortAssignment == PortAssignment.Preserving && policy.SharePortsAcrossDestinations:
                return KernelNatKind.MasqueradePersistent;
            case MappingBehavior.AddressAndPortDependent when policy.PortAssignment == PortAssignment.Random:
                return KernelNatKind.MasqueradeRandom;
            default:
                reason = $"no reference kernel rule gives {Words(policy.Mapping)} mapping with {Words(policy.PortAssignment)} ports";
                return null;
        }
    }

    /// <summary>An enum value as words: AddressAndPortDependent is "address-and-port-dependent".</summary>
    private static string Words<T>(T value)
        where T : struct, Enum => System.Text.Json.JsonNamingPolicy.KebabCaseLower.ConvertName(value.ToString());

    /// <summary>The nft script (fed to <c>nft -f -</c>) for a NAT on <paramref name="outsideInterface"/>.</summary>
    /// <param name="kind">Which NAT.</param>
    /// <param name="outsideInterface">The gateway's outward interface (ROUTER_EXT).</param>
    /// <param name="outsideAddress">Its address (ROUTER_EXT_IP), for DMZ.</param>
    /// <param name="insideHost">The host behind the NAT (AGENT_HOST), for DMZ.</param>
    /// <param name="insidePort">The host's port (AGENT_PORT), for DMZ.</param>
    /// <param name="dmzPort">The gateway's DMZ port (DMZ_PORT).</param>
    public static string Script(KernelNatKind kind, string outsideInterface, string outsideAddress = "",
        string insideHost = "", int insidePort = 0, int dmzPort = 0)
    {
        const string Header = """
            table ip nat {
              chain prerouting { type nat hook prerouting priority -100; }
              chain postrouting { type nat hook postrouting priority 100; }
            }

            """;
        return kind switch
        {
            KernelNatKind.MasqueradePersistent =>
                Header + $"add rule ip nat postrouting meta oif \"{outsideInterface}\" masquerade persistent\n",
            KernelNatKind.MasqueradeRandom =>
                Header + $"add rule ip nat postrouting meta oif \"{outsideInterface}\" masquerade random\n",
            KernelNatKind.Dmz => Header +
                $"add rule ip nat postrouting ip protocol udp ip saddr {insideHost} meta oif \"{outsideInterface}\" snat to {outsideAddress}:{dmzPort}\n" +
                $"add rule ip nat prerouting udp dport {dmzPort} meta iif \"{outsideInterface}\" dnat to {insideHost}:{insidePort}\n",
            _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown kernel NAT"),
        };
    }
}
