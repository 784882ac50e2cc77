using System.Text;
using System.Xml;

namespace NatKit.PortMapping.Upnp;

/// <summary>A service a device description lists (UDA 2.0 section 2.3).</summary>
/// <param name="ServiceType">Its type URN, e.g. urn:schemas-upnp-org:service:WANIPConnection:2.</param>
/// <param name="ServiceId">Its id within the device.</param>
/// <param name="ControlUrl">Where its SOAP actions are posted (relative to the description or URLBase).</param>
/// <param name="ScpdUrl">Its service description.</param>
/// <param name="EventSubUrl">Its eventing URL.</param>
public sealed record UpnpService(string ServiceType, string ServiceId, string ControlUrl, string ScpdUrl,
    string EventSubUrl);

/// <summary>
/// A UPnP device description: what NatKit's IGD serves, and what its client reads from a router (services found in
/// nested devices too). Parsed with <see cref="UpnpXml"/>'s safe settings; never throws on untrusted XML.
/// </summary>
/// <param name="DeviceType">The root device's type URN.</param>
/// <param name="FriendlyName">Its name for people.</param>
/// <param name="Udn">Its unique device name (uuid:...).</param>
/// <param name="UrlBase">The URLBase element (UDA 1.0; deprecated in 1.1), or null.</param>
/// <param name="Services">Every service of the root device and its embedded devices, in document order.</param>
public sealed record UpnpDeviceDescription(string DeviceType, string FriendlyName, string Udn, string? UrlBase,
    IReadOnlyList<UpnpService> Services)
{
    public const string DeviceNamespace = "urn:schemas-upnp-org:device-1-0";
    public const string InternetGatewayDevice2 = "urn:schemas-upnp-org:device:InternetGatewayDevice:2";
    public const string WanDevice2 = "urn:schemas-upnp-org:device:WANDevice:2";
    public const string WanConnectionDevice2 = "urn:schemas-upnp-org:device:WANConnectionDevice:2";
    public const string WanIpConnection2 = "urn:schemas-upnp-org:service:WANIPConnection:2";
    public const string WanIpConnection1 = "urn:schemas-upnp-org:service:WANIPConnection:1";
    public const string WanPppConnection1 = "urn:schemas-upnp-org:service:WANPPPConnection:1";
    public const string WanCommonInterfaceConfig1 = "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1";

    /// <summary>The service to ask for port mappings: WANIPConnection:2, else :1, else WANPPPConnection:1.</summary>
    public UpnpService? WanConnection =>
        Services.FirstOrDefault(s => s.ServiceType == WanIpConnection2) ??
        Services.FirstOrDefault(s => s.ServiceType == WanIpConnection1) ??
        Services.FirstOrDefault(s => s.ServiceType == WanPppConnection1);

    /// <summary>A service URL made absolute: against URLBase if there is one, else against where the description was
    /// fetched from. Null when it is not an http URL.</summary>
    public Uri? Resolve(Uri location, string url)
    {
        ArgumentNullException.ThrowIfNull(location);
        ArgumentNullException.ThrowIfNull(url);
        var baseUri = location;
        if (UrlBase is not null && Uri.TryCreate(UrlBase, UriKind.Absolute, out var b))
        {
            baseUri = b;
        }

        return Uri.TryCreate(baseUri, url, out var u) && u.Scheme == Uri.UriSchemeHttp ? u : null;
    }

    /// <summary>The description of NatKit's IGD:2: InternetGatewayDevice > WANDevice (WANCommonInterfaceConfig) >
    /// WANConnectionDevice (WANIPConnection:2), with the control URLs <see cref="UpnpPaths"/> serves.</summary>
    public static string Build(string udn, string friendlyName)
    {
        ArgumentNullException.ThrowIfNull(udn);
        ArgumentNullException.ThrowIfNull(friendlyName);
        var b = new StringBuilder(2048);
        b.Append("<?xml version=\"1.0\"?>\r\n<root xmlns=\"").Append(DeviceNamespace)
            .Append("\" configId=\"1\"><specVersion><major>2</major><minor>0</minor></specVersion>");
        Device(b, InternetGatewayDevice2, friendlyName, udn, "", () => Device(b, WanDevice2, "WAN Device", udn, "1",
            () => Device(b, WanConnectionDevice2, "WAN Connection Device", udn, "2", null,
                (WanIpConnection2, "urn:upnp-org:serviceId:WANIPConn1", UpnpPaths.WanIpConnectionControl,
                    UpnpPaths.WanIpConnectionScpd, UpnpPaths.WanIpConnectionEvents)),
            (WanCommonInterfaceConfig1, "urn:upnp-org:serviceId:WANCommonIFC1", UpnpPaths.CommonInterfaceControl,
                UpnpPaths.CommonInterfaceScpd, UpnpPaths.CommonInterfaceEvents)));
        return b.Append("</root>\r\n").ToString();
    }

    private static void Device(StringBuilder b, string type, string name, string udn, string suffix, Action? embedded,
        params (string Type, string Id, string Control, string Scpd, string Events)[] services)
    {
        b.Append("<device><deviceType>").Append(type).Append("</deviceType><friendlyName>")
            .Append(UpnpXml.Escape(name)).Append("</friendlyName><manufacturer>NatKit</manufacturer>")
            .Append("<modelName>NatKit gateway</modelName><UDN>").Append(UpnpXml.Escape(udn + suffix))
            .Append("</UDN>");
        if (services.Length > 0)
        {
            b.Append("<serviceList>");
            foreach (var s in services)
            {
                b.Append("<service><serviceType>").Append(s.Type).Append("</serviceType><serviceId>").Append(s.Id)
                    .Append("</serviceId><controlURL>").Append(s.Control).Append("</controlURL><eventSubURL>")
                    .Append(s.Events).Append("</eventSubURL><SCPDURL>").Append(s.Scpd).Append("</SCPDURL></service>");
            }

            b.Append("</serviceList>");
        }

        if (embedded is not null)
        {
            b.Append("<deviceList>");
            embedded();
            b.Append("</deviceList>");
        }

        b.Append("</device>");
    }

    /// <summary>Parses a description. False when the XML is bad, too large, has a DTD, or is not a UPnP root.</summary>
    public static bool TryParse(string xml, out UpnpDeviceDescription description)
    {
        ArgumentNullException.ThrowIfNull(xml);
        return UpnpXml.TryRead(xml, Read, out description);
    }

    private static UpnpDeviceDescription? Read(XmlReader r)
    {
        if (r.MoveToContent() != XmlNodeType.Element || r.LocalName != "root")
        {
            return null;
        }

        string? urlBase = null, deviceType = null, friendlyName = null, udn = null;
        var services = new List<UpnpService>();
        var deviceDepth = -1;
        var read = true; // false after a call that already moved to the next node
        while (read ? r.Read() : !r.EOF)
        {
            read = true;
            if (r.NodeType != XmlNodeType.Element)
            {
                continue;
            }

            if (r.LocalName is "URLBase" or "deviceType" or "friendlyName" or "UDN")
            {
                read = false;
            }

            switch (r.LocalName)
            {
                case "URLBase" when r.Depth == 1:
                    urlBase = r.ReadElementContentAsString().Trim();
                    break;

                case "device" when deviceDepth < 0:
                    deviceDepth = r.Depth;
                    break;
                case "deviceType" when deviceType is null && r.Depth == deviceDepth + 1:
                    deviceType = r.ReadElementContentAsString().Trim();
                    break;
                case "friendlyName" when friendlyName is null && r.Depth == deviceDepth + 1:
                    friendlyName = r.ReadElementContentAsString().Trim();
                    break;
                case "UDN" when udn is null && r.Depth == deviceDepth + 1:
                    udn = r.ReadElementContentAsString().Trim();
                    break;
                case "service":
                    if (services.Count >= 64)
                    {
                        return null;
                    }

                    if (ReadService(r) is { } s)
                    {
                        services.Add(s);
                    }

                    break;
                case "URLBase" or "deviceType" or "friendlyName" or "UDN":
                    r.Skip();
                    break;
            }
        }

        return deviceType is null ? null : new UpnpDeviceDescription(deviceType, friendlyName ?? "", udn ?? "", urlBase,
            services);
    }

    private static UpnpService? ReadService(XmlReader r)
    {
        using var s = r.ReadSubtree();
        string type = "", id = "", control = "", scpd = "", events = "";
        var read = true;
        while (read ? s.Read() : !s.EOF)
        {
            read = true;
            if (s.NodeType != XmlNodeType.Element || s.Depth != 1)
            {
                continue;
            }

            read = false;
            switch (s.LocalName)
            {
                case "serviceType": type = s.ReadElementContentAsString().Trim(); break;
                case "serviceId": id = s.ReadElementContentAsString().Trim(); break;
                case "controlURL": control = s.ReadElementContentAsString().Trim(); break;
                case "SCPDURL": scpd = s.ReadElementContentAsString().Trim(); break;
                case "eventSubURL": events = s.ReadElementContentAsString().Trim(); break;
                default: s.Skip(); break;
            }
        }

        return type.Length == 0 || control.Length == 0 ? null : new UpnpService(type, id, control, scpd, events);
    }
}

/// <summary>The paths NatKit's IGD serves over HTTP.</summary>
internal static class UpnpPaths
{
    public const string Description = "/rootDesc.xml";
    public const string WanIpConnectionControl = "/ctl/IPConn";
    public const string WanIpConnectionScpd = "/WANIPCn.xml";
    public const string WanIpConnectionEvents = "/evt/IPConn";
    public const string CommonInterfaceControl = "/ctl/CmnIfCfg";
    public const string CommonInterfaceScpd = "/WANCfg.xml";
    public const string CommonInterfaceEvents = "/evt/CmnIfCfg";
}
