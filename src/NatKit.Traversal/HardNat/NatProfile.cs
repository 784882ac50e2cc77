using System.Net;
using NatKit.Stun.Discovery;

namespace NatKit.Traversal.HardNat;

/// <summary>How a NAT picks the external port of a new mapping, as seen from outside.</summary>
public enum PortAllocation
{
    /// <summary>Too few observations to say.</summary>
    Unknown,

    /// <summary>One external port for the socket whatever the destination (endpoint-independent mapping, or Linux's
    /// port-keeping masquerade seen from outside).</summary>
    Fixed,

    /// <summary>A new port per destination, each a fixed step after the previous one (a sequential allocator): the
    /// next mapping's port can be predicted.</summary>
    Sequential,

    /// <summary>A new port per destination with no usable pattern: only birthday probing can meet it.</summary>
    Random,
}

/// <summary>
/// What one socket's NAT does, learned from the socket's mapped endpoints toward several destinations (STUN
/// servers, in the order the requests were sent): its mapping behaviour (RFC 4787 REQ-1, from outside), how it
/// allocates ports, the public address and the last port seen. <see cref="Step"/> is the allocator's step for
/// <see cref="PortAllocation.Sequential"/>.
/// </summary>
public sealed record NatProfile(NatMapping Mapping, PortAllocation Allocation, IPAddress? PublicAddress,
    int LastPort, int Step)
{
    /// <summary>Nothing observed.</summary>
    public static NatProfile Unknown { get; } = new(NatMapping.Unknown, PortAllocation.Unknown, null, 0, 0);

    /// <summary>A new, unguessable port per destination: a peer cannot aim at the mapping it will get.</summary>
    public bool IsRandomSymmetric => IsDependent && Allocation == PortAllocation.Random;

    /// <summary>A new port per destination, on a step a peer can aim ahead of.</summary>
    public bool IsPredictable => IsDependent && Allocation == PortAllocation.Sequential;

    /// <summary>Endpoint-dependent mapping (address- or address-and-port-dependent).</summary>
    public bool IsDependent => Mapping is NatMapping.AddressDependent or NatMapping.AddressAndPortDependent;

    /// <summary>One external port for every destination (or no NAT at all): what a peer sees is what it gets.</summary>
    public bool IsStable => Mapping is NatMapping.EndpointIndependent or NatMapping.NoNat;

    /// <summary>The compact form carried in an offer: `eim`, `none`, `apdm-seq:+1@198.51.100.7:40001`, `apdm-rand`,
    /// `unknown`.</summary>
    public override string ToString() => (Mapping, Allocation) switch
    {
        (NatMapping.NoNat, _) => "none",
        (NatMapping.EndpointIndependent, _) => "eim",
        (_, PortAllocation.Sequential) => $"{Short(Mapping)}-seq:{Step:+0;-0}@{PublicAddress}:{LastPort}",
        (_, PortAllocation.Random) => $"{Short(Mapping)}-rand",
        _ => "unknown",
    };

    /// <summary>Parses <see cref="ToString"/>'s form (from a peer: untrusted, never throws).</summary>
    public static bool TryParse(string? text, out NatProfile profile)
    {
        profile = Unknown;
        if (string.IsNullOrEmpty(text) || text.Length > 80)
        {
            return false;
        }

        switch (text)
        {
            case "unknown":
                return true;
            case "none":
                profile = new NatProfile(NatMapping.NoNat, PortAllocation.Fixed, null, 0, 0);
                return true;
            case "eim":
                profile = new NatProfile(NatMapping.EndpointIndependent, PortAllocation.Fixed, null, 0, 0);
                return true;
        }

        var dash = text.IndexOf('-', StringComparison.Ordinal);
        if (dash < 0)
        {
            return false;
        }

        var mapping = text[..dash] switch
        {
            "adm" => NatMapping.AddressDependent,
            "apdm" => NatMapping.AddressAndPortDependent,
            _ => NatMapping.Unknown,
        };
        if (mapping == NatMapping.Unknown)
        {
            return false;
        }

        var rest = text[(dash + 1)..];
        if (rest == "rand")
        {
            profile = new NatProfile(mapping, PortAllocation.Random, null, 0, 0);
            return true;
        }

        // seq:+1@address:port
        var at = rest.IndexOf('@', StringComparison.Ordinal);
        if (!rest.StartsWith("seq:", StringComparison.Ordinal) || at < 0 ||
            !int.TryParse(rest.AsSpan(4, at - 4), System.Globalization.NumberStyles.AllowLeadingSign,
                System.Globalization.CultureInfo.InvariantCulture, out var step) ||
            step == 0 || Math.Abs(step) > PortPredictor.MaxStep ||
            !IPEndPoint.TryParse(rest[(at + 1)..], out var last) || last.Port == 0)
        {
            return false;
        }

        profile = new NatProfile(mapping, PortAllocation.Sequential, last.Address, last.Port, step);
        return true;
    }

    private static string Short(NatMapping mapping) =>
        mapping == NatMapping.AddressDependent ? "adm" : "apdm";
}

/// <summary>One observation for <see cref="NatProfiler"/>: a destination the socket sent to, and the endpoint
/// that destination saw it from.</summary>
public readonly record struct MappingObservation(IPEndPoint Destination, IPEndPoint Mapped);

/// <summary>Infers a <see cref="NatProfile"/> from a socket's mapped endpoints toward several destinations.</summary>
public static class NatProfiler
{
    /// <summary>
    /// <paramref name="observations"/> in the order the requests were sent, all from the socket bound at
    /// <paramref name="local"/> (its port; its address when not a wildcard). One observation says only the public
    /// endpoint; two tell fixed from per-destination ports; three or more also confirm an allocator's step. Ports
    /// that move by the same small step each time are <see cref="PortAllocation.Sequential"/> (steps that vary
    /// within the limit, as when other hosts' mappings interleave, take the smallest); anything else is
    /// <see cref="PortAllocation.Random"/>.
    /// </summary>
    public static NatProfile Infer(IPEndPoint local, IReadOnlyList<MappingObservation> observations,
        IReadOnlyList<IPAddress>? localAddresses = null)
    {
        ArgumentNullException.ThrowIfNull(local);
        ArgumentNullException.ThrowIfNull(observations);
        if (observations.Count == 0)
        {
            return NatProfile.Unknown;
        }

        var first = observations[0].Mapped;
        var last = observations[^1].Mapped;
        var sameEverywhere = true;
        for (var i = 1; i < observations.Count; i++)
        {
            sameEverywhere &= observations[i].Mapped.Equals(first);
        }

        var own = first.Port == local.Port &&
                  (first.Address.Equals(local.Address) || (localAddresses?.Contains(first.Address) ?? false));
        if (sameEverywhere)
        {
            var mapping = own ? NatMapping.NoNat
                : observations.Count > 1 ? NatMapping.EndpointIndependent : NatMapping.Unknown;
            return new NatProfile(mapping, observations.Count > 1 || own ? PortAllocation.Fixed : PortAllocation.Unknown,
                last.Address, last.Port, 0);
        }

        // Ports differ by destination: endpoint-dependent. Address-dependent only when two destinations on one
        // address (other ports) saw the same mapping while another address saw a different one.
        var mappingBehavior = NatMapping.AddressAndPortDependent;
        var sameAddressSamePort = false;
        var sameAddressOtherPort = false;
        for (var i = 0; i < observations.Count; i++)
        {
            for (var j = i + 1; j < observations.Count; j++)
            {
                if (observations[i].Destination.Address.Equals(observations[j].Destination.Address) &&
                    observations[i].Destination.Port != observations[j].Destination.Port)
                {
                    if (observations[i].Mapped.Equals(observations[j].Mapped))
                    {
                        sameAddressSamePort = true;
                    }
                    else
                    {
                        sameAddressOtherPort = true;
                    }
                }
            }
        }

        if (sameAddressSamePort && !sameAddressOtherPort)
        {
            mappingBehavior = NatMapping.AddressDependent;
        }

        // Steps between successive new mappings (a repeated mapping, address-dependent reuse, is not a step).
        var step = 0;
        var steady = true;
        var previous = first.Port;
        var steps = 0;
        for (var i = 1; i < observations.Count; i++)
        {
            var port = observations[i].Mapped.Port;
            if (port == previous)
            {
                continue;
            }

            var d = port - previous;
            previous = port;
            steps++;
            if (Math.Abs(d) > PortPredictor.MaxStep || (step != 0 && Math.Sign(d) != Math.Sign(step)))
            {
                steady = false;
                break;
            }

            step = step == 0 || Math.Abs(d) < Math.Abs(step) ? d : step;
        }

        var allocation = steady && steps > 0 ? PortAllocation.Sequential : PortAllocation.Random;
        return new NatProfile(mappingBehavior, allocation, last.Address, last.Port,
            allocation == PortAllocation.Sequential ? step : 0);
    }
}
