using NatKit.Packets;

namespace NatKit.Nat.Ports;

/// <summary>
/// Offered each packet from the inside before the engine (after <see cref="InsideUdpServices"/>): true takes it for
/// the gateway's own stack (a kernel interface that holds the inside address and serves TCP and multicast, such as
/// UPnP's HTTP and SSDP), false leaves it to the engine. <paramref name="packet"/> may carry a partial checksum or be
/// a GSO super-packet as <paramref name="offload"/> says; it is valid only during the call. Runs on the pump's
/// thread.
/// </summary>
public delegate bool InsideLocalDelivery(Span<byte> packet, in VirtioNetHeader offload);
