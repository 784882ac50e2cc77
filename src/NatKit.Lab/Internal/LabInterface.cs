using NatKit.Packets;

namespace NatKit.Lab.Internal;

/// <summary>A node's attachment to a segment: its addresses there and the link that joins them.</summary>
internal sealed class LabInterface(LabNode node, LabSegment segment, IReadOnlyList<Ipv4Address> addresses,
    LinkProfile link)
{
    private readonly Ipv4Address[] _addresses = [.. addresses];

    public LabNode Node { get; } = node;

    public LabSegment Segment { get; } = segment;

    public IReadOnlyList<Ipv4Address> Addresses => _addresses;

    public LinkProfile Link { get; set; } = link;

    public Ipv4Address PrimaryAddress => _addresses[0];

    /// <summary>Captures of this link: packets sent on it (before the link's loss and delay) and delivered
    /// from it.</summary>
    public List<Capture.PacketCapture> Captures { get; } = [];

    /// <summary>Overrides the segment's gateway for this attachment (null: use the segment's).</summary>
    public Ipv4Address? Gateway { get; set; }

    public bool Owns(Ipv4Address address)
    {
        foreach (var a in _addresses)
        {
            if (a == address) return true;
        }

        return false;
    }

    /// <summary>The next hop toward <paramref name="destination"/>: itself when on this segment (or when there is
    /// no gateway), else the gateway.</summary>
    public Ipv4Address NextHop(Ipv4Address destination)
    {
        var gateway = Gateway ?? Segment.Gateway;
        return gateway is { } g && !Segment.Prefix.Contains(destination) ? g : destination;
    }
}
