using NatKit.Nat;
using NatKit.Packets;

namespace NatKit.Lab.Topology;

/// <summary>A validated topology: what a file describes, ready to build into a <see cref="VirtualNetwork"/>.</summary>
public sealed record TopologySpec(
    string Source,
    int Seed,
    IReadOnlyList<SegmentSpec> Segments,
    IReadOnlyList<RouterSpec> Routers,
    IReadOnlyList<HostSpec> Hosts)
{
    /// <summary>Builds the lab. <paramref name="seed"/> overrides the file's seed.</summary>
    public VirtualNetwork Build(int? seed = null)
    {
        var lab = new VirtualNetwork(seed ?? Seed);
        foreach (var s in Segments)
        {
            lab.AddSegment(s.Name, $"{s.Prefix.Network}/{s.Prefix.Length}", s.Link);
        }

        // Routers in file order; a router's outside segment may be another router's inside (NAT behind NAT).
        foreach (var r in Routers)
        {
            var inside = lab.Segment(r.InsideSegment);
            var outside = lab.Segment(r.OutsideSegment);
            lab.AddRouter(r.Name, r.Policy, inside, r.InsideAddress.ToString(), outside,
                r.OutsideAddresses.Select(a => a.ToString()).ToList(), insideLink: r.InsideLink,
                outsideLink: r.OutsideLink);
        }

        foreach (var h in Hosts)
        {
            var host = lab.AddHost(h.Name, lab.Segment(h.Segment), h.Addresses.Select(a => a.ToString()).ToArray());
            if (h.Link is not null)
            {
                host.Link = h.Link;
            }

            if (h.Gateway is { } g)
            {
                host.Gateway = g.ToIPAddress();
            }
        }

        return lab;
    }
}

/// <summary>A segment: a name, the prefix its addresses come from, its default link.</summary>
public sealed record SegmentSpec(string Name, Ipv4Prefix Prefix, LinkProfile Link);

/// <summary>A NAT router: its policy (a preset, adjusted by knobs), its inside and outside attachments.</summary>
public sealed record RouterSpec(
    string Name,
    string PresetName,
    NatPolicy Policy,
    string InsideSegment,
    Ipv4Address InsideAddress,
    LinkProfile? InsideLink,
    string OutsideSegment,
    IReadOnlyList<Ipv4Address> OutsideAddresses,
    LinkProfile? OutsideLink);

/// <summary>A host: its segment, addresses, optional link and gateway override, and its role in `lab run`.</summary>
public sealed record HostSpec(
    string Name,
    string Segment,
    IReadOnlyList<Ipv4Address> Addresses,
    LinkProfile? Link,
    Ipv4Address? Gateway);
