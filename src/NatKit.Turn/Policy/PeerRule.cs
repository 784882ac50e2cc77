using System.Globalization;

namespace NatKit.Turn.Policy;

/// <summary>
/// One entry of an allow or deny list: a CIDR prefix and optionally a port or port range.
/// Written "10.0.0.0/8", "127.0.0.1:5000", "127.0.0.0/8:5000-5100", "fc00::/7", "[::1]:5000", "[fc00::/7]:80-90".
/// </summary>
public sealed record PeerRule(IpPrefix Prefix, int FirstPort = 0, int LastPort = 65535)
{
    public bool Matches(IpKey address, int port) =>
        port >= FirstPort && port <= LastPort && Prefix.Contains(address);

    public static bool TryParse(string? text, out PeerRule rule)
    {
        rule = null!;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }

        var s = text.AsSpan().Trim();
        ReadOnlySpan<char> prefixText;
        ReadOnlySpan<char> portText = default;
        if (s[0] == '[')
        {
            var close = s.IndexOf(']');
            if (close < 0)
            {
                return false;
            }

            prefixText = s[1..close];
            var rest = s[(close + 1)..];
            if (!rest.IsEmpty)
            {
                if (rest[0] != ':')
                {
                    return false;
                }

                portText = rest[1..];
            }
        }
        else if (s.Count(':') >= 2)
        {
            prefixText = s; // IPv6 without a port
        }
        else
        {
            var colon = s.IndexOf(':');
            prefixText = colon < 0 ? s : s[..colon];
            portText = colon < 0 ? default : s[(colon + 1)..];
        }

        if (!IpPrefix.TryParse(prefixText, out var prefix))
        {
            return false;
        }

        int first = 0, last = 65535;
        if (!portText.IsEmpty || (s[0] != '[' && s.Count(':') == 1))
        {
            var dash = portText.IndexOf('-');
            if (!TryPort(dash < 0 ? portText : portText[..dash], out first))
            {
                return false;
            }

            last = first;
            if (dash >= 0 && (!TryPort(portText[(dash + 1)..], out last) || last < first))
            {
                return false;
            }
        }

        rule = new PeerRule(prefix, first, last);
        return true;
    }

    public static PeerRule Parse(string text) =>
        TryParse(text, out var r)
            ? r
            : throw new FormatException(
                $"'{text}' is not a peer rule (CIDR with an optional port, like 10.0.0.0/8 or 127.0.0.1:5000 or [::1]:5000)");

    public override string ToString()
    {
        if (FirstPort == 0 && LastPort == 65535)
        {
            return Prefix.ToString();
        }

        var p = Prefix.IsV4 ? Prefix.ToString() : $"[{Prefix}]";
        return FirstPort == LastPort
            ? string.Create(CultureInfo.InvariantCulture, $"{p}:{FirstPort}")
            : string.Create(CultureInfo.InvariantCulture, $"{p}:{FirstPort}-{LastPort}");
    }

    private static bool TryPort(ReadOnlySpan<char> text, out int port) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out port) && port is >= 0 and <= 65535;
}
