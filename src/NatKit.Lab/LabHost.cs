using System.Net;
using System.Net.Sockets;
using NatKit.Lab.Internal;
using NatKit.Lab.Scheduling;
using NatKit.Net;
using NatKit.Packets;

namespace NatKit.Lab;

/// <summary>
/// A host in the lab: one interface on one segment, with one or more addresses. It is an <see cref="INetwork"/>,
/// so protocol code written against NatKit.Net runs on it unchanged: UDP sockets with ephemeral ports, TCP
/// (a small reliable stream layer over real TCP segments), and the lab's virtual clock as its TimeProvider.
/// Its sockets complete their operations on the lab thread.
/// </summary>
public sealed class LabHost : LabNode, INetwork, IMulticastNetwork
{
    /// <summary>Ephemeral ports come from this range (Linux's default ip_local_port_range).</summary>
    public const int EphemeralPortFirst = 32768;

    /// <summary>The last ephemeral port.</summary>
    public const int EphemeralPortLast = 60999;

    private readonly Dictionary<ulong, LabUdpSocket> _udp = [];
    private readonly Dictionary<ulong, List<LabUdpSocket>> _shared = [];
    private readonly Dictionary<uint, IPAddress> _addressObjects = [];
    private readonly IReadOnlyList<IPAddress> _localAddresses;
    private ushort _identification;

    internal LabHost(VirtualNetwork network, string name, LabSegment segment, IReadOnlyList<Ipv4Address> addresses,
        LinkProfile link)
        : base(network, name)
    {
        Interface = new LabInterface(this, segment, addresses, link);
        _localAddresses = addresses.Select(a => a.ToIPAddress()).ToArray();
        Tcp = new LabTcpStack(this);
        _identification = (ushort)network.Random.Next(0, 65536);
    }

    /// <summary>The lab's virtual clock.</summary>
    public TimeProvider TimeProvider => Network.TimeProvider;

    /// <summary>This host's addresses, the first being the one it sends from when a socket is bound to any.</summary>
    public IReadOnlyList<IPAddress> LocalAddresses => _localAddresses;

    /// <summary>The same addresses as NatKit.Packets values.</summary>
    public IReadOnlyList<Ipv4Address> Addresses => Interface.Addresses;

    /// <summary>The host's primary address.</summary>
    public IPAddress Address => _localAddresses[0];

    /// <summary>The segment the host is on.</summary>
    public LabSegment Segment => Interface.Segment;

    /// <summary>The link between this host and its segment.</summary>
    public LinkProfile Link
    {
        get => Interface.Link;
        set => Interface.Link = value ?? throw new ArgumentNullException(nameof(value));
    }

    /// <summary>Overrides the segment's gateway for this host (null: the segment's router).</summary>
    public IPAddress? Gateway
    {
        get => Interface.Gateway?.ToIPAddress();
        set => Interface.Gateway = value is null ? null : Ipv4Address.FromIPAddress(value);
    }

    /// <summary>Packets this host received that no socket wanted, or that failed their checksum.</summary>
    public long Discarded { get; private set; }

    /// <summary>Datagrams dropped because a socket's receive queue was full.</summary>
    public long ReceiveQueueOverflows { get; internal set; }

    /// <summary>UDP datagrams dropped because they were larger than the buffer of the receive that would have taken
    /// them (the real network drops these too, rather than cutting them short).</summary>
    public long OversizeDatagramDrops { get; internal set; }

    internal LabInterface Interface { get; }

    internal LabTcpStack Tcp { get; }

    public ValueTask<IDatagramSocket> BindUdpAsync(IPEndPoint localEndPoint,
        CancellationToken cancellationToken = default)
    {
        var (address, port) = ClaimUdpPort(localEndPoint, shared: false);
        var socket = new LabUdpSocket(this, address, (ushort)port);
        _udp.Add(Key(address, port), socket);
        return ValueTask.FromResult<IDatagramSocket>(socket);
    }

    /// <summary>A UDP socket that shares its port with other such sockets and joins multicast groups. The lab's
    /// multicast reaches every node on the sender's segment (and the sender's own members) and goes no further:
    /// its routers forward none.</summary>
    public ValueTask<IMulticastDatagramSocket> BindMulticastUdpAsync(IPEndPoint localEndPoint,
        CancellationToken cancellationToken = default)
    {
        var (address, port) = ClaimUdpPort(localEndPoint, shared: true);
        var socket = new LabUdpSocket(this, address, (ushort)port, shared: true);
        var key = Key(address, port);
        if (!_shared.TryGetValue(key, out var list))
        {
            _shared[key] = list = [];
        }

        list.Add(socket);
        return ValueTask.FromResult<IMulticastDatagramSocket>(socket);
    }

    public ValueTask<IStreamListener> ListenTcpAsync(IPEndPoint localEndPoint, int backlog = 512,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(localEndPoint);
        Network.Scheduler.EnsureLabThread();
        return ValueTask.FromResult(Tcp.Listen(LocalAddressFor(localEndPoint, "TCP"), localEndPoint.Port, backlog));
    }

    public ValueTask<IStreamConnection> ConnectTcpAsync(IPEndPoint remoteEndPoint, IPEndPoint? localEndPoint = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(remoteEndPoint);
        Network.Scheduler.EnsureLabThread();
        var remote = ToIpv4(remoteEndPoint.Address, "TCP");
        var local = localEndPoint is null ? default : LocalAddressFor(localEndPoint, "TCP");
        return Tcp.ConnectAsync(remote, (ushort)remoteEndPoint.Port, local, localEndPoint?.Port ?? 0,
            cancellationToken);
    }

    /// <summary>The stream wrapped so that code awaiting it with <c>ConfigureAwait(false)</c> (SslStream) stays on the
    /// lab's loop (see <see cref="LoopStream"/>).</summary>
    public Stream ForForeignAwaiters(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        return new LoopStream(stream, Network.Scheduler);
    }

    internal void Unbind(LabUdpSocket socket)
    {
        var key = Key(socket.BoundAddress, socket.Port);
        if (!socket.Shared)
        {
            _udp.Remove(key);
        }
        else if (_shared.TryGetValue(key, out var list) && list.Remove(socket) && list.Count == 0)
        {
            _shared.Remove(key);
        }
    }

    /// <summary>The <see cref="IPAddress"/> for one of the few addresses a host's datagrams are sent to (its own,
    /// the groups it joined), made once.</summary>
    internal IPAddress AddressOf(Ipv4Address address)
    {
        if (!_addressObjects.TryGetValue(address.Value, out var ip))
        {
            if (_addressObjects.Count >= 256)
            {
                _addressObjects.Clear();
            }

            _addressObjects[address.Value] = ip = address.ToIPAddress();
        }

        return ip;
    }

    /// <summary>The address and port a new UDP socket binds (an ephemeral port, which nothing holds, for port 0).</summary>
    private (Ipv4Address Address, int Port) ClaimUdpPort(IPEndPoint localEndPoint, bool shared)
    {
        ArgumentNullException.ThrowIfNull(localEndPoint);
        Network.Scheduler.EnsureLabThread();
        var address = LocalAddressFor(localEndPoint, "UDP");
        var port = localEndPoint.Port;
        if (port == 0)
        {
            port = PickEphemeralPort(p => UdpPortFree(address, p, shared: false));
        }
        else if (!UdpPortFree(address, port, shared))
        {
            throw new NetworkException(SocketError.AddressAlreadyInUse, shared
                ? $"cannot bind UDP {localEndPoint} on lab host {Name}: the port is held by a socket that does not share it"
                : $"cannot bind UDP {localEndPoint} on lab host {Name}: the address is in use");
        }

        return (address, port);
    }

    /// <summary>True when a socket may bind <paramref name="address"/>:<paramref name="port"/>: nothing exclusive
    /// overlaps it, and (unless it shares) nothing shared either.</summary>
    private bool UdpPortFree(Ipv4Address address, int port, bool shared)
    {
        if (_udp.ContainsKey(Key(address, port)) || _udp.ContainsKey(Key(default, port)) ||
            (address == default && AnyBoundOnPort(_udp, port)))
        {
            return false;
        }

        return shared || !(_shared.ContainsKey(Key(address, port)) || _shared.ContainsKey(Key(default, port)) ||
                           (address == default && AnyBoundOnPort(_shared, port)));
    }

    internal ushort NextIdentification() => _identification++;

    /// <summary>The source address for a packet from a socket bound to <paramref name="bound"/>: that address,
    /// or the host's primary address for a socket bound to any.</summary>
    internal Ipv4Address SourceFor(Ipv4Address bound) => bound != default ? bound : Interface.PrimaryAddress;

    internal int PickEphemeralPort(Func<int, bool> free)
    {
        const int count = EphemeralPortLast - EphemeralPortFirst + 1;
        var start = Network.Random.Next(0, count);
        for (var i = 0; i < count; i++)
        {
            var port = EphemeralPortFirst + ((start + i) % count);
            if (free(port))
            {
                return port;
            }
        }

        throw new NetworkException(SocketError.AddressAlreadyInUse, $"lab host {Name} has no free ephemeral port");
    }

    /// <summary>Sends a packet this host built. Takes ownership.</summary>
    internal void Send(LabPacket packet)
    {
        Network.Stats.Sent++;
        var destination = Ipv4Address.Read(packet.Buffer.AsSpan(Ipv4Field.Destination));
        if (destination.IsMulticast)
        {
            // To every node on the segment, and back to this host's own members (Linux's IP_MULTICAST_LOOP).
            LoopBack(Network.Pool.Copy(packet.Span));
            Interface.Segment.TransmitMulticast(Interface, packet);
            return;
        }

        if (Interface.Owns(destination))
        {
            LoopBack(packet);
            return;
        }

        Interface.Segment.Transmit(Interface, packet, Interface.NextHop(destination));
    }

    /// <summary>To itself: no link, delivered on the next turn of the loop (captured once, as loopback is).</summary>
    private void LoopBack(LabPacket packet)
    {
        Interface.Segment.Write(Interface.Captures, packet);
        packet.Target = Interface;
        Network.Scheduler.Schedule(0, static (s, _) =>
        {
            var p = (LabPacket)s;
            p.Target!.Node.Receive(p.Target, p);
        }, packet);
    }

    internal override void Receive(LabInterface iface, LabPacket packet)
    {
        if (!Ipv4Packet.TryParse(packet.Span, out var ip) || ip.IsFragment ||
            !(Interface.Owns(ip.Destination) || (ip.Destination.IsMulticast && ip.Protocol == IpProtocol.Udp)))
        {
            Discard(packet);
            return;
        }

        switch (ip.Protocol)
        {
            case IpProtocol.Udp:
                ReceiveUdp(packet, ip);
                break;
            case IpProtocol.Tcp:
                if (TcpSegment.TryParse(ip.Payload, out var tcp) && tcp.IsChecksumValid(ip.Source, ip.Destination))
                {
                    Tcp.Receive(ip.Source, ip.Destination, tcp);
                }
                else
                {
                    Discarded++;
                }

                Network.Pool.Return(packet);
                break;
            case IpProtocol.Icmp:
                ReceiveIcmp(packet, ip);
                break;
            default:
                Discard(packet);
                break;
        }
    }

    private void ReceiveUdp(LabPacket packet, Ipv4Packet ip)
    {
        if (!UdpDatagram.TryParse(ip.Payload, out var udp) ||
            (udp.Checksum != 0 && !udp.IsChecksumValid(ip.Source, ip.Destination)))
        {
            Discard(packet);
            return;
        }

        var offset = ip.HeaderLength + UdpField.HeaderLength;
        if (ip.Destination.IsMulticast)
        {
            ReceiveMulticast(packet, ip, udp, offset);
            return;
        }

        if (!_udp.TryGetValue(Key(ip.Destination, udp.DestinationPort), out var socket) &&
            !_udp.TryGetValue(Key(default, udp.DestinationPort), out socket) &&
            !TryShared(Key(ip.Destination, udp.DestinationPort), out socket) &&
            !TryShared(Key(default, udp.DestinationPort), out socket))
        {
            // RFC 1122 3.2.2.1: a closed UDP port answers with ICMP Port Unreachable.
            SendIcmpError(ip, IcmpV4UnreachableCode.Port);
            Discard(packet);
            return;
        }

        socket.Enqueue(packet, offset, udp.Payload.Length, ip.Source, udp.SourcePort, ip.Destination);
    }

    /// <summary>A unicast datagram to a shared port reaches one of its sockets (the first bound, here).</summary>
    private bool TryShared(ulong key, out LabUdpSocket socket)
    {
        if (_shared.TryGetValue(key, out var list) && list.Count > 0)
        {
            socket = list[0];
            return true;
        }

        socket = null!;
        return false;
    }

    /// <summary>A group's datagram: a copy to every shared socket on its port (bound to any or to the group) that
    /// joined the group; nobody answers a multicast with ICMP.</summary>
    private void ReceiveMulticast(LabPacket packet, Ipv4Packet ip, UdpDatagram udp, int offset)
    {
        LabUdpSocket? first = null;
        for (var k = 0; k < 2; k++)
        {
            if (!_shared.TryGetValue(Key(k == 0 ? default : ip.Destination, udp.DestinationPort), out var list))
            {
                continue;
            }

            foreach (var socket in list)
            {
                if (!socket.IsMember(ip.Destination))
                {
                    continue;
                }

                if (first is null)
                {
                    first = socket;
                    continue;
                }

                socket.Enqueue(Network.Pool.Copy(packet.Span), offset, udp.Payload.Length, ip.Source, udp.SourcePort,
                    ip.Destination);
            }
        }

        if (first is null)
        {
            Discard(packet);
            return;
        }

        first.Enqueue(packet, offset, udp.Payload.Length, ip.Source, udp.SourcePort, ip.Destination);
    }

    private void ReceiveIcmp(LabPacket packet, Ipv4Packet ip)
    {
        if (IcmpV4Message.TryParse(ip.Payload, out var icmp) && icmp.Type == IcmpV4Type.EchoRequest)
        {
            // Answer pings: turn the request around in place.
            var reply = Network.Pool.Copy(packet.Span);
            Ipv4Packet.TryParse(reply.Span, out var r);
            var source = r.Source;
            r.Source = r.Destination;
            r.Destination = source;
            r.Ttl = 64;
            r.FillHeaderChecksum();
            IcmpV4Message.TryParse(r.Payload, out var echo);
            echo.Type = IcmpV4Type.EchoReply;
            echo.FillChecksum();
            Network.Pool.Return(packet);
            Send(reply);
            return;
        }

        // ICMP errors are not surfaced to sockets (the real network's unconnected UDP sockets ignore them too).
        Discard(packet);
    }

    private void SendIcmpError(Ipv4Packet offending, IcmpV4UnreachableCode code)
    {
        var quoted = offending.Buffer[..Math.Min(offending.Buffer.Length, offending.HeaderLength + 8)];
        var reply = Network.Pool.Rent(PacketBuilder.IcmpErrorMaxLength);
        reply.Length = PacketBuilder.WriteIpv4DestinationUnreachable(reply.Buffer,
            new Ipv4Header(offending.Destination, offending.Source, Identification: NextIdentification()), code,
            quoted);
        Send(reply);
    }

    private void Discard(LabPacket packet)
    {
        Discarded++;
        Network.Pool.Return(packet);
    }

    private bool AnyBoundOnPort<T>(Dictionary<ulong, T> table, int port)
    {
        foreach (var a in Interface.Addresses)
        {
            if (table.ContainsKey(Key(a, port))) return true;
        }

        return false;
    }

    private Ipv4Address LocalAddressFor(IPEndPoint endPoint, string protocol)
    {
        if (endPoint.Port is < 0 or > 65535)
        {
            throw new NetworkException(SocketError.InvalidArgument, $"{endPoint.Port} is not a port");
        }

        var address = endPoint.Address;
        if (address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any))
        {
            return default;
        }

        var v4 = ToIpv4(address, protocol);
        if (!Interface.Owns(v4))
        {
            throw new NetworkException(SocketError.AddressNotAvailable,
                $"cannot bind {protocol} {endPoint} on lab host {Name}: {address} is not one of its addresses " +
                $"({string.Join(", ", Interface.Addresses)})");
        }

        return v4;
    }

    internal static Ipv4Address ToIpv4(IPAddress address, string protocol) =>
        Ipv4Address.TryFromIPAddress(address, out var v4)
            ? v4
            : throw new NetworkException(SocketError.AddressFamilyNotSupported,
                $"the lab carries IPv4 only; {protocol} to {address} is not possible");

    private static ulong Key(Ipv4Address address, int port) => ((ulong)address.Value << 16) | (uint)port;
}
