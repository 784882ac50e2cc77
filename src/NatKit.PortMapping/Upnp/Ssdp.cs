using System.Globalization;
using System.Net;
using System.Text;

namespace NatKit.PortMapping.Upnp;

/// <summary>What an SSDP datagram is (UPnP Device Architecture 2.0 section 1).</summary>
public enum SsdpKind
{
    /// <summary>M-SEARCH * HTTP/1.1: a control point looks for devices or services.</summary>
    Search,

    /// <summary>NOTIFY * HTTP/1.1: a device announces itself (ssdp:alive, ssdp:byebye, ssdp:update).</summary>
    Notify,

    /// <summary>HTTP/1.1 200 OK: a device answers a search, unicast.</summary>
    Response,
}

/// <summary>
/// An SSDP message (HTTPU over UDP to 239.255.255.250:1900, UDA 2.0 section 1): parsed from untrusted bytes without
/// throwing, and written for the three kinds UPnP IGD needs.
/// </summary>
public sealed class SsdpMessage
{
    /// <summary>The SSDP multicast group.</summary>
    public static readonly IPAddress Group = IPAddress.Parse("239.255.255.250");

    /// <summary>The SSDP port.</summary>
    public const int Port = 1900;

    /// <summary>Search target for every device and service.</summary>
    public const string All = "ssdp:all";

    /// <summary>Search target for root devices.</summary>
    public const string RootDevice = "upnp:rootdevice";

    private SsdpMessage(SsdpKind kind, UpnpHttpHead head)
    {
        Kind = kind;
        Head = head;
    }

    public SsdpKind Kind { get; }

    /// <summary>All its headers.</summary>
    public UpnpHttpHead Head { get; }

    /// <summary>ST: what a search looks for, or what a response answers.</summary>
    public string? SearchTarget => Head["ST"];

    /// <summary>NT: what a NOTIFY announces.</summary>
    public string? NotificationType => Head["NT"];

    /// <summary>NTS: ssdp:alive, ssdp:byebye or ssdp:update.</summary>
    public string? NotificationSubtype => Head["NTS"];

    /// <summary>USN: the unique service name (uuid:...::type).</summary>
    public string? UniqueServiceName => Head["USN"];

    /// <summary>LOCATION: the description's URL.</summary>
    public string? Location => Head["LOCATION"];

    /// <summary>MX: the most seconds a device may wait before answering a multicast search; null when absent or not
    /// a number.</summary>
    public int? MaxWait =>
        int.TryParse(Head["MX"], NumberStyles.None, CultureInfo.InvariantCulture, out var mx) ? mx : null;

    /// <summary>CACHE-CONTROL max-age: seconds an announcement or answer stays valid.</summary>
    public int? MaxAge => Head.MaxAge;

    /// <summary>True for a search whose MAN is "ssdp:discover" (quotes included, as UDA requires).</summary>
    public bool IsDiscover => Kind == SsdpKind.Search && Head["MAN"] is "\"ssdp:discover\"";

    /// <summary>Parses one datagram. False for anything that is not a well-formed SSDP message of the three kinds.</summary>
    public static bool TryParse(ReadOnlySpan<byte> datagram, out SsdpMessage message)
    {
        message = null!;
        if (!UpnpHttpHead.TryParse(datagram, out var head))
        {
            return false;
        }

        SsdpKind kind;
        if (head.IsRequest)
        {
            if (head.Target != "*")
            {
                return false;
            }

            if (head.Method == "M-SEARCH")
            {
                kind = SsdpKind.Search;
            }
            else if (head.Method == "NOTIFY")
            {
                kind = SsdpKind.Notify;
            }
            else
            {
                return false;
            }
        }
        else if (head.StatusCode == 200)
        {
            kind = SsdpKind.Response;
        }
        else
        {
            return false;
        }

        message = new SsdpMessage(kind, head);
        return true;
    }

    /// <summary>An M-SEARCH for <paramref name="searchTarget"/> to the multicast group, answered within
    /// <paramref name="maxWaitSeconds"/> (UDA: 1 to 5).</summary>
    public static byte[] Search(string searchTarget, int maxWaitSeconds = 2)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxWaitSeconds, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxWaitSeconds, 5);
        return Encoding.ASCII.GetBytes(UpnpHttpHead.Format("M-SEARCH * HTTP/1.1",
        [
            new("HOST", "239.255.255.250:1900"),
            new("MAN", "\"ssdp:discover\""),
            new("MX", maxWaitSeconds.ToString(CultureInfo.InvariantCulture)),
            new("ST", searchTarget),
        ]));
    }

    /// <summary>A device's answer to a search: what it is (<paramref name="searchTarget"/>, <paramref name="usn"/>)
    /// and where its description is.</summary>
    public static byte[] Response(string searchTarget, string usn, string location, int maxAgeSeconds, string server,
        int bootId = 1)
    {
        return Encoding.ASCII.GetBytes(UpnpHttpHead.Format("HTTP/1.1 200 OK",
        [
            new("CACHE-CONTROL", "max-age=" + maxAgeSeconds.ToString(CultureInfo.InvariantCulture)),
            new("EXT", ""),
            new("LOCATION", location),
            new("SERVER", server),
            new("ST", searchTarget),
            new("USN", usn),
            new("BOOTID.UPNP.ORG", bootId.ToString(CultureInfo.InvariantCulture)),
            new("CONFIGID.UPNP.ORG", "1"),
        ]));
    }

    /// <summary>A NOTIFY to the multicast group: <c>ssdp:alive</c> (with where the description is) or
    /// <c>ssdp:byebye</c> (<paramref name="location"/> null).</summary>
    public static byte[] Notify(string notificationType, string usn, string? location, int maxAgeSeconds, string server,
        int bootId = 1)
    {
        var fields = new List<KeyValuePair<string, string>> { new("HOST", "239.255.255.250:1900") };
        if (location is not null)
        {
            fields.Add(new("CACHE-CONTROL", "max-age=" + maxAgeSeconds.ToString(CultureInfo.InvariantCulture)));
            fields.Add(new("LOCATION", location));
            fields.Add(new("SERVER", server));
        }

        fields.Add(new("NT", notificationType));
        fields.Add(new("NTS", location is null ? "ssdp:byebye" : "ssdp:alive"));
        fields.Add(new("USN", usn));
        fields.Add(new("BOOTID.UPNP.ORG", bootId.ToString(CultureInfo.InvariantCulture)));
        fields.Add(new("CONFIGID.UPNP.ORG", "1"));
        return Encoding.ASCII.GetBytes(UpnpHttpHead.Format("NOTIFY * HTTP/1.1", fields));
    }
}
