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

/// <summary>Builds the nft script for a <see cref="KernelNatKind"/>.</summary>
public static class KernelNatRules
{
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
