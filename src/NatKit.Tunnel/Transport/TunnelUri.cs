using System.Diagnostics.CodeAnalysis;
using System.Net;

namespace NatKit.Tunnel.Transport;

/// <summary>Where a WebSocket goes: ws:// or wss://, a host (an IP address, or a name for the real network), a port
/// and a path.</summary>
public sealed record TunnelUri(bool Secure, string Host, int Port, string Path)
{
    /// <summary>Parses "ws://HOST[:PORT]/PATH" or "wss://..."; on failure <paramref name="error"/> is one sentence.</summary>
    public static bool TryParse(string? text, [NotNullWhen(true)] out TunnelUri? uri, [NotNullWhen(false)] out string? error)
    {
        uri = null;
        if (!Uri.TryCreate(text, UriKind.Absolute, out var u) || (u.Scheme != "ws" && u.Scheme != "wss"))
        {
            error = $"'{text}' is not a ws:// or wss:// URL";
            return false;
        }

        if (!string.IsNullOrEmpty(u.UserInfo) || !string.IsNullOrEmpty(u.Fragment))
        {
            error = $"'{text}' has user information or a fragment, which a tunnel URL does not take";
            return false;
        }

        var secure = u.Scheme == "wss";
        var host = u.HostNameType == UriHostNameType.IPv6 ? u.Host.Trim('[', ']') : u.Host;
        uri = new TunnelUri(secure, host, u.IsDefaultPort ? (secure ? 443 : 80) : u.Port, u.PathAndQuery);
        error = null;
        return true;
    }

    /// <summary>The Host header's value.</summary>
    public string Authority => (Host.Contains(':', StringComparison.Ordinal) ? $"[{Host}]" : Host) +
                               (Port == (Secure ? 443 : 80) ? "" : $":{Port}");

    /// <summary>The address when <see cref="Host"/> is an IP literal.</summary>
    public IPAddress? Address => IPAddress.TryParse(Host, out var a) ? a : null;

    public override string ToString() => $"{(Secure ? "wss" : "ws")}://{Authority}{Path}";
}
