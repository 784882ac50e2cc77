using System.Globalization;
using System.Text;
using NatKit.Packets;

namespace NatKit.PortMapping.Upnp;

/// <summary>
/// The IGD's HTTP side, pure: a request head and body from a control point in, the response's bytes out. GET of
/// the description; POST of SOAP actions to the control URLs, handed to <see cref="UpnpControlHandler"/>. Requests
/// from outside the NAT get 403; anything malformed gets its HTTP error or a UPnPError fault; never throws.
/// </summary>
internal sealed class UpnpHttpHandler
{
    /// <summary>The largest request body taken (a SOAP action is well under 2 KiB).</summary>
    public const int MaxBodyBytes = 16 * 1024;

    private readonly UpnpControlHandler _control;
    private readonly byte[] _description;
    private readonly string _server;

    /// <param name="control">The control core.</param>
    /// <param name="udn">The device's UDN (uuid:...).</param>
    /// <param name="friendlyName">Its name for people.</param>
    /// <param name="server">The SERVER header: "OS/version UPnP/2.0 product/version".</param>
    public UpnpHttpHandler(UpnpControlHandler control, string udn, string friendlyName, string server)
    {
        _control = control ?? throw new ArgumentNullException(nameof(control));
        _description = Encoding.UTF8.GetBytes(UpnpDeviceDescription.Build(udn, friendlyName));
        _server = server ?? throw new ArgumentNullException(nameof(server));
    }

    /// <summary>The control core.</summary>
    public UpnpControlHandler Control => _control;

    /// <summary>Answers one request. <paramref name="body"/> is its whole body (Content-Length bytes).</summary>
    public byte[] Handle(UpnpHttpHead head, ReadOnlySpan<byte> body, Ipv4Address source, long now)
    {
        ArgumentNullException.ThrowIfNull(head);
        if (!head.IsRequest)
        {
            return Status(400, "Bad Request");
        }

        if (!_control.Table.IsInside(source))
        {
            return Status(403, "Forbidden");
        }

        var path = head.Target!;
        var query = path.IndexOf('?', StringComparison.Ordinal);
        if (query >= 0)
        {
            path = path[..query];
        }

        if (head.Method is "GET" or "HEAD")
        {
            return path == UpnpPaths.Description
                ? Response(200, "OK", "text/xml; charset=\"utf-8\"", head.Method == "HEAD" ? [] : _description,
                    _description.Length)
                : Status(404, "Not Found");
        }

        if (head.Method != "POST")
        {
            return Status(405, "Method Not Allowed");
        }

        if (path is not (UpnpPaths.WanIpConnectionControl or UpnpPaths.CommonInterfaceControl))
        {
            return Status(404, "Not Found");
        }

        if (head.IsChunked || head.ContentLength < 0)
        {
            return Status(411, "Length Required");
        }

        if (head.ContentLength > MaxBodyBytes)
        {
            return Status(413, "Content Too Large");
        }

        UpnpReply reply;
        string text;
        try
        {
            text = new UTF8Encoding(false, true).GetString(body);
        }
        catch (DecoderFallbackException)
        {
            return Fault(UpnpError.InvalidArgs);
        }

        if (!UpnpAction.TryParseRequest(text, out var action))
        {
            return Fault(UpnpError.InvalidArgs);
        }

        // The SOAPACTION header names the action too; when both are there they must agree (UDA 2.0 section 3.2.1).
        if (UpnpAction.TryParseSoapActionHeader(head["SOAPACTION"], out var headerType, out var headerName) &&
            (headerType != action.ServiceType || headerName != action.Name))
        {
            return Fault(UpnpError.InvalidAction);
        }

        var wanted = path == UpnpPaths.WanIpConnectionControl
            ? action.ServiceType is UpnpDeviceDescription.WanIpConnection2 or UpnpDeviceDescription.WanIpConnection1
            : action.ServiceType == UpnpDeviceDescription.WanCommonInterfaceConfig1;
        reply = wanted ? _control.Handle(action, source, now) : UpnpReply.Fail(UpnpError.InvalidAction);
        if (reply.Response is null)
        {
            return Fault(reply.Error);
        }

        var xml = Encoding.UTF8.GetBytes(reply.Response.ToResponseXml());
        return Response(200, "OK", "text/xml; charset=\"utf-8\"", xml, xml.Length);
    }

    private byte[] Fault(UpnpError error)
    {
        var xml = Encoding.UTF8.GetBytes(UpnpAction.FaultXml(error));
        return Response(500, "Internal Server Error", "text/xml; charset=\"utf-8\"", xml, xml.Length);
    }

    /// <summary>An error status with no body.</summary>
    public byte[] Status(int code, string reason) => Response(code, reason, null, [], 0);

    private byte[] Response(int code, string reason, string? contentType, byte[] body, int contentLength)
    {
        var fields = new List<KeyValuePair<string, string>>(5);
        if (contentType is not null)
        {
            fields.Add(new("Content-Type", contentType));
        }

        fields.Add(new("Content-Length", contentLength.ToString(CultureInfo.InvariantCulture)));
        fields.Add(new("Connection", "close"));
        fields.Add(new("Server", _server));
        fields.Add(new("Ext", ""));
        var head = Encoding.ASCII.GetBytes(UpnpHttpHead.Format(
            "HTTP/1.1 " + code.ToString(CultureInfo.InvariantCulture) + " " + reason, fields));
        var bytes = new byte[head.Length + body.Length];
        head.CopyTo(bytes, 0);
        body.CopyTo(bytes, head.Length);
        return bytes;
    }
}
