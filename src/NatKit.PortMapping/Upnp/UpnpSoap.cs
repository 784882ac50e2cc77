using System.Globalization;
using System.Text;
using System.Xml;

namespace NatKit.PortMapping.Upnp;

/// <summary>
/// A UPnP control message (UDA 2.0 section 3.2): an action invoked on a service, or its response, with its
/// arguments in order. Parsed from untrusted SOAP with <see cref="UpnpXml"/>'s safe settings, never throwing.
/// </summary>
/// <param name="ServiceType">The service's type URN (the action element's namespace).</param>
/// <param name="Name">The action's name (for a response, without the "Response" suffix).</param>
/// <param name="Arguments">The arguments: element names and their text.</param>
public sealed record UpnpAction(string ServiceType, string Name, IReadOnlyList<KeyValuePair<string, string>> Arguments)
{
    /// <summary>SOAP 1.1's envelope namespace.</summary>
    public const string EnvelopeNamespace = "http://schemas.xmlsoap.org/soap/envelope/";

    /// <summary>The most arguments a message may carry (WANIPConnection's widest action has 8).</summary>
    public const int MaxArguments = 32;

    /// <summary>The value of an argument, or null when absent.</summary>
    public string? this[string name]
    {
        get
        {
            foreach (var a in Arguments)
            {
                if (a.Key == name)
                {
                    return a.Value;
                }
            }

            return null;
        }
    }

    /// <summary>The SOAPACTION header of a request: <c>"serviceType#name"</c>, quoted.</summary>
    public string SoapActionHeader => "\"" + ServiceType + "#" + Name + "\"";

    /// <summary>Splits a SOAPACTION header (quotes optional) into service type and action name.</summary>
    public static bool TryParseSoapActionHeader(string? header, out string serviceType, out string name)
    {
        serviceType = name = "";
        if (header is null)
        {
            return false;
        }

        var h = header.Trim();
        if (h.Length >= 2 && h[0] == '"' && h[^1] == '"')
        {
            h = h[1..^1];
        }

        var hash = h.LastIndexOf('#');
        if (hash <= 0 || hash == h.Length - 1)
        {
            return false;
        }

        serviceType = h[..hash];
        name = h[(hash + 1)..];
        return true;
    }

    /// <summary>The request's SOAP envelope.</summary>
    public string ToRequestXml() => Envelope(Name);

    /// <summary>The response's SOAP envelope (element <c>NameResponse</c>).</summary>
    public string ToResponseXml() => Envelope(Name + "Response");

    private string Envelope(string element)
    {
        var b = new StringBuilder(512);
        b.Append("<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"").Append(EnvelopeNamespace)
            .Append("\" s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><u:").Append(element)
            .Append(" xmlns:u=\"").Append(UpnpXml.Escape(ServiceType)).Append("\">");
        foreach (var (name, value) in Arguments)
        {
            b.Append('<').Append(name).Append('>').Append(UpnpXml.Escape(value)).Append("</").Append(name).Append('>');
        }

        return b.Append("</u:").Append(element).Append("></s:Body></s:Envelope>\r\n").ToString();
    }

    /// <summary>A SOAP fault carrying a UPnPError (sent with HTTP 500).</summary>
    public static string FaultXml(UpnpError error, string? description = null) =>
        "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"" + EnvelopeNamespace +
        "\" s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><s:Fault>" +
        "<faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>" +
        "<UPnPError xmlns=\"urn:schemas-upnp-org:control-1-0\"><errorCode>" +
        ((int)error).ToString(CultureInfo.InvariantCulture) + "</errorCode><errorDescription>" +
        UpnpXml.Escape(description ?? UpnpErrors.Description(error)) +
        "</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>\r\n";

    /// <summary>Parses a request's envelope: the Body's first element is the action.</summary>
    public static bool TryParseRequest(string xml, out UpnpAction action)
    {
        ArgumentNullException.ThrowIfNull(xml);
        return UpnpXml.TryRead(xml, r => ReadBody(r, response: false, out _), out action);
    }

    /// <summary>
    /// Parses a response's envelope: true with <paramref name="action"/> for a response (its name without the
    /// "Response" suffix) or with <paramref name="fault"/> set for a fault (<paramref name="action"/> then has no
    /// arguments); false when it is neither.
    /// </summary>
    public static bool TryParseResponse(string xml, out UpnpAction action, out UpnpError fault)
    {
        ArgumentNullException.ThrowIfNull(xml);
        var error = UpnpError.None;
        var ok = UpnpXml.TryRead(xml, r => ReadBody(r, response: true, out error), out action);
        fault = error;
        return ok;
    }

    private static UpnpAction? ReadBody(XmlReader r, bool response, out UpnpError fault)
    {
        fault = UpnpError.None;
        if (r.MoveToContent() != XmlNodeType.Element || r.LocalName != "Envelope" || r.NamespaceURI != EnvelopeNamespace)
        {
            return null;
        }

        // Envelope > (Header)? Body > action
        if (!ReadToChild(r, "Body", EnvelopeNamespace, skipOthers: true))
        {
            return null;
        }

        if (!ReadToFirstChildElement(r))
        {
            return null;
        }

        if (r.LocalName == "Fault" && r.NamespaceURI == EnvelopeNamespace)
        {
            if (!response)
            {
                return null;
            }

            fault = ReadFault(r);
            return fault == UpnpError.None ? null : new UpnpAction("", "Fault", []);
        }

        var name = r.LocalName;
        var serviceType = r.NamespaceURI;
        if (response)
        {
            if (!name.EndsWith("Response", StringComparison.Ordinal))
            {
                return null;
            }

            name = name[..^"Response".Length];
        }

        if (name.Length == 0 || serviceType.Length == 0)
        {
            return null;
        }

        var arguments = new List<KeyValuePair<string, string>>();
        if (r.IsEmptyElement)
        {
            return new UpnpAction(serviceType, name, arguments);
        }

        var depth = r.Depth;
        r.Read();
        while (true)
        {
            r.MoveToContent();
            if (r.NodeType == XmlNodeType.EndElement && r.Depth == depth)
            {
                break;
            }

            if (r.NodeType != XmlNodeType.Element || arguments.Count >= MaxArguments)
            {
                return null;
            }

            var argument = r.LocalName;
            var value = r.ReadElementContentAsString(); // throws (turned into false) on child elements
            arguments.Add(new(argument, value));
        }

        return new UpnpAction(serviceType, name, arguments);
    }

    private static UpnpError ReadFault(XmlReader r)
    {
        using var fault = r.ReadSubtree();
        var code = 0;
        while (fault.Read())
        {
            if (fault.NodeType == XmlNodeType.Element && fault.LocalName == "errorCode")
            {
                var text = fault.ReadElementContentAsString().Trim();
                if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out code))
                {
                    code = (int)UpnpError.ActionFailed;
                }

                break;
            }
        }

        return code is > 0 and < 1000 ? (UpnpError)code : code == 0 ? UpnpError.None : UpnpError.ActionFailed;
    }

    /// <summary>From an element, moves to its child named (name, ns), skipping other children when allowed.</summary>
    private static bool ReadToChild(XmlReader r, string name, string ns, bool skipOthers)
    {
        if (!ReadToFirstChildElement(r))
        {
            return false;
        }

        while (true)
        {
            if (r.NodeType == XmlNodeType.Element && r.LocalName == name && r.NamespaceURI == ns)
            {
                return true;
            }

            if (!skipOthers || r.NodeType != XmlNodeType.Element)
            {
                return false;
            }

            r.Skip();
            r.MoveToContent();
        }
    }

    private static bool ReadToFirstChildElement(XmlReader r)
    {
        if (r.IsEmptyElement)
        {
            return false;
        }

        r.Read();
        return r.MoveToContent() == XmlNodeType.Element;
    }
}
