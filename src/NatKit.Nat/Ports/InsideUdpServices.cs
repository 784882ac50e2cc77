using NatKit.Packets;

namespace NatKit.Nat.Ports;

/// <summary>A UDP service on a NAT's own inside address (NAT-PMP and PCP on 5351): the datagram's payload, its source
/// and the engine time in; the answer's payload written to <paramref name="reply"/> (at least
/// <see cref="InsideUdpServices.MaxReply"/> bytes), its length out (0: no answer). It runs on the thread that drives
/// the engine, so it may use the engine.</summary>
public delegate int InsideUdpService(ReadOnlySpan<byte> request, NatEndpoint source, long now, Span<byte> reply);

/// <summary>Sends a datagram the NAT itself originates on its inside (NAT-PMP's and PCP's announcements to
/// 224.0.0.1:5350): from its inside address and <paramref name="sourcePort"/> to <paramref name="destination"/>, out of
/// the inside link only. Called on the thread that drives the engine.</summary>
public delegate void InsideUdpSender(ushort sourcePort, NatEndpoint destination, ReadOnlySpan<byte> payload);

/// <summary>
/// The UDP services a NAT answers on its inside address, for whatever drives the engine (the gateway's
/// <see cref="PacketPump"/>, a lab router): an inside packet that is an unfragmented UDP datagram to
/// <see cref="Address"/> on a served port is answered here and never reaches the engine. Packets from the outside are
/// never offered to it.
/// </summary>
public sealed class InsideUdpServices(Ipv4Address address)
{
    /// <summary>Room a service may use for its answer.</summary>
    public const int MaxReply = 1400;

    private readonly Dictionary<ushort, InsideUdpService> _services = [];
    private readonly byte[] _reply = new byte[MaxReply];

    /// <summary>The NAT's inside address the services listen on.</summary>
    public Ipv4Address Address { get; } = address;

    /// <summary>Serves <paramref name="port"/> with <paramref name="service"/> (replacing any).</summary>
    public void Add(ushort port, InsideUdpService service)
    {
        ArgumentNullException.ThrowIfNull(service);
        _services[port] = service;
    }

    /// <summary>True when any service is set up.</summary>
    public bool Any => _services.Count > 0;

    /// <summary>The cheap test, from the IPv4 header alone: a UDP packet to <see cref="Address"/> while any service is
    /// set up (the port is <see cref="TryServe"/>'s to check).</summary>
    public bool MayServe(ReadOnlySpan<byte> packet) =>
        _services.Count > 0 && packet.Length >= Ipv4Field.MinHeaderLength + UdpField.HeaderLength && packet[0] >> 4 == 4 &&
        packet[Ipv4Field.Protocol] == (byte)IpProtocol.Udp && Ipv4Address.Read(packet[Ipv4Field.Destination..]) == Address;

    /// <summary>
    /// If <paramref name="packet"/> (an IPv4 packet from the inside) is a datagram for a service, runs it and writes
    /// the answering IPv4 packet to <paramref name="answer"/>; <paramref name="answerLength"/> is 0 when the service
    /// did not answer (or the answer does not fit). False: not for a service, translate it as usual.
    /// </summary>
    public bool TryServe(ReadOnlySpan<byte> packet, long now, Span<byte> answer, out int answerLength)
    {
        answerLength = 0;
        if (!MayServe(packet))
        {
            return false;
        }

        var copy = packet.ToArray(); // control traffic only: the views take a writable span
        if (!Ipv4Packet.TryParse(copy, out var ip) || (ip.FlagsAndFragmentOffset & 0x3FFF) != 0 ||
            !UdpDatagram.TryParse(ip.Payload, out var udp) || !_services.TryGetValue(udp.DestinationPort, out var service))
        {
            return false;
        }

        var source = new NatEndpoint(ip.Source, udp.SourcePort);
        var n = service(udp.Payload, source, now, _reply);
        if (n > 0)
        {
            answerLength = WriteDatagram(answer, udp.DestinationPort, source, _reply.AsSpan(0, n));
        }

        return true;
    }

    /// <summary>Writes the IPv4 packet of a datagram from <see cref="Address"/>:<paramref name="sourcePort"/> to
    /// <paramref name="destination"/> into <paramref name="packet"/>; 0 when it does not fit. A multicast destination
    /// gets a time to live of 1: it stays on the link (RFC 6886 section 3.2.1 sends announcements link-local).</summary>
    public int WriteDatagram(Span<byte> packet, ushort sourcePort, NatEndpoint destination, ReadOnlySpan<byte> payload)
    {
        if (Ipv4Field.MinHeaderLength + UdpField.HeaderLength + payload.Length > packet.Length)
        {
            return 0;
        }

        var ttl = destination.Address.IsMulticast ? (byte)1 : (byte)64;
        return PacketBuilder.WriteIpv4Udp(packet, new Ipv4Header(Address, destination.Address, ttl), sourcePort, destination.Port, payload);
    }
}
