using System.Net;

namespace NatKit.Net;

/// <summary>
/// Optional capability of a network (the real one, a namespace's and the lab's offer it): UDP sockets that join
/// multicast groups, send to them out of a chosen interface, and tell each received datagram's destination address
/// (Linux <c>IP_PKTINFO</c>). What SSDP (239.255.255.250:1900) and NAT-PMP's address announcements (224.0.0.1:5350)
/// need, and a server on a multi-homed router needs to tell a multicast request from a unicast one.
/// </summary>
public interface IMulticastNetwork
{
    /// <summary>
    /// Binds a UDP socket that may share its port with other such sockets (<c>SO_REUSEADDR</c>, set before
    /// binding, as every SSDP listener on a host binds 1900) and reports destinations. Bind the wildcard address
    /// to receive a group's datagrams; a unicast datagram to a shared port reaches one of the sockets.
    /// </summary>
    /// <exception cref="NetworkException">The address is not on this host, or the port is held by a socket that
    /// does not share.</exception>
    ValueTask<IMulticastDatagramSocket> BindMulticastUdpAsync(IPEndPoint localEndPoint,
        CancellationToken cancellationToken = default);
}

/// <summary>
/// A UDP socket from <see cref="IMulticastNetwork"/>. Its plain <see cref="IDatagramSocket"/> methods work as on
/// any socket; receives of either kind, one at a time.
/// </summary>
public interface IMulticastDatagramSocket : IDatagramSocket
{
    /// <summary>Joins <paramref name="group"/> on the interface that holds <paramref name="interfaceAddress"/>:
    /// the group's datagrams arriving there are delivered to this socket (if its port matches).</summary>
    /// <exception cref="NetworkException">Not a multicast address, or no such interface.</exception>
    void JoinGroup(IPAddress group, IPAddress interfaceAddress);

    /// <summary>Leaves a group joined with <see cref="JoinGroup"/>; nothing happens if it was not joined.</summary>
    void LeaveGroup(IPAddress group, IPAddress interfaceAddress);

    /// <summary>Chooses where datagrams to a multicast group go: out of the interface holding
    /// <paramref name="interfaceAddress"/>, with that time to live (SSDP asks for 2, NAT-PMP's link-local
    /// announcements for 1). Set it before sending to a group: without it the system's default route chooses
    /// the interface. Sent datagrams loop back to this host's own members, as Linux does by default.</summary>
    /// <exception cref="NetworkException">No such interface, or a bad time to live.</exception>
    void SetMulticastSend(IPAddress interfaceAddress, int timeToLive = 1);

    /// <summary>As <see cref="IDatagramSocket.ReceiveFromAsync"/>, with the datagram's destination address: a
    /// group's address for a multicast datagram, this host's address for a unicast one.</summary>
    /// <exception cref="ObjectDisposedException">The socket was closed.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    ValueTask<ReceivedMessage> ReceiveMessageFromAsync(Memory<byte> buffer,
        CancellationToken cancellationToken = default);
}

/// <summary>A received datagram with where it was sent to.</summary>
/// <param name="Length">Bytes that landed in the buffer.</param>
/// <param name="RemoteEndPoint">The sender.</param>
/// <param name="Destination">The destination address of its IP header: a multicast group, or a local address.</param>
public readonly record struct ReceivedMessage(int Length, IPEndPoint RemoteEndPoint, IPAddress Destination)
{
    /// <summary>True when it was sent to a multicast group (IPv4 224.0.0.0/4, IPv6 ff00::/8).</summary>
    public bool IsMulticast => IsMulticastAddress(Destination);

    /// <summary>True for IPv4 224.0.0.0/4 (also IPv4-mapped) and IPv6 ff00::/8.</summary>
    public static bool IsMulticastAddress(IPAddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }

        if (address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6)
        {
            return address.IsIPv6Multicast;
        }

        Span<byte> bytes = stackalloc byte[4];
        return address.TryWriteBytes(bytes, out _) && (bytes[0] & 0xF0) == 0xE0;
    }
}
