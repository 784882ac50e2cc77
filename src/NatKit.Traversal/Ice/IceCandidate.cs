using System.Net;
using System.Net.Sockets;
using System.Text;

namespace NatKit.Traversal.Ice;

/// <summary>The candidate types of RFC 8445 section 5.1.1 (the SDP "typ" values of RFC 8839).</summary>
public enum IceCandidateType
{
    Host,
    ServerReflexive,
    PeerReflexive,
    Relayed,
}

/// <summary>The transport of a candidate (RFC 8839 section 5.1). The agent checks UDP candidates only; TCP ones
/// (RFC 6544) parse and format so that signaling can carry them, and the agent skips them.</summary>
public enum IceProtocol
{
    Udp,
    Tcp,
}

/// <summary>
/// How a candidate was found: local knowledge that does not travel on the wire (an SDP line gives the
/// <see cref="IceCandidateType"/> only). Port mappings (NAT-PMP, PCP, UPnP) and the hard-NAT methods (predicted
/// ports, birthday probing) add candidates of the RFC types with these origins, so that a connection can say which
/// method found its path and the agent can give them their own type preference.
/// </summary>
public enum IceCandidateOrigin
{
    /// <summary>An address of a local interface (or, for a remote candidate, of the peer's).</summary>
    Host,

    /// <summary>Learned from a STUN server's XOR-MAPPED-ADDRESS.</summary>
    ServerReflexive,

    /// <summary>Learned from a connectivity check (RFC 8445 section 7.2.5.3.1 and 7.3.1.3).</summary>
    PeerReflexive,

    /// <summary>A TURN allocation's relayed address.</summary>
    Relayed,

    /// <summary>An external address a NAT-PMP, PCP or UPnP IGD mapping gave (advertised as srflx).</summary>
    PortMapped,

    /// <summary>A port predicted from a NAT's sequential allocation (advertised as srflx).</summary>
    PortPrediction,

    /// <summary>A port probed at random against a random-port NAT (birthday paradox; advertised as srflx).</summary>
    BirthdayProbe,
}

/// <summary>One name-value extension of a candidate line (RFC 8839 cand-extension: generation, network-id,
/// tcptype, ufrag ...), kept so that a line round-trips.</summary>
public readonly record struct IceCandidateExtension(string Name, string Value);

/// <summary>
/// A candidate as signaled (RFC 8445 section 5.1, RFC 8839 section 5.1): foundation, component, transport,
/// priority, transport address, type and related address. <see cref="Origin"/> is local knowledge (see
/// <see cref="IceCandidateOrigin"/>). Immutable; equality compares every field. The SDP form is
/// <see cref="IceCandidateSdp"/>; the priority and foundation rules are <see cref="IcePriority"/> and
/// <see cref="IceFoundation"/>.
/// </summary>
public sealed record IceCandidate
{
    public IceCandidate(string foundation, int component, IceProtocol protocol, uint priority, IPEndPoint endPoint,
        IceCandidateType type, IPEndPoint? relatedEndPoint = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(foundation);
        ArgumentNullException.ThrowIfNull(endPoint);
        ArgumentOutOfRangeException.ThrowIfLessThan(component, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(component, 256);
        Foundation = foundation;
        Component = component;
        Protocol = protocol;
        Priority = priority;
        EndPoint = Normalize(endPoint);
        Type = type;
        RelatedEndPoint = relatedEndPoint is null ? null : Normalize(relatedEndPoint);
        Origin = type switch
        {
            IceCandidateType.Host => IceCandidateOrigin.Host,
            IceCandidateType.ServerReflexive => IceCandidateOrigin.ServerReflexive,
            IceCandidateType.PeerReflexive => IceCandidateOrigin.PeerReflexive,
            _ => IceCandidateOrigin.Relayed,
        };
    }

    /// <summary>1-32 ice-chars: candidates that share it are alike (same type, base address, server, transport).</summary>
    public string Foundation { get; }

    /// <summary>1-256; 1 is RTP (or the only component).</summary>
    public int Component { get; }

    public IceProtocol Protocol { get; }

    /// <summary>The RFC 8445 section 5.1.2 priority.</summary>
    public uint Priority { get; }

    /// <summary>The transport address (an IPv4-mapped IPv6 address is kept as IPv4).</summary>
    public IPEndPoint EndPoint { get; }

    public IceCandidateType Type { get; }

    /// <summary>raddr/rport: the base of a reflexive candidate, the mapped address of a relayed one.</summary>
    public IPEndPoint? RelatedEndPoint { get; }

    /// <summary>The name-value pairs after the related address, in order.</summary>
    public IReadOnlyList<IceCandidateExtension> Extensions { get; init; } = [];

    /// <summary>How the candidate was found (defaults to what <see cref="Type"/> implies; see
    /// <see cref="IceCandidateOrigin"/>).</summary>
    public IceCandidateOrigin Origin { get; init; }

    /// <summary>True when traffic on this candidate goes through a TURN server.</summary>
    public bool IsRelayed => Type == IceCandidateType.Relayed;

    /// <summary>A host candidate with the RFC 8445 priority (type preference 126) and foundation.</summary>
    public static IceCandidate Host(IPEndPoint endPoint, ushort localPreference = IcePriority.MaxLocalPreference,
        int component = 1, IceCandidateOrigin origin = IceCandidateOrigin.Host) =>
        Create(IceCandidateType.Host, endPoint, null, null, localPreference, component, origin);

    /// <summary>A server-reflexive candidate (mapped address <paramref name="endPoint"/>, base
    /// <paramref name="baseEndPoint"/>) learned from <paramref name="server"/>; port-mapped, predicted and
    /// birthday candidates are server-reflexive with their own <paramref name="origin"/>.</summary>
    public static IceCandidate ServerReflexive(IPEndPoint endPoint, IPEndPoint baseEndPoint, IPAddress? server,
        ushort localPreference = IcePriority.MaxLocalPreference, int component = 1,
        IceCandidateOrigin origin = IceCandidateOrigin.ServerReflexive) =>
        Create(IceCandidateType.ServerReflexive, endPoint, baseEndPoint, server, localPreference, component, origin);

    /// <summary>A relayed candidate: the allocation's relayed address, its mapped address as the related one.</summary>
    public static IceCandidate Relayed(IPEndPoint relayedEndPoint, IPEndPoint mappedEndPoint, IPAddress server,
        ushort localPreference = IcePriority.MaxLocalPreference, int component = 1) =>
        Create(IceCandidateType.Relayed, relayedEndPoint, mappedEndPoint, server, localPreference, component,
            IceCandidateOrigin.Relayed);

    private static IceCandidate Create(IceCandidateType type, IPEndPoint endPoint, IPEndPoint? related,
        IPAddress? server, ushort localPreference, int component, IceCandidateOrigin origin)
    {
        ArgumentNullException.ThrowIfNull(endPoint);
        var baseAddress = type switch
        {
            IceCandidateType.Host or IceCandidateType.Relayed => endPoint.Address,
            _ => related?.Address ?? endPoint.Address,
        };
        return new IceCandidate(IceFoundation.Compute(type, baseAddress, server, IceProtocol.Udp, origin), component,
            IceProtocol.Udp, IcePriority.Candidate(IcePriority.TypePreference(type, origin), localPreference, component),
            endPoint, type, related)
        {
            Origin = origin,
        };
    }

    /// <summary>The SDP attribute value (without "a="): see <see cref="IceCandidateSdp.Format"/>.</summary>
    public override string ToString() => IceCandidateSdp.Format(this);

    public bool Equals(IceCandidate? other)
    {
        if (other is null)
        {
            return false;
        }

        if (ReferenceEquals(this, other))
        {
            return true;
        }

        if (Foundation != other.Foundation || Component != other.Component || Protocol != other.Protocol ||
            Priority != other.Priority || !EndPoint.Equals(other.EndPoint) || Type != other.Type ||
            !Equals(RelatedEndPoint, other.RelatedEndPoint) || Origin != other.Origin ||
            Extensions.Count != other.Extensions.Count)
        {
            return false;
        }

        for (var i = 0; i < Extensions.Count; i++)
        {
            if (Extensions[i] != other.Extensions[i])
            {
                return false;
            }
        }

        return true;
    }

    public override int GetHashCode() => HashCode.Combine(Foundation, Component, Priority, EndPoint, Type);

    private bool PrintMembers(StringBuilder builder)
    {
        builder.Append(ToString());
        return true;
    }

    internal static IPEndPoint Normalize(IPEndPoint endPoint) =>
        endPoint.Address.AddressFamily == AddressFamily.InterNetworkV6 && endPoint.Address.IsIPv4MappedToIPv6
            ? new IPEndPoint(endPoint.Address.MapToIPv4(), endPoint.Port)
            : endPoint;
}
