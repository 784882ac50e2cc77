using System.Globalization;
using System.Net;
using System.Text;

namespace NatKit.Traversal.Ice;

/// <summary>
/// The SDP candidate attribute of RFC 8839 section 5.1, the form signaling carries and libnice prints:
/// <c>candidate:&lt;foundation&gt; &lt;component&gt; &lt;transport&gt; &lt;priority&gt; &lt;address&gt; &lt;port&gt;
/// typ &lt;type&gt; [raddr &lt;address&gt; rport &lt;port&gt;] *(&lt;name&gt; &lt;value&gt;)</c>, with or without the
/// leading <c>a=</c>. <see cref="TryParse"/> takes untrusted text: it never throws and says in one sentence what is
/// wrong. Addresses are IP literals (mDNS ".local" names are refused: this agent does not resolve them).
/// </summary>
public static class IceCandidateSdp
{
    /// <summary>Longest line accepted (a candidate line is well under 300 characters; this bounds the work).</summary>
    public const int MaxLineLength = 1024;

    private const string Prefix = "candidate:";

    /// <summary>Parses one candidate line; on failure <paramref name="error"/> says why.</summary>
    public static bool TryParse(string? line, out IceCandidate candidate, out string error)
    {
        candidate = null!;
        if (string.IsNullOrWhiteSpace(line))
        {
            error = "the candidate line is empty";
            return false;
        }

        if (line.Length > MaxLineLength)
        {
            error = $"the candidate line is longer than {MaxLineLength} characters";
            return false;
        }

        var text = line.AsSpan().Trim();
        if (text.StartsWith("a=", StringComparison.Ordinal))
        {
            text = text[2..];
        }

        if (!text.StartsWith(Prefix, StringComparison.OrdinalIgnoreCase))
        {
            error = "a candidate line starts with \"candidate:\"";
            return false;
        }

        var fields = text[Prefix.Length..].ToString().Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (fields.Length < 8)
        {
            error = "a candidate line has at least 8 fields: foundation, component, transport, priority, address, port, \"typ\" and the type";
            return false;
        }

        var foundation = fields[0];
        if (foundation.Length > 32 || !IsIceChars(foundation))
        {
            error = "the foundation is 1-32 characters of ALPHA, DIGIT, '+' and '/'";
            return false;
        }

        if (!int.TryParse(fields[1], NumberStyles.None, CultureInfo.InvariantCulture, out var component) ||
            component is < 1 or > 256)
        {
            error = "the component ID is a number from 1 to 256";
            return false;
        }

        IceProtocol protocol;
        if (fields[2].Equals("udp", StringComparison.OrdinalIgnoreCase))
        {
            protocol = IceProtocol.Udp;
        }
        else if (fields[2].Equals("tcp", StringComparison.OrdinalIgnoreCase))
        {
            protocol = IceProtocol.Tcp;
        }
        else
        {
            error = $"the transport is UDP or TCP, not \"{Shorten(fields[2])}\"";
            return false;
        }

        if (!uint.TryParse(fields[3], NumberStyles.None, CultureInfo.InvariantCulture, out var priority))
        {
            error = "the priority is a number from 0 to 4294967295";
            return false;
        }

        if (!TryAddress(fields[4], fields[5], out var endPoint, out error))
        {
            return false;
        }

        if (!fields[6].Equals("typ", StringComparison.Ordinal))
        {
            error = "the seventh field of a candidate line is \"typ\"";
            return false;
        }

        IceCandidateType type;
        switch (fields[7])
        {
            case "host":
                type = IceCandidateType.Host;
                break;
            case "srflx":
                type = IceCandidateType.ServerReflexive;
                break;
            case "prflx":
                type = IceCandidateType.PeerReflexive;
                break;
            case "relay":
                type = IceCandidateType.Relayed;
                break;
            default:
                error = $"the candidate type is host, srflx, prflx or relay, not \"{Shorten(fields[7])}\"";
                return false;
        }

        var i = 8;
        IPEndPoint? related = null;
        if (i < fields.Length && fields[i] == "raddr")
        {
            if (i + 3 >= fields.Length || fields[i + 2] != "rport")
            {
                error = "raddr is followed by an address, then \"rport\" and a port";
                return false;
            }

            if (!TryAddress(fields[i + 1], fields[i + 3], out var r, out error))
            {
                error = "the related address: " + error;
                return false;
            }

            related = r;
            i += 4;
        }

        if ((fields.Length - i) % 2 != 0)
        {
            error = "the extensions after the type come in name-value pairs";
            return false;
        }

        var extensions = new List<IceCandidateExtension>((fields.Length - i) / 2);
        for (; i < fields.Length; i += 2)
        {
            if (fields[i] is "raddr" or "rport")
            {
                error = "raddr and rport come right after the type, together";
                return false;
            }

            extensions.Add(new IceCandidateExtension(fields[i], fields[i + 1]));
        }

        candidate = new IceCandidate(foundation, component, protocol, priority, endPoint, type, related)
        {
            Extensions = extensions,
        };
        error = string.Empty;
        return true;
    }

    /// <summary>The attribute value (<c>candidate:...</c>, without <c>a=</c>).</summary>
    public static string Format(IceCandidate candidate)
    {
        ArgumentNullException.ThrowIfNull(candidate);
        var sb = new StringBuilder(128);
        sb.Append(Prefix).Append(candidate.Foundation).Append(' ')
            .Append(candidate.Component.ToString(CultureInfo.InvariantCulture)).Append(' ')
            .Append(candidate.Protocol == IceProtocol.Udp ? "UDP" : "TCP").Append(' ')
            .Append(candidate.Priority.ToString(CultureInfo.InvariantCulture)).Append(' ')
            .Append(candidate.EndPoint.Address.ToString()).Append(' ')
            .Append(candidate.EndPoint.Port.ToString(CultureInfo.InvariantCulture)).Append(" typ ")
            .Append(TypeName(candidate.Type));
        if (candidate.RelatedEndPoint is { } r)
        {
            sb.Append(" raddr ").Append(r.Address.ToString()).Append(" rport ")
                .Append(r.Port.ToString(CultureInfo.InvariantCulture));
        }

        foreach (var e in candidate.Extensions)
        {
            sb.Append(' ').Append(e.Name).Append(' ').Append(e.Value);
        }

        return sb.ToString();
    }

    /// <summary>host, srflx, prflx or relay.</summary>
    public static string TypeName(IceCandidateType type) => type switch
    {
        IceCandidateType.Host => "host",
        IceCandidateType.ServerReflexive => "srflx",
        IceCandidateType.PeerReflexive => "prflx",
        _ => "relay",
    };

    /// <summary>True when <paramref name="text"/> is non-empty and only ALPHA, DIGIT, '+' and '/' (RFC 8839
    /// ice-char, the alphabet of foundations, ufrags and passwords).</summary>
    public static bool IsIceChars(ReadOnlySpan<char> text)
    {
        if (text.IsEmpty)
        {
            return false;
        }

        foreach (var c in text)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '+' or '/'))
            {
                return false;
            }
        }

        return true;
    }

    private static bool TryAddress(string address, string port, out IPEndPoint endPoint, out string error)
    {
        endPoint = null!;
        if (!ushort.TryParse(port, NumberStyles.None, CultureInfo.InvariantCulture, out var p))
        {
            error = $"the port is a number from 0 to 65535, not \"{Shorten(port)}\"";
            return false;
        }

        if (address.EndsWith(".local", StringComparison.OrdinalIgnoreCase))
        {
            error = $"\"{Shorten(address)}\" is an mDNS name; this agent takes IP addresses only";
            return false;
        }

        // IPAddress.TryParse accepts forms an SDP address is not ("1", "0x7f.1"): demand a dotted quad or a colon.
        var dots = 0;
        foreach (var c in address)
        {
            dots += c == '.' ? 1 : 0;
        }

        if ((!address.Contains(':', StringComparison.Ordinal) && dots != 3) ||
            !IPAddress.TryParse(address, out var ip))
        {
            error = $"\"{Shorten(address)}\" is not an IP address";
            return false;
        }

        endPoint = new IPEndPoint(ip, p);
        error = string.Empty;
        return true;
    }

    private static string Shorten(string s) => s.Length <= 40 ? s : s[..40] + "...";
}
