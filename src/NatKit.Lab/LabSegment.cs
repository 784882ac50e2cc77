using NatKit.Lab.Internal;
using NatKit.Packets;

namespace NatKit.Lab;

/// <summary>
/// A LAN (or the core "internet"): a set of attached interfaces that reach each other directly. A packet sent
/// onto a segment goes to the interface that owns its next-hop address, across the sender's and the receiver's
/// links; when no interface owns it, it is dropped (counted in <see cref="LabStats.NoRoute"/>).
/// </summary>
public sealed class LabSegment
{
    private static readonly Action<object, long> DeliverCallback = static (state, _) =>
    {
        var p = (LabPacket)state;
        var target = p.Target!;
        target.Segment.Deliver(target, p);
    };

    private readonly Dictionary<uint, LabInterface> _owners = [];
    private readonly List<LabInterface> _interfaces = [];
    private readonly VirtualNetwork _network;

    internal LabSegment(VirtualNetwork network, string name, Ipv4Prefix prefix, LinkProfile link)
    {
        _network = network;
        Name = name;
        Prefix = prefix;
        Link = link;
    }

    public string Name { get; }

    /// <summary>Addresses that are on this segment (0.0.0.0/0 for a flat core).</summary>
    public Ipv4Prefix Prefix { get; }

    /// <summary>The link new attachments get unless they bring their own.</summary>
    public LinkProfile Link { get; set; }

    /// <summary>Where attached nodes send packets for addresses outside <see cref="Prefix"/>: the inside address of
    /// the router that serves this segment (set when such a router is added), or null.</summary>
    public Ipv4Address? Gateway { get; set; }

    /// <summary>The nodes attached here.</summary>
    public IEnumerable<LabNode> Nodes => _interfaces.Select(i => i.Node);

    internal List<Capture.PacketCapture> Captures { get; } = [];

    internal IReadOnlyList<LabInterface> Interfaces => _interfaces;

    internal void Attach(LabInterface iface)
    {
        foreach (var a in iface.Addresses)
        {
            if (!_owners.TryAdd(a.Value, iface))
            {
                throw new ArgumentException(
                    $"address {a} is already used on segment {Name} by {_owners[a.Value].Node.Name}");
            }
        }

        _interfaces.Add(iface);
    }

    internal bool TryFindOwner(Ipv4Address address, out LabInterface iface) =>
        _owners.TryGetValue(address.Value, out iface!);

    /// <summary>Sends <paramref name="packet"/> from <paramref name="from"/> toward <paramref name="nextHop"/>.
    /// Takes ownership of the packet.</summary>
    internal void Transmit(LabInterface from, LabPacket packet, Ipv4Address nextHop)
    {
        var stats = _network.Stats;
        Write(Captures, packet);
        Write(from.Captures, packet);

        if (!_owners.TryGetValue(nextHop.Value, out var to))
        {
            stats.NoRoute++;
            _network.Pool.Return(packet);
            return;
        }

        Cross(from, packet, to);
    }

    /// <summary>Sends a multicast <paramref name="packet"/> from <paramref name="from"/> to every other interface on
    /// the segment, each copy across its own links (loss, delay). Takes ownership of the packet.</summary>
    internal void TransmitMulticast(LabInterface from, LabPacket packet)
    {
        Write(Captures, packet);
        Write(from.Captures, packet);
        foreach (var to in _interfaces)
        {
            if (to != from)
            {
                Cross(from, _network.Pool.Copy(packet.Span), to);
            }
        }

        _network.Pool.Return(packet);
    }

    /// <summary>The links between <paramref name="from"/> and <paramref name="to"/>: MTU, loss, duplication, delay.</summary>
    private void Cross(LabInterface from, LabPacket packet, LabInterface to)
    {
        var stats = _network.Stats;
        var a = from.Link;
        var b = to.Link;
        if (packet.Length > a.Mtu || packet.Length > b.Mtu)
        {
            stats.MtuDropped++;
            _network.Pool.Return(packet);
            return;
        }

        var random = _network.Random;
        if ((a.Loss > 0 && random.NextDouble() < a.Loss) || (b.Loss > 0 && random.NextDouble() < b.Loss))
        {
            stats.Lost++;
            _network.Pool.Return(packet);
            return;
        }

        var duplicate = (a.Duplicate > 0 && random.NextDouble() < a.Duplicate) ||
                        (b.Duplicate > 0 && random.NextDouble() < b.Duplicate);
        if (duplicate)
        {
            stats.Duplicated++;
            var copy = _network.Pool.Copy(packet.Span);
            Schedule(copy, to, Delay(a, b, random));
        }

        Schedule(packet, to, Delay(a, b, random));
    }

    private void Schedule(LabPacket packet, LabInterface to, long delayTicks)
    {
        packet.Target = to;
        _network.Scheduler.Schedule(delayTicks, DeliverCallback, packet);
    }

    private static long Delay(LinkProfile a, LinkProfile b, Random random)
    {
        var ticks = a.Latency.Ticks + b.Latency.Ticks;
        if (a.Jitter > TimeSpan.Zero) ticks += (long)(random.NextDouble() * a.Jitter.Ticks);
        if (b.Jitter > TimeSpan.Zero) ticks += (long)(random.NextDouble() * b.Jitter.Ticks);
        if (a.Reorder > 0 && random.NextDouble() < a.Reorder) ticks += a.ReorderDelay.Ticks;
        if (b.Reorder > 0 && random.NextDouble() < b.Reorder) ticks += b.ReorderDelay.Ticks;
        return ticks;
    }

    private void Deliver(LabInterface target, LabPacket packet)
    {
        _network.Stats.Delivered++;
        Write(target.Captures, packet);
        target.Node.Receive(target, packet);
    }

    internal void Write(List<Capture.PacketCapture> captures, LabPacket packet)
    {
        for (var i = 0; i < captures.Count; i++)
        {
            captures[i].Write(_network.Scheduler.NowTicks, packet.Span);
        }
    }

    public override string ToString() => $"{Name} ({Prefix.Network}/{Prefix.Length})";
}
