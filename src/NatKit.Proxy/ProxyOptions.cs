using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using NatKit.Net;

namespace NatKit.Proxy;

/// <summary>
/// How the proxy behaves. The defaults are the safe ones: loopback listener, clients only from loopback and
/// private LANs, CONNECT (HTTP and SOCKS5) only to port 443, no loopback destinations, never the proxy itself,
/// bounded headers, times and connections.
/// </summary>
public sealed record ProxyOptions
{
    /// <summary>Where the HTTP proxy listens. Loopback unless told otherwise.</summary>
    public IPEndPoint HttpListen { get; init; } = new(IPAddress.Loopback, 3128);

    /// <summary>Where the SOCKS5 server listens; null for no SOCKS5.</summary>
    public IPEndPoint? SocksListen { get; init; }

    /// <summary>Client networks allowed to use the proxy (RFC 1918, RFC 4193, loopback, link-local by default).</summary>
    public IReadOnlyList<IPNetwork> AllowedClients { get; init; } = DefaultAllowedClients;

    /// <summary>Ports a CONNECT (HTTP) may reach. RFC 9110 section 9.3.6 warns against tunnels to arbitrary
    /// ports; 443 only by default.</summary>
    public IReadOnlySet<int> ConnectPorts { get; init; } = new HashSet<int> { 443 };

    /// <summary>Ports a SOCKS5 CONNECT or UDP datagram may reach; null (the default) means the same list as
    /// <see cref="ConnectPorts"/>, so SOCKS5 is no wider than HTTP CONNECT unless told (<see cref="AnyPort"/>
    /// for every port).</summary>
    public IReadOnlySet<int>? SocksPorts { get; init; }

    /// <summary>Every port, 1 to 65535: for <see cref="ConnectPorts"/> or <see cref="SocksPorts"/> when any
    /// port may be reached.</summary>
    public static IReadOnlySet<int> AnyPort { get; } = new HashSet<int>(Enumerable.Range(1, 65535));

    /// <summary>Whether destinations on loopback, unspecified, link-local or multicast addresses are allowed.
    /// Off by default so clients cannot reach services bound to the proxy host itself.</summary>
    public bool AllowLoopbackDestinations { get; init; }

    /// <summary>"user:password" for Basic proxy authentication (HTTP 407, RFC 9110 11.7.1) and SOCKS5
    /// user/password (RFC 1929); null for none.</summary>
    public string? Credentials { get; init; }

    /// <summary>A parent proxy every HTTP request and CONNECT is sent through; null to go direct.</summary>
    public DnsEndPoint? Parent { get; init; }

    /// <summary>Basic credentials for the parent proxy: sent as Proxy-Authorization on every request forwarded
    /// to it and on the CONNECT that opens a tunnel through it; null for none. Never logged or shown (a
    /// <see cref="NetworkCredential"/> prints as its type name). See <see cref="TryParseParent"/>.</summary>
    public NetworkCredential? ParentCredentials { get; init; }

    /// <summary>The most bytes a request or response head may have (HTTP 431 past it).</summary>
    public int MaxHeaderBytes { get; init; } = 32 * 1024;

    /// <summary>The most header fields a head may have.</summary>
    public int MaxHeaderCount { get; init; } = 128;

    /// <summary>The whole request head (or SOCKS handshake) must arrive within this, counted from the first
    /// byte (or from accept, for a connection's first request). Cuts off slow-header clients.</summary>
    public TimeSpan HeaderTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>A connection with no bytes moving (idle keep-alive, stalled body or tunnel) is closed after this.</summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>The slowest average rate, in bytes per second, at which a request body may arrive (Kestrel's
    /// MinRequestBodyDataRate): counted from the body's first byte over the time spent waiting for the client,
    /// checked once the grace period has passed; a body slower than this gets 408 (or, once the response has
    /// begun, a close). 0 turns it off.</summary>
    public double MinRequestBodyDataRate { get; init; } = 240;

    /// <summary>How long a request body may run below <see cref="MinRequestBodyDataRate"/> before it counts.</summary>
    public TimeSpan MinRequestBodyDataRateGracePeriod { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>The slowest average rate, in bytes per second, at which a client must take a response (Kestrel's
    /// MinResponseDataRate): the response's bytes (head, body, chunk framing) divided by the time the proxy spent
    /// blocked writing them to the client, checked once the grace period of such time has passed. Time spent
    /// waiting for the origin does not count. A client slower than this has its connection aborted (a response
    /// has begun, so no status can be sent) and the origin's connection closed. Not applied to CONNECT and SOCKS
    /// tunnels or WebSocket upgrades (the idle timeout governs those). 0 turns it off.</summary>
    public double MinResponseDataRate { get; init; } = 240;

    /// <summary>How long a response may be written below <see cref="MinResponseDataRate"/> before it counts.</summary>
    public TimeSpan MinResponseDataRateGracePeriod { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>How long a connection to an upstream server may take (HTTP 504 past it).</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>The most client connections at once, HTTP and SOCKS together (HTTP 503 past it).</summary>
    public int MaxConnections { get; init; } = 1024;

    /// <summary>The most idle upstream connections kept per destination, and overall.</summary>
    public int MaxIdleUpstreamPerHost { get; init; } = 32;

    public int MaxIdleUpstreamTotal { get; init; } = 256;

    /// <summary>An idle pooled upstream connection older than this is not reused.</summary>
    public TimeSpan UpstreamIdleTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The pseudonym in the Via field (RFC 9110 7.6.3).</summary>
    public string ViaName { get; init; } = "natkit";

    /// <summary>TCP congestion control for both legs of every connection (clients' and servers'), by its kernel
    /// name (e.g. <c>cubic</c>); null keeps the system's default. Needs a network whose sockets can choose one
    /// (<see cref="NatKit.Net.ITcpCongestionControl"/>); the kernel refuses names it does not have at start.</summary>
    public string? CongestionControl { get; init; }

    /// <summary>The reserved origin-form path on the proxy port that serves the connection table as JSON to
    /// loopback clients.</summary>
    public string StatusPath { get; init; } = "/natkit/status";

    /// <summary>Resolves a host name; <see cref="SystemNetwork.ResolveAsync"/> by default. A name that does not
    /// resolve throws <see cref="NetworkException"/> (or <see cref="ArgumentException"/> for one refused
    /// outright); the proxy answers either as "not resolved".</summary>
    public Func<string, CancellationToken, Task<IPAddress[]>> Resolve { get; init; } = SystemNetwork.ResolveAsync;

    public static IReadOnlyList<IPNetwork> DefaultAllowedClients { get; } =
    [
        IPNetwork.Parse("127.0.0.0/8"), IPNetwork.Parse("::1/128"), IPNetwork.Parse("10.0.0.0/8"),
        IPNetwork.Parse("172.16.0.0/12"), IPNetwork.Parse("192.168.0.0/16"), IPNetwork.Parse("169.254.0.0/16"),
        IPNetwork.Parse("fc00::/7"), IPNetwork.Parse("fe80::/10"),
    ];

    /// <summary>Every option by name, with the credentials (this proxy's and the parent's) shown only as set or not,
    /// so options can be logged.</summary>
    public override string ToString()
    {
        var sb = new StringBuilder("ProxyOptions { ");
        foreach (var p in typeof(ProxyOptions).GetProperties(System.Reflection.BindingFlags.Public |
                     System.Reflection.BindingFlags.Instance))
        {
            var value = p.GetValue(this);
            sb.Append(p.Name).Append(" = ");
            if (p.Name is nameof(Credentials) or nameof(ParentCredentials))
            {
                sb.Append(value is null ? "none" : "(set)");
            }
            else if (value is IReadOnlySet<int> { Count: 65535 })
            {
                sb.Append("any"); // AnyPort, not 65,535 numbers
            }
            else if (value is System.Collections.IEnumerable list and not string)
            {
                sb.Append('[').AppendJoin(", ", list.Cast<object>()).Append(']');
            }
            else
            {
                sb.Append(value);
            }

            sb.Append(", ");
        }

        sb.Length -= 2;
        return sb.Append(" }").ToString();
    }

    /// <summary>Checks every field; throws <see cref="ArgumentException"/> naming the bad one.</summary>
    public ProxyOptions Validate()
    {
        if (MaxHeaderBytes is < 1024 or > 1024 * 1024)
        {
            throw new ArgumentException("MaxHeaderBytes must be between 1 KiB and 1 MiB.", nameof(MaxHeaderBytes));
        }

        if (MaxHeaderCount is < 8 or > 10_000)
        {
            throw new ArgumentException("MaxHeaderCount must be between 8 and 10000.", nameof(MaxHeaderCount));
        }

        Positive(HeaderTimeout, nameof(HeaderTimeout));
        Positive(IdleTimeout, nameof(IdleTimeout));
        Positive(ConnectTimeout, nameof(ConnectTimeout));
        Positive(UpstreamIdleTimeout, nameof(UpstreamIdleTimeout));
        Positive(MinRequestBodyDataRateGracePeriod, nameof(MinRequestBodyDataRateGracePeriod));
        Rate(MinRequestBodyDataRate, nameof(MinRequestBodyDataRate));
        Positive(MinResponseDataRateGracePeriod, nameof(MinResponseDataRateGracePeriod));
        Rate(MinResponseDataRate, nameof(MinResponseDataRate));

        if (AllowedClients.Count == 0)
        {
            throw new ArgumentException("AllowedClients must name at least one network: the proxy is not an open proxy.", nameof(AllowedClients));
        }

        if (MaxConnections < 1)
        {
            throw new ArgumentException("MaxConnections must be at least 1.", nameof(MaxConnections));
        }

        if (MaxIdleUpstreamPerHost < 0 || MaxIdleUpstreamTotal < 0)
        {
            throw new ArgumentException("upstream pool sizes must not be negative.", nameof(MaxIdleUpstreamTotal));
        }

        if (Credentials is not null && Credentials.IndexOf(':', StringComparison.Ordinal) <= 0)
        {
            throw new ArgumentException("Credentials must be user:password.", nameof(Credentials));
        }

        if (ParentCredentials is { } pc)
        {
            if (Parent is null)
            {
                throw new ArgumentException("ParentCredentials need a Parent.", nameof(ParentCredentials));
            }

            // RFC 7617 2: the user-id cannot contain a colon
            if (string.IsNullOrEmpty(pc.UserName) || pc.UserName.Contains(':', StringComparison.Ordinal))
            {
                throw new ArgumentException("ParentCredentials need a user name without ':'.", nameof(ParentCredentials));
            }
        }

        foreach (var p in ConnectPorts)
        {
            if (p is < 1 or > 65535)
            {
                throw new ArgumentException($"ConnectPorts has an invalid port {p}.", nameof(ConnectPorts));
            }
        }

        foreach (var p in SocksPorts ?? ConnectPorts)
        {
            if (p is < 1 or > 65535)
            {
                throw new ArgumentException($"SocksPorts has an invalid port {p}.", nameof(SocksPorts));
            }
        }

        if (CongestionControl is { Length: 0 })
        {
            throw new ArgumentException("CongestionControl must name an algorithm, or be null for the system's default.",
                nameof(CongestionControl));
        }

        if (!StatusPath.StartsWith('/'))
        {
            throw new ArgumentException("StatusPath must start with '/'.", nameof(StatusPath));
        }

        return this;
    }

    /// <summary>Parses a parent proxy given as <c>host:port</c>, <c>[v6]:port</c> or
    /// <c>http://[user[:password]@]host:port[/]</c> (user and password percent-decoded, as curl writes them).
    /// Never throws; <paramref name="error"/> names what is wrong without repeating the credentials.</summary>
    public static bool TryParseParent(string? text, [NotNullWhen(true)] out DnsEndPoint? parent,
        out NetworkCredential? credentials, [NotNullWhen(false)] out string? error)
    {
        parent = null;
        credentials = null;
        error = null;
        if (string.IsNullOrWhiteSpace(text) || text.Length > 2048)
        {
            error = "empty or too long";
            return false;
        }

        var rest = text.Trim();
        var scheme = rest.IndexOf("://", StringComparison.Ordinal);
        if (scheme >= 0)
        {
            if (!rest[..scheme].Equals("http", StringComparison.OrdinalIgnoreCase))
            {
                error = "only http:// parent proxies are supported";
                return false;
            }

            rest = rest[(scheme + 3)..];
            if (rest.EndsWith('/'))
            {
                rest = rest[..^1];
            }

            if (rest.IndexOfAny(['/', '?', '#']) >= 0)
            {
                error = "a parent proxy URL has no path, query or fragment";
                return false;
            }
        }

        var at = rest.LastIndexOf('@');
        if (at >= 0)
        {
            if (scheme < 0)
            {
                error = "credentials need the http://user:password@host:port form";
                return false;
            }

            var userInfo = rest[..at];
            rest = rest[(at + 1)..];
            var colon = userInfo.IndexOf(':', StringComparison.Ordinal);
            var user = colon < 0 ? userInfo : userInfo[..colon];
            var password = colon < 0 ? "" : userInfo[(colon + 1)..];
            if (!TryUnescape(user, out user) || !TryUnescape(password, out password) || user.Length == 0 ||
                user.Contains(':', StringComparison.Ordinal))
            {
                error = "the user name is empty or badly escaped (write ':' and '@' as %3A and %40)";
                return false;
            }

            credentials = new NetworkCredential(user, password);
        }

        var portColon = rest.LastIndexOf(':');
        if (portColon <= 0 || !int.TryParse(rest.AsSpan(portColon + 1), NumberStyles.None,
                CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
        {
            credentials = null;
            error = "expected host:port with a port from 1 to 65535";
            return false;
        }

        var host = rest[..portColon];
        if (host.StartsWith('[') && host.EndsWith(']'))
        {
            host = host[1..^1];
            if (!IPAddress.TryParse(host, out var v6) || v6.AddressFamily != AddressFamily.InterNetworkV6)
            {
                credentials = null;
                error = "bad IPv6 address in brackets";
                return false;
            }
        }
        else if (host.Contains(':', StringComparison.Ordinal) || Uri.CheckHostName(host) == UriHostNameType.Unknown)
        {
            credentials = null;
            error = "bad host name (IPv6 addresses go in brackets)";
            return false;
        }

        parent = new DnsEndPoint(host, port);
        return true;
    }

    /// <summary>Percent-decodes a URL's user or password as UTF-8; false for a bad escape or invalid UTF-8.</summary>
    private static bool TryUnescape(string s, out string value)
    {
        value = s;
        if (!s.Contains('%', StringComparison.Ordinal))
        {
            return true;
        }

        var bytes = new List<byte>(s.Length);
        var i = 0;
        while (i < s.Length)
        {
            var pct = s.IndexOf('%', i);
            var end = pct < 0 ? s.Length : pct;
            bytes.AddRange(Encoding.UTF8.GetBytes(s[i..end]));
            if (pct < 0)
            {
                break;
            }

            if (pct + 3 > s.Length || !byte.TryParse(s.AsSpan(pct + 1, 2), NumberStyles.AllowHexSpecifier,
                    CultureInfo.InvariantCulture, out var b))
            {
                return false;
            }

            bytes.Add(b);
            i = pct + 3;
        }

        try
        {
            value = new UTF8Encoding(false, true).GetString(bytes.ToArray());
            return true;
        }
        catch (DecoderFallbackException)
        {
            return false;
        }
    }

    private static void Rate(double bytesPerSecond, string name)
    {
        if (!double.IsFinite(bytesPerSecond) || bytesPerSecond < 0)
        {
            throw new ArgumentException($"{name} must be a finite number of bytes per second, 0 for none.", name);
        }
    }

    private static void Positive(TimeSpan t, string name)
    {
        if (t <= TimeSpan.Zero)
        {
            throw new ArgumentException($"{name} must be positive.", name);
        }
    }
}
