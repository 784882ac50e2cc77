using System.Text;
using FsCheck;
using FsCheck.Fluent;
using NatKit.PortMapping.Upnp;

namespace NatKit.PortMapping.Tests.Upnp;

/// <summary>UPnP IGD's codecs: SSDP, HTTP heads, SOAP and the device description. Round trips, what real devices
/// send, and untrusted bytes that never throw.</summary>
public sealed class UpnpCodecTests
{
    [Fact]
    public void Search_RoundTrips_AsADiscover_WithItsTargetAndMx()
    {
        Assert.True(SsdpMessage.TryParse(SsdpMessage.Search(UpnpDeviceDescription.InternetGatewayDevice2, 3), out var m));
        Assert.Equal(SsdpKind.Search, m.Kind);
        Assert.True(m.IsDiscover);
        Assert.Equal(UpnpDeviceDescription.InternetGatewayDevice2, m.SearchTarget);
        Assert.Equal(3, m.MaxWait);
    }

    [Fact]
    public void Response_AndNotify_RoundTrip()
    {
        var r = SsdpMessage.Response("upnp:rootdevice", "uuid:1::upnp:rootdevice", "http://10.0.0.1:5000/rootDesc.xml",
            120, "Linux UPnP/2.0 NatKit/1");
        Assert.True(SsdpMessage.TryParse(r, out var m));
        Assert.Equal(SsdpKind.Response, m.Kind);
        Assert.Equal("http://10.0.0.1:5000/rootDesc.xml", m.Location);
        Assert.Equal("uuid:1::upnp:rootdevice", m.UniqueServiceName);
        Assert.Equal(120, m.MaxAge);

        Assert.True(SsdpMessage.TryParse(SsdpMessage.Notify("upnp:rootdevice", "uuid:1", null, 0, "x"), out var bye));
        Assert.Equal(SsdpKind.Notify, bye.Kind);
        Assert.Equal("ssdp:byebye", bye.NotificationSubtype);
    }

    [Fact]
    public void MiniupnpcsSearch_WithBareLineEnds_AndLowerCaseHeaders_Parses()
    {
        // What miniupnpc 2.x sends (CRLF) and what sloppy senders send (LF only, lower case).
        var crlf = "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nMAN: \"ssdp:discover\"\r\nMX: 2\r\n\r\n";
        var lf = "M-SEARCH * HTTP/1.1\nhost: 239.255.255.250:1900\nst: ssdp:all\nman: \"ssdp:discover\"\nmx: 1\n\n";
        Assert.True(SsdpMessage.TryParse(Encoding.ASCII.GetBytes(crlf), out var a));
        Assert.Equal("urn:schemas-upnp-org:device:InternetGatewayDevice:1", a.SearchTarget);
        Assert.True(SsdpMessage.TryParse(Encoding.ASCII.GetBytes(lf), out var b));
        Assert.Equal("ssdp:all", b.SearchTarget);
        Assert.True(b.IsDiscover);
    }

    [Theory]
    [InlineData("GET / HTTP/1.1\r\n\r\n")] // not SSDP: the target is not *
    [InlineData("M-SEARCH * HTTP/2\r\n\r\n")]
    [InlineData("HTTP/1.1 404 Not Found\r\n\r\n")]
    [InlineData("M-SEARCH * HTTP/1.1\r\nno colon here\r\n\r\n")]
    [InlineData("M-SEARCH * HTTP/1.1\r\nbad name: x\r\n\r\n")]
    [InlineData("")]
    public void NotSsdp_IsRefused(string text) => Assert.False(SsdpMessage.TryParse(Encoding.ASCII.GetBytes(text), out _));

    [Fact]
    public void HttpHead_RefusesDisagreeingContentLengths_AndCodingsOtherThanChunked()
    {
        Assert.False(UpnpHttpHead.TryParse("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"u8, out _));
        Assert.False(UpnpHttpHead.TryParse("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"u8, out _));
        Assert.True(UpnpHttpHead.TryParse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"u8, out var h));
        Assert.True(h.IsChunked);
        Assert.True(UpnpHttpHead.TryParse("POST /ctl HTTP/1.1\r\nContent-Length: 12\r\n\r\nbody"u8, out var p));
        Assert.Equal(12, p.ContentLength);
        Assert.Equal("POST /ctl HTTP/1.1\r\nContent-Length: 12\r\n\r\n".Length, p.Length);
    }

    [Fact]
    public void HttpHead_LargerThanTheLimit_IsRefused_AndFindEndSaysSo()
    {
        var big = Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nX: " + new string('a', UpnpHttpHead.MaxHeadBytes) + "\r\n\r\n");
        Assert.False(UpnpHttpHead.TryParse(big, out _));
        Assert.Equal(-2, UpnpHttpHead.FindEnd(big));
        Assert.Equal(-1, UpnpHttpHead.FindEnd("GET / HTTP/1.1\r\n"u8));
    }

    [Fact]
    public void HeaderValuesWithLineBreaks_AreRefusedWhenWriting()
    {
        Assert.Throws<ArgumentException>(() => SsdpMessage.Search("ssdp:all\r\nEVIL: 1"));
    }

    [Fact]
    public void SoapRequest_RoundTrips_WithEscapedArguments()
    {
        var action = new UpnpAction(UpnpDeviceDescription.WanIpConnection2, "AddPortMapping",
        [
            new("NewRemoteHost", ""), new("NewExternalPort", "8080"), new("NewProtocol", "TCP"),
            new("NewPortMappingDescription", "a <b> & \"c\"\u0001"),
        ]);
        Assert.True(UpnpAction.TryParseRequest(action.ToRequestXml(), out var parsed));
        Assert.Equal("AddPortMapping", parsed.Name);
        Assert.Equal(UpnpDeviceDescription.WanIpConnection2, parsed.ServiceType);
        Assert.Equal("8080", parsed["NewExternalPort"]);
        Assert.Equal("", parsed["NewRemoteHost"]);
        Assert.Equal("a <b> & \"c\"", parsed["NewPortMappingDescription"]); // the control character is left out
        Assert.Equal("\"urn:schemas-upnp-org:service:WANIPConnection:2#AddPortMapping\"", action.SoapActionHeader);
        Assert.True(UpnpAction.TryParseSoapActionHeader(action.SoapActionHeader, out var type, out var name));
        Assert.Equal((UpnpDeviceDescription.WanIpConnection2, "AddPortMapping"), (type, name));
    }

    [Fact]
    public void SoapResponse_AndFault_Parse()
    {
        var response = new UpnpAction(UpnpDeviceDescription.WanIpConnection2, "GetExternalIPAddress",
            [new("NewExternalIPAddress", "198.51.100.1")]);
        Assert.True(UpnpAction.TryParseResponse(response.ToResponseXml(), out var r, out var fault));
        Assert.Equal(UpnpError.None, fault);
        Assert.Equal("GetExternalIPAddress", r.Name);
        Assert.Equal("198.51.100.1", r["NewExternalIPAddress"]);

        Assert.True(UpnpAction.TryParseResponse(UpnpAction.FaultXml(UpnpError.ConflictInMappingEntry), out _, out fault));
        Assert.Equal(UpnpError.ConflictInMappingEntry, fault);
    }

    [Fact]
    public void MiniupnpdsResponse_WithItsOwnPrefixes_Parses()
    {
        const string xml = "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" " +
                           "s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body>" +
                           "<u:AddAnyPortMappingResponse xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:2\">" +
                           "<NewReservedPort>40000</NewReservedPort></u:AddAnyPortMappingResponse></s:Body></s:Envelope>\r\n";
        Assert.True(UpnpAction.TryParseResponse(xml, out var r, out _));
        Assert.Equal("AddAnyPortMapping", r.Name);
        Assert.Equal("40000", r["NewReservedPort"]);
    }

    [Fact]
    public void Xml_WithADtd_OrAnEntity_IsRefused()
    {
        const string billionLaughs = "<?xml version=\"1.0\"?><!DOCTYPE s [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;\">]>" +
                                     "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><u:X xmlns:u=\"urn:x\"><A>&b;</A></u:X></s:Body></s:Envelope>";
        Assert.False(UpnpAction.TryParseRequest(billionLaughs, out _));
        const string external = "<?xml version=\"1.0\"?><!DOCTYPE root [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>" +
                                "<root xmlns=\"urn:schemas-upnp-org:device-1-0\"><device><deviceType>&x;</deviceType></device></root>";
        Assert.False(UpnpDeviceDescription.TryParse(external, out _));
    }

    [Fact]
    public void Xml_LargerThanTheLimit_IsRefused()
    {
        var huge = "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><u:X xmlns:u=\"urn:x\"><A>" +
                   new string('a', 70_000) + "</A></u:X></s:Body></s:Envelope>";
        Assert.False(UpnpAction.TryParseRequest(huge, out _));
    }

    [Fact]
    public void Description_RoundTrips_AndFindsTheWanConnectionInTheNestedDevices()
    {
        var xml = UpnpDeviceDescription.Build("uuid:6e61746b-0000-0000-0000-000000000001", "NatKit <gateway>");
        Assert.True(UpnpDeviceDescription.TryParse(xml, out var d));
        Assert.Equal(UpnpDeviceDescription.InternetGatewayDevice2, d.DeviceType);
        Assert.Equal("NatKit <gateway>", d.FriendlyName);
        Assert.Equal("uuid:6e61746b-0000-0000-0000-000000000001", d.Udn);
        Assert.Equal(2, d.Services.Count);
        var wan = d.WanConnection;
        Assert.NotNull(wan);
        Assert.Equal(UpnpDeviceDescription.WanIpConnection2, wan.ServiceType);
        Assert.Equal(new Uri("http://10.0.0.1:5000/ctl/IPConn"),
            d.Resolve(new Uri("http://10.0.0.1:5000/rootDesc.xml"), wan.ControlUrl));
    }

    [Fact]
    public void Description_OfAnIgd1WithAUrlBase_ResolvesAgainstIt()
    {
        const string xml = "<?xml version=\"1.0\"?><root xmlns=\"urn:schemas-upnp-org:device-1-0\"><specVersion><major>1</major><minor>0</minor></specVersion>" +
                           "<URLBase>http://192.168.1.1:49152/</URLBase><device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>" +
                           "<friendlyName>Router</friendlyName><UDN>uuid:r</UDN><deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType>" +
                           "<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType><serviceList>" +
                           "<service><serviceType>urn:schemas-upnp-org:service:WANPPPConnection:1</serviceType><serviceId>p</serviceId><controlURL>/ppp</controlURL><eventSubURL/><SCPDURL/></service>" +
                           "<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><serviceId>i</serviceId><controlURL>upnp/control/ip</controlURL><eventSubURL/><SCPDURL/></service>" +
                           "</serviceList></device></deviceList></device></deviceList></device></root>";
        Assert.True(UpnpDeviceDescription.TryParse(xml, out var d));
        Assert.Equal("Router", d.FriendlyName);
        Assert.Equal(UpnpDeviceDescription.WanIpConnection1, d.WanConnection!.ServiceType);
        Assert.Equal(new Uri("http://192.168.1.1:49152/upnp/control/ip"),
            d.Resolve(new Uri("http://192.168.1.1:5000/desc.xml"), d.WanConnection.ControlUrl));
        Assert.Null(d.Resolve(new Uri("http://192.168.1.1/"), "file:///etc/passwd"));
    }

    private static readonly Gen<byte[]> Bytes = from n in Gen.Choose(0, 1500)
                                                from b in Gen.ArrayOf(ArbMap.Default.GeneratorFor<byte>(), n)
                                                select b;

    [Fact]
    public void RandomBytes_NeverThrow_OutOfAnyParser()
    {
        Prop.ForAll(Bytes.ToArbitrary(), bytes =>
        {
            Touch(bytes);
            return true;
        }).QuickCheckThrowOnFailure();
    }

    [Fact]
    public void MutatedValidMessages_NeverThrow_OutOfAnyParser()
    {
        byte[][] seeds =
        [
            SsdpMessage.Search(UpnpDeviceDescription.InternetGatewayDevice2),
            SsdpMessage.Response("upnp:rootdevice", "uuid:1", "http://10.0.0.1:5000/rootDesc.xml", 120, "x"),
            Encoding.UTF8.GetBytes(new UpnpAction(UpnpDeviceDescription.WanIpConnection2, "AddPortMapping",
                [new("NewExternalPort", "1"), new("NewProtocol", "UDP")]).ToRequestXml()),
            Encoding.UTF8.GetBytes(UpnpAction.FaultXml(UpnpError.NoSuchEntryInArray)),
            Encoding.UTF8.GetBytes(UpnpDeviceDescription.Build("uuid:x", "n")),
        ];
        var gen = from s in Gen.Choose(0, seeds.Length - 1)
                  from i in Gen.Choose(0, 10_000)
                  from v in ArbMap.Default.GeneratorFor<byte>()
                  from cut in Gen.Choose(0, 10_000)
                  select (s, i, v, cut);
        Prop.ForAll(gen.ToArbitrary(), t =>
        {
            var m = seeds[t.s].ToArray();
            m[t.i % m.Length] = t.v;
            Touch(m.AsSpan(0, t.cut % (m.Length + 1)).ToArray());
        }).QuickCheckThrowOnFailure();
    }

    /// <summary>Runs every parser over the bytes, as a datagram and as text, and reads what they found.</summary>
    private static void Touch(byte[] bytes)
    {
        if (SsdpMessage.TryParse(bytes, out var m))
        {
            _ = (m.SearchTarget, m.Location, m.MaxWait, m.MaxAge, m.IsDiscover, m.UniqueServiceName);
        }

        if (UpnpHttpHead.TryParse(bytes, out var h))
        {
            _ = (h.ContentLength, h.IsChunked, h.MaxAge, h["HOST"]);
        }

        var text = Encoding.UTF8.GetString(bytes);
        if (UpnpAction.TryParseRequest(text, out var a))
        {
            _ = (a.Name, a.ServiceType, a["NewExternalPort"]);
        }

        UpnpAction.TryParseResponse(text, out _, out _);
        if (UpnpDeviceDescription.TryParse(text, out var d))
        {
            _ = d.WanConnection;
        }

        UpnpAction.TryParseSoapActionHeader(text, out _, out _);
    }
}
