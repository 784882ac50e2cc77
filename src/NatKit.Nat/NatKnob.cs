using System.Globalization;

namespace NatKit.Nat;

/// <summary>One knob of a policy as text: its name, its value in the short form the docs use, and the RFC
/// requirement it models. For tables (`natkit nat presets`), reports and logs.</summary>
public readonly record struct NatKnob(string Name, string Value, string Requirement);

/// <summary>Renders a <see cref="NatPolicy"/> as knobs.</summary>
public static class NatKnobs
{
    /// <summary>Every knob of <paramref name="p"/>, in documentation order.</summary>
    public static IReadOnlyList<NatKnob> Describe(NatPolicy p)
    {
        ArgumentNullException.ThrowIfNull(p);
        return
        [
            new(nameof(NatPolicy.Mapping), Short(p.Mapping), "RFC 4787 REQ-1"),
            new(nameof(NatPolicy.Filtering), Short(p.Filtering), "RFC 4787 REQ-8, RFC 5382 REQ-3"),
            new(nameof(NatPolicy.PortAssignment), p.PortAssignment.ToString(), "RFC 4787 REQ-3"),
            new(nameof(NatPolicy.PortParity), OnOff(p.PortParity), "RFC 4787 REQ-4"),
            new("PortRange", string.Create(CultureInfo.InvariantCulture, $"{p.PortRangeStart}-{p.PortRangeEnd}"), "RFC 4787 REQ-3, RFC 6888 REQ-3"),
            new(nameof(NatPolicy.SharePortsAcrossDestinations), OnOff(p.SharePortsAcrossDestinations), "Linux conntrack unique tuple"),
            new(nameof(NatPolicy.Pooling), p.Pooling.ToString(), "RFC 4787 REQ-2"),
            new(nameof(NatPolicy.Refresh), p.Refresh.ToString(), "RFC 4787 REQ-6"),
            new(nameof(NatPolicy.Hairpinning), p.Hairpinning.ToString(), "RFC 4787 REQ-9, RFC 5382 REQ-8"),
            new(nameof(NatPolicy.TranslateIcmpErrors), OnOff(p.TranslateIcmpErrors), "RFC 4787 REQ-12, RFC 5508 REQ-3/4"),
            new(nameof(NatPolicy.UdpTimeout), Seconds(p.UdpTimeout), "RFC 4787 REQ-5"),
            new(nameof(NatPolicy.UdpUnrepliedTimeout), p.UdpUnrepliedTimeout is { } u ? Seconds(u) : "=UdpTimeout", "Linux nf_conntrack_udp_timeout"),
            new(nameof(NatPolicy.AllowShortUdpTimeout), OnOff(p.AllowShortUdpTimeout), "RFC 4787 REQ-5 (120 s floor)"),
            new(nameof(NatPolicy.TcpEstablishedTimeout), Seconds(p.TcpEstablishedTimeout), "RFC 5382 REQ-5"),
            new(nameof(NatPolicy.TcpTransitoryTimeout), Seconds(p.TcpTransitoryTimeout), "RFC 5382 REQ-5, RFC 7857 2.2"),
            new(nameof(NatPolicy.IcmpQueryTimeout), Seconds(p.IcmpQueryTimeout), "RFC 5508 REQ-1"),
            new(nameof(NatPolicy.UnsolicitedSyn), p.UnsolicitedSyn.ToString(), "RFC 5382 REQ-4"),
            new(nameof(NatPolicy.MaxMappingsPerHost), p.MaxMappingsPerHost == 0 ? "unlimited" : p.MaxMappingsPerHost.ToString(CultureInfo.InvariantCulture), "RFC 6888 REQ-4"),
            new(nameof(NatPolicy.PortHoldDown), Seconds(p.PortHoldDown), "RFC 6888 REQ-8"),
            new(nameof(NatPolicy.ServeNatPmp), OnOff(p.ServeNatPmp), "RFC 6886"),
            new(nameof(NatPolicy.ServePcp), OnOff(p.ServePcp), "RFC 6887"),
            new(nameof(NatPolicy.ServeUpnp), OnOff(p.ServeUpnp), "UPnP IGD:2 WANIPConnection"),
            new(nameof(NatPolicy.PortMappingMaxLifetime), Seconds(p.PortMappingMaxLifetime), "RFC 6887 section 15"),
            new(nameof(NatPolicy.PortMappingMinLifetime), Seconds(p.PortMappingMinLifetime), "RFC 6887 section 15"),
            new(nameof(NatPolicy.MaxPortMappingsPerHost), p.MaxPortMappingsPerHost.ToString(CultureInfo.InvariantCulture), "RFC 6888 REQ-4"),
            new(nameof(NatPolicy.AllowThirdPartyMappings), OnOff(p.AllowThirdPartyMappings), "RFC 6887 section 13.1"),
        ];
    }

    /// <summary>EIM/ADM/APDM.</summary>
    public static string Short(MappingBehavior m) => m switch
    {
        MappingBehavior.EndpointIndependent => "EIM",
        MappingBehavior.AddressDependent => "ADM",
        _ => "APDM",
    };

    /// <summary>EIF/ADF/APDF.</summary>
    public static string Short(FilteringBehavior f) => f switch
    {
        FilteringBehavior.EndpointIndependent => "EIF",
        FilteringBehavior.AddressDependent => "ADF",
        _ => "APDF",
    };

    private static string OnOff(bool b) => b ? "on" : "off";

    private static string Seconds(TimeSpan t) => string.Create(CultureInfo.InvariantCulture, $"{t.TotalSeconds:0.###} s");
}
