using NatKit.Lab.Internal;
using NatKit.Nat;
using NatKit.Nat.Ports;
using NatKit.Packets;

namespace NatKit.Lab;


/// <summary>
/// A NAT router: an inside interface on a LAN, an outside interface on the segment above (the internet, or a
/// carrier's network for a NAT behind a NAT), and a <see cref="NatEngine"/> between them. Every packet that
/// crosses it goes through the engine as real IPv4 bytes; whatever the engine decides (forward, hairpin, drop,
/// ICMP) is what the lab does. While the engine holds sessions, the router ticks it once per
/// <see cref="TickInterval"/> of virtual time so mappings expire on schedule even when no packet flows.
/// </summary>
public sealed class LabRouter : LabNode, INatSink
{
    private static readonly Action<object, long> TickCallback = static (state, _) => ((LabRouter)state).OnTick();

    private bool _tickScheduled;
    private InsideUdpServices? _services;
    private LabHost? _servicesHost;

    internal LabRouter(VirtualNetwork network, string name, NatConfig config, LabSegment inside,
        Ipv4Address insideAddress, LinkProfile insideLink, LabSegment outside, IReadOnlyList<Ipv4Address> outsideAddresses,
        LinkProfile outsideLink)
        : base(network, name)
    {
        Inside = new LabInterface(this, inside, [insideAddress], insideLink);
        Outside = new LabInterface(this, outside, outsideAddresses, outsideLink);
        Engine = new NatEngine(config, network.Scheduler.NowTicks / TimeSpan.TicksPerMillisecond);
    }

    /// <summary>The NAT engine (its config, counters, flows).</summary>
    public NatEngine Engine { get; }

    /// <summary>The LAN it serves.</summary>
    public LabSegment InsideSegment => Inside.Segment;

    /// <summary>The segment it reaches the world through.</summary>
    public LabSegment OutsideSegment => Outside.Segment;

    /// <summary>Its address on the LAN (the hosts' gateway).</summary>
    public Ipv4Address InsideAddress => Inside.PrimaryAddress;

    /// <summary>Its external addresses (the NAT pool).</summary>
    public IReadOnlyList<Ipv4Address> OutsideAddresses => Outside.Addresses;

    /// <summary>How often the engine's timers run while it holds sessions.</summary>
    public TimeSpan TickInterval { get; set; } = TimeSpan.FromSeconds(1);

    internal LabInterface Inside { get; }

    /// <summary>The engine's clock: virtual milliseconds.</summary>
    public long NowMs => Network.Scheduler.NowTicks / TimeSpan.TicksPerMillisecond;

    /// <summary>Answers UDP datagrams sent to <see cref="InsideAddress"/>:<paramref name="port"/> from the LAN with
    /// <paramref name="service"/> (replacing any service on that port). Datagrams from the outside never reach it.</summary>
    public void ServeUdp(ushort port, InsideUdpService service) => (_services ??= new InsideUdpServices(InsideAddress)).Add(port, service);

    /// <summary>Sends a datagram of the router's own from <see cref="InsideAddress"/>:<paramref name="sourcePort"/> onto
    /// its LAN (an <see cref="InsideUdpSender"/>): a multicast one reaches every LAN host that joined the group, with a
    /// time to live of 1. Nothing goes out of the outside interface.</summary>
    public void SendInsideUdp(ushort sourcePort, NatEndpoint destination, ReadOnlySpan<byte> payload)
    {
        var packet = Network.Pool.Rent(LabPacket.DefaultCapacity);
        packet.Length = (_services ??= new InsideUdpServices(InsideAddress)).WriteDatagram(packet.Buffer, sourcePort, destination, payload);
        if (packet.Length == 0)
        {
            Network.Pool.Return(packet);
            return;
        }

        if (destination.Address.IsMulticast)
        {
            Inside.Segment.TransmitMulticast(Inside, packet);
        }
        else
        {
            Forward(Inside, packet);
        }
    }

    /// <summary>
    /// The router's own host on its inside address, for the services it offers its LAN (NAT-PMP, PCP, UPnP):
    /// bind sockets and listeners on it like on any lab host. Made on first use; from then on packets from the LAN
    /// to the inside address (but for the datagrams <see cref="ServeUdp"/> answers), and the LAN's multicast, go to it
    /// instead of the NAT engine. Nothing from the outside
    /// reaches it: the outside interface still leads to the engine only.
    /// </summary>
    public LabHost Services => _servicesHost ??= new LabHost(Network, Name + ".services", Inside.Segment,
        [Inside.PrimaryAddress], Inside.Link);

    /// <summary>Multicast from the LAN that reached the router with no service host to take it (routers forward
    /// no multicast).</summary>
    public long MulticastDropped { get; private set; }

    internal LabInterface Outside { get; }

    internal override void Receive(LabInterface iface, LabPacket packet)
    {
        if (_services is not null && iface == Inside && Serve(packet))
        {
            return;
        }

        if (iface == Inside && packet.Length >= Ipv4Field.MinHeaderLength)
        {
            var destination = Ipv4Address.Read(packet.Buffer.AsSpan(Ipv4Field.Destination));
            if (destination.IsMulticast || (_servicesHost is not null && destination == Inside.PrimaryAddress))
            {
                if (_servicesHost is null)
                {
                    MulticastDropped++;
                    Network.Pool.Return(packet);
                }
                else
                {
                    _servicesHost.Receive(_servicesHost.Interface, packet);
                }

                return;
            }
        }

        var direction = iface == Inside ? NatDirection.Outbound : NatDirection.Inbound;
        var length = packet.Length;
        var verdict = Engine.Process(packet.Buffer, ref length, direction, NowMs, this);
        packet.Length = length;
        switch (verdict.Action)
        {
            case NatAction.ForwardOutside:
                Forward(Outside, packet);
                break;
            case NatAction.ForwardInside:
                Forward(Inside, packet);
                break;
            default:
                if (verdict.Action == NatAction.Drop)
                {
                    Network.Stats.NatDropped++;
                }

                Network.Pool.Return(packet);
                break;
        }

        EnsureTicking();
    }

    /// <summary>Packets the engine makes itself (ICMP errors, fragments).</summary>
    void INatSink.Emit(ReadOnlySpan<byte> packet, NatSide side) =>
        Forward(side == NatSide.Outside ? Outside : Inside, Network.Pool.Copy(packet));

    private void Forward(LabInterface via, LabPacket packet)
    {
        var destination = Ipv4Address.Read(packet.Buffer.AsSpan(Ipv4Field.Destination));
        via.Segment.Transmit(via, packet, via.NextHop(destination));
    }

    /// <summary>A UDP datagram from the LAN to one of the router's services: answered here, never translated.</summary>
    private bool Serve(LabPacket packet)
    {
        if (!_services!.MayServe(packet.Buffer.AsSpan(0, packet.Length)))
        {
            return false;
        }

        var answer = Network.Pool.Rent(LabPacket.DefaultCapacity);
        if (!_services.TryServe(packet.Buffer.AsSpan(0, packet.Length), NowMs, answer.Buffer, out var n))
        {
            Network.Pool.Return(answer);
            return false;
        }

        Network.Pool.Return(packet);
        if (n == 0)
        {
            Network.Pool.Return(answer);
            return true;
        }

        answer.Length = n;
        Forward(Inside, answer);
        return true;
    }

    private void EnsureTicking()
    {
        if (!_tickScheduled && Engine.SessionCount > 0)
        {
            _tickScheduled = true;
            Network.Scheduler.Schedule(TickInterval.Ticks, TickCallback, this, 0, background: true);
        }
    }

    private void OnTick()
    {
        _tickScheduled = false;
        Engine.Tick(NowMs, this);
        EnsureTicking();
    }
}
