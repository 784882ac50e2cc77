using System.Buffers;
using System.Text;

namespace NatKit.Proxy.Http;

/// <summary>The four request-target forms of RFC 9112 section 3.2.</summary>
internal enum TargetForm : byte
{
    Origin,
    Absolute,
    Authority,
    Asterisk,
}

/// <summary>A request-target split into ranges of the target's own bytes.</summary>
internal struct RequestTarget
{
    public TargetForm Form;

    /// <summary>host[:port] as written (for the Host field sent upstream).</summary>
    public Segment Authority;

    /// <summary>The host without brackets around an IPv6 literal.</summary>
    public Segment Host;

    public int Port;

    /// <summary>Path and query of an absolute-form target; empty means "/" (or "*" for OPTIONS).</summary>
    public Segment PathAndQuery;

    public bool HostIsIPv6;

    private static readonly SearchValues<byte> RegNameBytes =
        SearchValues.Create("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()*+,;="u8);

    private static readonly SearchValues<byte> IPv6Bytes = SearchValues.Create("0123456789abcdefABCDEF:."u8);

    /// <summary>
    /// Parses a request-target. CONNECT takes authority-form with a port; other methods take absolute-form
    /// with the http scheme (a forward proxy) or origin-form (requests to the proxy itself). Userinfo and
    /// fragments are refused (RFC 9110 4.2.4, RFC 9112 3.2).
    /// </summary>
    public static bool TryParse(ReadOnlySpan<byte> target, bool isConnect, out RequestTarget parsed, out string? error)
    {
        parsed = default;
        error = null;
        if (isConnect)
        {
            parsed.Form = TargetForm.Authority;
            parsed.Authority = new Segment(0, target.Length);
            return TryParseAuthority(target, 0, requirePort: true, defaultPort: 0, ref parsed, out error);
        }

        if (target.Length > 0 && target[0] == (byte)'/')
        {
            parsed.Form = TargetForm.Origin;
            parsed.PathAndQuery = new Segment(0, target.Length);
            return true;
        }

        if (target.SequenceEqual("*"u8))
        {
            parsed.Form = TargetForm.Asterisk;
            return true;
        }

        const int SchemeLength = 7; // "http://"
        if (target.Length <= SchemeLength || !Ascii.EqualsIgnoreCase(target[..SchemeLength], "http://"u8))
        {
            error = target.Length > 8 && Ascii.EqualsIgnoreCase(target[..8], "https://"u8)
                ? "https in absolute-form is not proxied: use CONNECT"
                : "request target is not an http URI";
            return false;
        }

        if (target.IndexOf((byte)'#') >= 0)
        {
            error = "fragment in request target";
            return false;
        }

        var rest = target[SchemeLength..];
        var end = rest.IndexOfAny((byte)'/', (byte)'?');
        var authorityLength = end < 0 ? rest.Length : end;
        parsed.Form = TargetForm.Absolute;
        parsed.Authority = new Segment(SchemeLength, authorityLength);
        parsed.PathAndQuery = new Segment(SchemeLength + authorityLength, rest.Length - authorityLength);
        return TryParseAuthority(rest[..authorityLength], SchemeLength, requirePort: false, defaultPort: 80,
            ref parsed, out error);
    }

    private static bool TryParseAuthority(ReadOnlySpan<byte> authority, int offset, bool requirePort, int defaultPort,
        ref RequestTarget parsed, out string? error)
    {
        error = null;
        if (authority.IsEmpty)
        {
            error = "empty host";
            return false;
        }

        if (authority.IndexOf((byte)'@') >= 0)
        {
            error = "userinfo in request target";
            return false;
        }

        ReadOnlySpan<byte> portPart;
        if (authority[0] == (byte)'[')
        {
            var close = authority.IndexOf((byte)']');
            if (close < 3 || authority[1..close].IndexOfAnyExcept(IPv6Bytes) >= 0)
            {
                error = "bad IPv6 literal";
                return false;
            }

            parsed.Host = new Segment(offset + 1, close - 1);
            parsed.HostIsIPv6 = true;
            portPart = authority[(close + 1)..];
            if (!portPart.IsEmpty && portPart[0] != (byte)':')
            {
                error = "bad authority";
                return false;
            }
        }
        else
        {
            var colon = authority.IndexOf((byte)':');
            var host = colon < 0 ? authority : authority[..colon];
            if (host.IsEmpty || host.IndexOfAnyExcept(RegNameBytes) >= 0)
            {
                error = "bad host";
                return false;
            }

            parsed.Host = new Segment(offset, host.Length);
            portPart = colon < 0 ? default : authority[colon..];
        }

        if (portPart.Length <= 1)
        {
            if (requirePort)
            {
                error = "missing port";
                return false;
            }

            parsed.Port = defaultPort;
            return true;
        }

        var digits = portPart[1..];
        var port = 0;
        if (digits.Length > 5)
        {
            error = "bad port";
            return false;
        }

        foreach (var b in digits)
        {
            if ((uint)(b - '0') > 9)
            {
                error = "bad port";
                return false;
            }

            port = (port * 10) + (b - '0');
        }

        if (port is < 1 or > 65535)
        {
            error = "bad port";
            return false;
        }

        parsed.Port = port;
        return true;
    }
}
