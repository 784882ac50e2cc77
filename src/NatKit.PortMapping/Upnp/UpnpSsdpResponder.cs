namespace NatKit.PortMapping.Upnp;

/// <summary>
/// The IGD's SSDP side, pure: which answers a search gets, and the NOTIFY announcements (UDA 2.0 sections 1.2 and
/// 1.3). One answer per matching target: upnp:rootdevice, each device's UDN and type, each service's type; a search
/// for an earlier version of a type (IGD:1, WANIPConnection:1) is answered with the version it asked for.
/// </summary>
internal sealed class UpnpSsdpResponder
{
    /// <summary>How long answers and announcements stay valid (UDA: at least 1800 s).</summary>
    public const int MaxAgeSeconds = 1800;

    /// <summary>UDA 2.0 section 1.3.2: an MX above 5 s is taken as 5.</summary>
    public const int MaxMx = 5;

    /// <summary>
    /// UDA 2.0 section 1.3.2 (and 1.3.3): how long to wait before answering <paramref name="search"/>: for a multicast
    /// search a random time up to its MX seconds (capped at <see cref="MaxMx"/>), so the answers of many devices do not
    /// arrive at once; a unicast search is answered at once. <paramref name="random"/> is the source of the draw.
    /// </summary>
    public static TimeSpan AnswerDelay(SsdpMessage search, bool multicast, Random random)
    {
        ArgumentNullException.ThrowIfNull(search);
        ArgumentNullException.ThrowIfNull(random);
        if (!multicast || search.MaxWait is not { } mx || mx < 1)
        {
            return TimeSpan.Zero;
        }

        return TimeSpan.FromMilliseconds(Math.Floor(random.NextDouble() * Math.Min(mx, MaxMx) * 1000));
    }

    private readonly (string Target, string Usn)[] _targets;
    private readonly string _server;

    /// <param name="udn">The root device's UDN (uuid:...); embedded devices get it with "1" and "2" appended, as the
    /// description says.</param>
    /// <param name="server">The SERVER header.</param>
    public UpnpSsdpResponder(string udn, string server)
    {
        ArgumentNullException.ThrowIfNull(udn);
        _server = server ?? throw new ArgumentNullException(nameof(server));
        string wanDevice = udn + "1", connectionDevice = udn + "2";
        _targets =
        [
            (SsdpMessage.RootDevice, udn + "::" + SsdpMessage.RootDevice),
            (udn, udn),
            (UpnpDeviceDescription.InternetGatewayDevice2, udn + "::" + UpnpDeviceDescription.InternetGatewayDevice2),
            (wanDevice, wanDevice),
            (UpnpDeviceDescription.WanDevice2, wanDevice + "::" + UpnpDeviceDescription.WanDevice2),
            (UpnpDeviceDescription.WanCommonInterfaceConfig1, wanDevice + "::" + UpnpDeviceDescription.WanCommonInterfaceConfig1),
            (connectionDevice, connectionDevice),
            (UpnpDeviceDescription.WanConnectionDevice2, connectionDevice + "::" + UpnpDeviceDescription.WanConnectionDevice2),
            (UpnpDeviceDescription.WanIpConnection2, connectionDevice + "::" + UpnpDeviceDescription.WanIpConnection2),
        ];
    }

    /// <summary>The answers to <paramref name="search"/>, each a datagram for its sender; none when it is not a
    /// well-formed discover or nothing matches. <paramref name="location"/> is the description's URL on the interface
    /// the search came in on.</summary>
    public IReadOnlyList<byte[]> Answer(SsdpMessage search, string location, bool multicast)
    {
        ArgumentNullException.ThrowIfNull(search);
        ArgumentNullException.ThrowIfNull(location);
        if (!search.IsDiscover || search.SearchTarget is not { Length: > 0 } st)
        {
            return [];
        }

        // UDA 2.0 section 1.3.2: a multicast search without a valid MX is ignored.
        if (multicast && search.MaxWait is not (>= 1))
        {
            return [];
        }

        var answers = new List<byte[]>();
        foreach (var (target, usn) in _targets)
        {
            if (st == SsdpMessage.All || st == target)
            {
                answers.Add(SsdpMessage.Response(target, usn, location, MaxAgeSeconds, _server));
            }
            else if (TryEarlierVersion(st, target, out var asked))
            {
                answers.Add(SsdpMessage.Response(asked, usn[..(usn.Length - target.Length)] + asked, location,
                    MaxAgeSeconds, _server));
            }
        }

        return answers;
    }

    /// <summary>The ssdp:alive (or, with a null <paramref name="location"/>, ssdp:byebye) announcements, one per target.</summary>
    public IReadOnlyList<byte[]> Announcements(string? location)
    {
        var list = new List<byte[]>(_targets.Length);
        foreach (var (target, usn) in _targets)
        {
            list.Add(SsdpMessage.Notify(target, usn, location, MaxAgeSeconds, _server));
        }

        return list;
    }

    /// <summary>True when <paramref name="searched"/> is <paramref name="target"/>'s type at a lower version.</summary>
    private static bool TryEarlierVersion(string searched, string target, out string asked)
    {
        asked = searched;
        if (!target.StartsWith("urn:", StringComparison.Ordinal))
        {
            return false;
        }

        var colon = target.LastIndexOf(':');
        var searchedColon = searched.LastIndexOf(':');
        return colon > 0 && searchedColon == colon &&
               string.CompareOrdinal(searched, 0, target, 0, colon + 1) == 0 &&
               int.TryParse(target.AsSpan(colon + 1), out var have) &&
               int.TryParse(searched.AsSpan(searchedColon + 1), out var want) && want >= 1 && want < have;
    }
}
