using System.Globalization;
using System.Net;
using NatKit.Nat;
using NatKit.Packets;

namespace NatKit.PortMapping.Upnp;

/// <summary>What a <see cref="UpnpControlHandler"/> has done since it started.</summary>
/// <param name="Actions">Actions handled.</param>
/// <param name="Refused">Actions answered with a UPnPError.</param>
/// <param name="Granted">Mappings created or refreshed.</param>
/// <param name="Deleted">Mappings deleted.</param>
public readonly record struct UpnpCounters(long Actions, long Refused, long Granted, long Deleted);

/// <summary>The answer to an action: a response (with its arguments) or a UPnPError.</summary>
public readonly record struct UpnpReply(UpnpAction? Response, UpnpError Error)
{
    public static UpnpReply Fail(UpnpError error) => new(null, error);
}

/// <summary>
/// The IGD:2 control core, pure: an action, the control point's address and the engine time in; a response or a
/// UPnPError out, and the mappings made through <see cref="IMappingTable"/>. It serves WANIPConnection:2
/// (AddPortMapping, AddAnyPortMapping, DeletePortMapping, GetExternalIPAddress, GetSpecificPortMappingEntry,
/// GetGenericPortMappingEntry, GetStatusInfo, GetConnectionTypeInfo, GetNATRSIPStatus) and the little of
/// WANCommonInterfaceConfig:1 control points ask for. Safety as the NAT policy says: only inside hosts, each for
/// itself unless <see cref="NatPolicy.AllowThirdPartyMappings"/>; lifetimes capped by
/// <see cref="NatPolicy.PortMappingMaxLifetime"/> (and IGD:2's 604800 s); the per-host quota is the table's. One
/// caller at a time, on the thread that drives the table.
/// </summary>
public sealed class UpnpControlHandler
{
    /// <summary>IGD:2's longest lease (and what a requested 0 means).</summary>
    public const uint MaxLeaseSeconds = 604800;

    /// <summary>Longest description kept; longer ones are cut.</summary>
    public const int MaxDescriptionLength = 256;

    private readonly IMappingTable _table;
    private readonly long _startedAt;
    private readonly Dictionary<(IpProtocol, ushort), Entry> _entries = [];
    private long _actions;
    private long _refused;
    private long _granted;
    private long _deleted;

    /// <param name="table">The NAT's explicit mappings.</param>
    /// <param name="now">The engine time (ms) the server starts at (GetStatusInfo's uptime counts from it).</param>
    public UpnpControlHandler(IMappingTable table, long now)
    {
        _table = table ?? throw new ArgumentNullException(nameof(table));
        _startedAt = now;
    }

    /// <summary>Counters since start.</summary>
    public UpnpCounters Counters => new(_actions, _refused, _granted, _deleted);

    /// <summary>The table mappings are made in.</summary>
    public IMappingTable Table => _table;

    /// <summary>Handles one action from <paramref name="source"/>. Never throws for any action or arguments.</summary>
    public UpnpReply Handle(UpnpAction action, Ipv4Address source, long now)
    {
        ArgumentNullException.ThrowIfNull(action);
        _actions++;
        var reply = Dispatch(action, source, now);
        if (reply.Response is null)
        {
            _refused++;
        }

        return reply;
    }

    private UpnpReply Dispatch(UpnpAction action, Ipv4Address source, long now)
    {
        if (!_table.IsInside(source))
        {
            return UpnpReply.Fail(UpnpError.ActionNotAuthorized); // the outside never controls the NAT
        }

        if (action.ServiceType == UpnpDeviceDescription.WanCommonInterfaceConfig1)
        {
            return action.Name switch
            {
                "GetCommonLinkProperties" => Ok(action, ("NewWANAccessType", "Ethernet"),
                    ("NewLayer1UpstreamMaxBitRate", "1000000000"), ("NewLayer1DownstreamMaxBitRate", "1000000000"),
                    ("NewPhysicalLinkStatus", "Up")),
                _ => UpnpReply.Fail(UpnpError.InvalidAction),
            };
        }

        if (action.ServiceType is not (UpnpDeviceDescription.WanIpConnection2 or UpnpDeviceDescription.WanIpConnection1))
        {
            return UpnpReply.Fail(UpnpError.InvalidAction);
        }

        return action.Name switch
        {
            "AddPortMapping" => Add(action, source, now, any: false),
            "AddAnyPortMapping" => Add(action, source, now, any: true),
            "DeletePortMapping" => Delete(action, source, now),
            "GetExternalIPAddress" => Ok(action, ("NewExternalIPAddress", _table.ExternalAddresses[0].ToString())),
            "GetSpecificPortMappingEntry" => GetSpecific(action, now),
            "GetGenericPortMappingEntry" => GetGeneric(action, now),
            "GetStatusInfo" => Ok(action, ("NewConnectionStatus", "Connected"), ("NewLastConnectionError", "ERROR_NONE"),
                ("NewUptime", ((now - _startedAt) / 1000).ToString(CultureInfo.InvariantCulture))),
            "GetConnectionTypeInfo" => Ok(action, ("NewConnectionType", "IP_Routed"),
                ("NewPossibleConnectionTypes", "IP_Routed")),
            "GetNATRSIPStatus" => Ok(action, ("NewRSIPAvailable", "0"), ("NewNATEnabled", "1")),
            _ => UpnpReply.Fail(UpnpError.InvalidAction),
        };
    }

    private UpnpReply Add(UpnpAction action, Ipv4Address source, long now, bool any)
    {
        if (action["NewRemoteHost"] is not { } remote || !TryPort(action["NewExternalPort"], out var externalPort) ||
            !TryProtocol(action["NewProtocol"], out var protocol) || !TryPort(action["NewInternalPort"], out var internalPort) ||
            !Ipv4Address.TryParse(action["NewInternalClient"], out var client) ||
            !TryBool(action["NewEnabled"], out var enabled) || action["NewPortMappingDescription"] is not { } description ||
            !uint.TryParse(action["NewLeaseDuration"], NumberStyles.None, CultureInfo.InvariantCulture, out var lease))
        {
            return UpnpReply.Fail(UpnpError.InvalidArgs);
        }

        if (externalPort == 0 && !any)
        {
            return UpnpReply.Fail(UpnpError.WildCardNotPermittedInExtPort);
        }

        if (internalPort == 0)
        {
            return UpnpReply.Fail(UpnpError.WildCardNotPermittedInIntPort);
        }

        if (!enabled)
        {
            return UpnpReply.Fail(UpnpError.ActionFailed); // disabled entries are not kept
        }

        if (client != source && !(_table.Policy.AllowThirdPartyMappings && _table.IsInside(client)))
        {
            return UpnpReply.Fail(UpnpError.ActionNotAuthorized);
        }

        IReadOnlyList<MappingFilter>? filters = null;
        remote = remote.Trim();
        if (remote.Length > 0 && remote != "*")
        {
            if (!Ipv4Address.TryParse(remote, out var remoteAddress))
            {
                return UpnpReply.Fail(UpnpError.InvalidArgs);
            }

            filters = [new MappingFilter(new Ipv4Prefix(remoteAddress, 32), 0)];
        }

        var internalEndpoint = new NatEndpoint(client, internalPort);
        if (!any && _entries.TryGetValue((protocol, externalPort), out var held) && held.Internal != internalEndpoint &&
            IsLive(protocol, held, externalPort, now))
        {
            return UpnpReply.Fail(UpnpError.ConflictInMappingEntry);
        }

        lease = lease == 0 || lease > MaxLeaseSeconds ? MaxLeaseSeconds : lease;
        var result = _table.Map(new MappingRequest(protocol, internalEndpoint, externalPort, TimeSpan.FromSeconds(lease))
        {
            RequireExternalPort = !any,
            Filters = filters,
        }, now);
        switch (result.Status)
        {
            case MappingStatus.Created or MappingStatus.Refreshed:
                break;
            case MappingStatus.PortUnavailable:
                return UpnpReply.Fail(UpnpError.ConflictInMappingEntry);
            case MappingStatus.NoResources or MappingStatus.QuotaExceeded:
                return UpnpReply.Fail(UpnpError.NoPortMapsAvailable);
            case MappingStatus.NotInside:
                return UpnpReply.Fail(UpnpError.ActionNotAuthorized);
            default:
                return UpnpReply.Fail(UpnpError.InvalidArgs);
        }

        var granted = result.Mapping.External.Port;
        if (!any && granted != externalPort)
        {
            // The internal endpoint already had a mapping at another external port (the table keeps one per
            // endpoint): that one stays, this one cannot be made.
            return UpnpReply.Fail(UpnpError.ConflictInMappingEntry);
        }

        if (_entries.Count >= 4096)
        {
            Prune(now);
        }

        _entries[(protocol, granted)] = new Entry(internalEndpoint,
            description.Length > MaxDescriptionLength ? description[..MaxDescriptionLength] : description,
            filters is null ? "" : remote);
        _granted++;
        return any ? Ok(action, ("NewReservedPort", granted.ToString(CultureInfo.InvariantCulture))) : Ok(action);
    }

    private UpnpReply Delete(UpnpAction action, Ipv4Address source, long now)
    {
        if (action["NewRemoteHost"] is null || !TryPort(action["NewExternalPort"], out var externalPort) ||
            !TryProtocol(action["NewProtocol"], out var protocol))
        {
            return UpnpReply.Fail(UpnpError.InvalidArgs);
        }

        if (!TryFind(protocol, externalPort, now, out var mapping))
        {
            return UpnpReply.Fail(UpnpError.NoSuchEntryInArray);
        }

        if (mapping.Internal.Address != source && !_table.Policy.AllowThirdPartyMappings)
        {
            return UpnpReply.Fail(UpnpError.ActionNotAuthorized);
        }

        _table.Unmap(protocol, mapping.Internal, now);
        _entries.Remove((protocol, externalPort));
        _deleted++;
        return Ok(action);
    }

    private UpnpReply GetSpecific(UpnpAction action, long now)
    {
        if (action["NewRemoteHost"] is null || !TryPort(action["NewExternalPort"], out var externalPort) ||
            !TryProtocol(action["NewProtocol"], out var protocol))
        {
            return UpnpReply.Fail(UpnpError.InvalidArgs);
        }

        if (!TryFind(protocol, externalPort, now, out var m))
        {
            return UpnpReply.Fail(UpnpError.NoSuchEntryInArray);
        }

        var entry = EntryOf(m);
        return Ok(action, ("NewInternalPort", m.Internal.Port.ToString(CultureInfo.InvariantCulture)),
            ("NewInternalClient", m.Internal.Address.ToString()), ("NewEnabled", "1"),
            ("NewPortMappingDescription", entry.Description),
            ("NewLeaseDuration", m.SecondsLeft(now).ToString(CultureInfo.InvariantCulture)));
    }

    private UpnpReply GetGeneric(UpnpAction action, long now)
    {
        if (!ushort.TryParse(action["NewPortMappingIndex"], NumberStyles.None, CultureInfo.InvariantCulture, out var index))
        {
            return UpnpReply.Fail(UpnpError.InvalidArgs);
        }

        var list = Sorted(now);
        if (index >= list.Count)
        {
            return UpnpReply.Fail(UpnpError.SpecifiedArrayIndexInvalid);
        }

        var m = list[index];
        var entry = EntryOf(m);
        return Ok(action, ("NewRemoteHost", entry.RemoteHost),
            ("NewExternalPort", m.External.Port.ToString(CultureInfo.InvariantCulture)),
            ("NewProtocol", m.Protocol == IpProtocol.Tcp ? "TCP" : "UDP"),
            ("NewInternalPort", m.Internal.Port.ToString(CultureInfo.InvariantCulture)),
            ("NewInternalClient", m.Internal.Address.ToString()), ("NewEnabled", "1"),
            ("NewPortMappingDescription", entry.Description),
            ("NewLeaseDuration", m.SecondsLeft(now).ToString(CultureInfo.InvariantCulture)));
    }

    /// <summary>The explicit mappings (of every protocol server: NAT-PMP and PCP ones are listed too) in a stable
    /// order, TCP then UDP, by external port.</summary>
    private List<ExplicitMapping> Sorted(long now)
    {
        var list = new List<ExplicitMapping>(_table.ListMappings(now));
        list.Sort(static (a, b) => a.Protocol != b.Protocol
            ? a.Protocol == IpProtocol.Tcp ? -1 : 1
            : a.External.Port.CompareTo(b.External.Port));
        return list;
    }

    private bool TryFind(IpProtocol protocol, ushort externalPort, long now, out ExplicitMapping mapping)
    {
        if (_entries.TryGetValue((protocol, externalPort), out var e) &&
            _table.TryGetMapping(protocol, e.Internal, now, out mapping) && mapping.External.Port == externalPort)
        {
            return true;
        }

        foreach (var m in _table.ListMappings(now))
        {
            if (m.Protocol == protocol && m.External.Port == externalPort)
            {
                mapping = m;
                return true;
            }
        }

        mapping = default;
        return false;
    }

    private bool IsLive(IpProtocol protocol, Entry e, ushort externalPort, long now) =>
        _table.TryGetMapping(protocol, e.Internal, now, out var m) && m.External.Port == externalPort;

    /// <summary>What UPnP knows of a mapping: its description and remote host when UPnP made it; for one another
    /// protocol made, an empty description.</summary>
    private Entry EntryOf(ExplicitMapping m) =>
        _entries.TryGetValue((m.Protocol, m.External.Port), out var e) && e.Internal == m.Internal
            ? e
            : new Entry(m.Internal, "", "");

    private void Prune(long now)
    {
        var stale = new List<(IpProtocol, ushort)>();
        foreach (var (key, e) in _entries)
        {
            if (!IsLive(key.Item1, e, key.Item2, now))
            {
                stale.Add(key);
            }
        }

        foreach (var key in stale)
        {
            _entries.Remove(key);
        }
    }

    private static UpnpReply Ok(UpnpAction action, params (string Name, string Value)[] arguments)
    {
        var list = new KeyValuePair<string, string>[arguments.Length];
        for (var i = 0; i < arguments.Length; i++)
        {
            list[i] = new(arguments[i].Name, arguments[i].Value);
        }

        return new UpnpReply(new UpnpAction(action.ServiceType, action.Name, list), UpnpError.None);
    }

    private static bool TryPort(string? text, out ushort port) =>
        ushort.TryParse(text?.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out port);

    private static bool TryProtocol(string? text, out IpProtocol protocol)
    {
        protocol = default;
        switch (text?.Trim().ToUpperInvariant())
        {
            case "TCP":
                protocol = IpProtocol.Tcp;
                return true;
            case "UDP":
                protocol = IpProtocol.Udp;
                return true;
            default:
                return false;
        }
    }

    private static bool TryBool(string? text, out bool value)
    {
        switch (text?.Trim().ToLowerInvariant())
        {
            case "1" or "true" or "yes":
                value = true;
                return true;
            case "0" or "false" or "no":
                value = false;
                return true;
            default:
                value = false;
                return false;
        }
    }

    private readonly record struct Entry(NatEndpoint Internal, string Description, string RemoteHost);
}
