namespace NatKit.Linux.Interop;

/// <summary>Constants of linux/if_tun.h and linux/virtio_net.h.</summary>
internal static class TunIoctl
{
    public const nuint TUNSETIFF = 0x400454ca;
    public const nuint TUNSETOFFLOAD = 0x400454d0;
    public const nuint TUNSETVNETHDRSZ = 0x400454d8;

    public const short IFF_TUN = 0x0001;
    public const short IFF_NO_PI = 0x1000;
    public const short IFF_VNET_HDR = 0x4000;

    /// <summary>struct ifreq: 16-byte name then a 24-byte union whose first member is short ifr_flags.</summary>
    public const int IfReqSize = 40;
    public const int IfNameSize = 16;
}
