namespace NatKit.Linux;

/// <summary>
/// What a TUN device lets the kernel hand us unfinished (TUNSETOFFLOAD, linux/if_tun.h TUN_F_*): packets whose
/// checksum is still partial, and TCP/UDP "super-packets" (GSO) bigger than the MTU that a receiver may either take
/// whole or split into MSS-sized segments.
/// </summary>
[Flags]
public enum TunOffloads
{
    None = 0,

    /// <summary>TUN_F_CSUM: partial checksums (virtio NEEDS_CSUM). Needed by every other offload.</summary>
    Checksum = 0x01,

    /// <summary>TUN_F_TSO4: TCP segmentation offload over IPv4.</summary>
    Tso4 = 0x02,

    /// <summary>TUN_F_TSO6: TCP segmentation offload over IPv6.</summary>
    Tso6 = 0x04,

    /// <summary>TUN_F_USO4: UDP segmentation offload over IPv4 (Linux 6.2+).</summary>
    Uso4 = 0x20,

    /// <summary>TUN_F_USO6: UDP segmentation offload over IPv6 (Linux 6.2+).</summary>
    Uso6 = 0x40,

    /// <summary>Everything NatKit can use.</summary>
    All = Checksum | Tso4 | Tso6 | Uso4 | Uso6,
}
