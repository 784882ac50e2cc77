using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;

namespace NatKit.Net.Internal;

/// <summary>Multicast groups and destination addresses (<see cref="IMulticastDatagramSocket"/>) on a real socket:
/// IP_ADD_MEMBERSHIP / IPV6_JOIN_GROUP, IP_MULTICAST_IF and TTL, and IP_PKTINFO through recvmsg.</summary>
internal sealed partial class SocketDatagram : IMulticastDatagramSocket
{
    private int _packetInformation;

    /// <summary>Turns on IP_PKTINFO (or IPV6_RECVPKTINFO) so receives can report the destination.</summary>
    internal void EnablePacketInformation()
    {
        if (Interlocked.Exchange(ref _packetInformation, 1) == 1)
        {
            return;
        }

        Try(() => _socket.SetSocketOption(Level, SocketOptionName.PacketInformation, true), "enable IP_PKTINFO on");
    }

    private SocketOptionLevel Level =>
        _socket.AddressFamily == AddressFamily.InterNetworkV6 ? SocketOptionLevel.IPv6 : SocketOptionLevel.IP;

    public void JoinGroup(IPAddress group, IPAddress interfaceAddress) =>
        Membership(group, interfaceAddress, join: true);

    public void LeaveGroup(IPAddress group, IPAddress interfaceAddress)
    {
        try
        {
            Membership(group, interfaceAddress, join: false);
        }
        catch (NetworkException)
        {
            // Not a member: leaving is then nothing, as documented.
        }
    }

    private void Membership(IPAddress group, IPAddress interfaceAddress, bool join)
    {
        ArgumentNullException.ThrowIfNull(group);
        ArgumentNullException.ThrowIfNull(interfaceAddress);
        if (!ReceivedMessage.IsMulticastAddress(group))
        {
            throw new NetworkException(SocketError.InvalidArgument, $"{group} is not a multicast address");
        }

        var what = join ? "join" : "leave";
        if (_socket.AddressFamily == AddressFamily.InterNetworkV6)
        {
            var option = new IPv6MulticastOption(group, InterfaceIndex(interfaceAddress));
            Try(() => _socket.SetSocketOption(SocketOptionLevel.IPv6,
                join ? SocketOptionName.AddMembership : SocketOptionName.DropMembership, option),
                $"{what} {group} via {interfaceAddress} on");
        }
        else
        {
            RequireV4(group);
            RequireV4(interfaceAddress);
            var option = new MulticastOption(group, interfaceAddress);
            Try(() => _socket.SetSocketOption(SocketOptionLevel.IP,
                join ? SocketOptionName.AddMembership : SocketOptionName.DropMembership, option),
                $"{what} {group} via {interfaceAddress} on");
        }
    }

    public void SetMulticastSend(IPAddress interfaceAddress, int timeToLive = 1)
    {
        ArgumentNullException.ThrowIfNull(interfaceAddress);
        if (timeToLive is < 0 or > 255)
        {
            throw new NetworkException(SocketError.InvalidArgument, $"{timeToLive} is not a time to live (0-255)");
        }

        if (_socket.AddressFamily == AddressFamily.InterNetworkV6)
        {
            var index = InterfaceIndex(interfaceAddress);
            Try(() => _socket.SetSocketOption(SocketOptionLevel.IPv6, SocketOptionName.MulticastInterface, index),
                $"send multicast via {interfaceAddress} on");
            Try(() => _socket.SetSocketOption(SocketOptionLevel.IPv6, SocketOptionName.MulticastTimeToLive, timeToLive),
                "set the multicast hop limit on");
            return;
        }

        RequireV4(interfaceAddress);
        Try(() => _socket.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.MulticastInterface,
            interfaceAddress.GetAddressBytes()), $"send multicast via {interfaceAddress} on");
        Try(() => _socket.SetSocketOption(SocketOptionLevel.IP, SocketOptionName.MulticastTimeToLive, timeToLive),
            "set the multicast time to live on");
    }

    public async ValueTask<ReceivedMessage> ReceiveMessageFromAsync(Memory<byte> buffer,
        CancellationToken cancellationToken = default)
    {
        EnablePacketInformation();
        var any = _socket.AddressFamily == AddressFamily.InterNetworkV6
            ? new IPEndPoint(IPAddress.IPv6Any, 0)
            : new IPEndPoint(IPAddress.Any, 0);
        while (true)
        {
            SocketReceiveMessageFromResult result;
            try
            {
                result = await _socket.ReceiveMessageFromAsync(buffer, SocketFlags.None, any, cancellationToken)
                    .ConfigureAwait(false);
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionReset
                                                or SocketError.MessageSize)
            {
                continue; // as ReceiveFromAsync: an ICMP error or an oversized datagram does not end the socket
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.OperationAborted)
            {
                throw new ObjectDisposedException(nameof(SocketDatagram), e);
            }

            if ((result.SocketFlags & SocketFlags.Truncated) != 0)
            {
                continue; // larger than the buffer: dropped, never cut short
            }

            var remote = EndPointCache.Unmap((IPEndPoint)result.RemoteEndPoint);
            var destination = result.PacketInformation.Address;
            if (destination is null)
            {
                destination = LocalEndPoint.Address;
            }
            else if (destination.IsIPv4MappedToIPv6)
            {
                destination = destination.MapToIPv4();
            }

            return new ReceivedMessage(result.ReceivedBytes, remote, destination);
        }
    }

    private static void RequireV4(IPAddress address)
    {
        if (address.AddressFamily != AddressFamily.InterNetwork)
        {
            throw new NetworkException(SocketError.AddressFamilyNotSupported,
                $"{address} is not IPv4, and this socket is");
        }
    }

    /// <summary>The index of the interface holding <paramref name="address"/> (0, the system's choice, for ::).</summary>
    private static int InterfaceIndex(IPAddress address)
    {
        if (address.Equals(IPAddress.IPv6Any) || address.Equals(IPAddress.Any))
        {
            return 0;
        }

        foreach (var nic in NetworkInterface.GetAllNetworkInterfaces())
        {
            var properties = nic.GetIPProperties();
            foreach (var a in properties.UnicastAddresses)
            {
                if (a.Address.Equals(address))
                {
                    return properties.GetIPv6Properties().Index;
                }
            }
        }

        throw new NetworkException(SocketError.AddressNotAvailable, $"no interface holds {address}");
    }

    private void Try(Action set, string what)
    {
        try
        {
            set();
        }
        catch (SocketException e)
        {
            throw new NetworkException(e.SocketErrorCode, $"cannot {what} {LocalEndPoint}: {e.Message}", e);
        }
        catch (ObjectDisposedException)
        {
            throw;
        }
    }
}
