using System.Net;

namespace NatKit.Proxy;

/// <summary>
/// How the proxy behaves. The defaults are the safe ones: loopback listener, clients only from loopback and
/// private LANs, CONNECT only to port 443, no loopback destinations, bounded headers, times and connections.
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

    /// <summary>Ports a SOCKS5 CONNECT or UDP datagram may reach; null means any.</summary>
    public IReadOnlySet<int>? SocksPorts { get; init; }

    /// <summary>Whether destinations on loopback, unspecified, link-local or multicast addresses are allowed.
    /// Off by default so clients cannot reach services bound to the proxy host itself.</summary>
    public bool AllowLoopbackDestinations { get; init; }

    /// <summary>"user:password" for Basic proxy authentication (HTTP 407, RFC 9110 11.7.1) and SOCKS5
    /// user/password (RFC 1929); null for none.</summary>
    public string? Credentials { get; init; }

    /// <summary>A parent proxy every HTTP request and CONNECT is sent through; null to go direct.</summary>
    public DnsEndPoint? Parent { get; init; }

    /// <summary>The most bytes a request or response head may have (HTTP 431 past it).</summary>
    public int MaxHeaderBytes { get; init; } = 32 * 1024;

    /// <summary>The most header fields a head may have.</summary>
    public int MaxHeaderCount { get; init; } = 128;

    /// <summary>The whole request head (or SOCKS handshake) must arrive within this, counted from the first
    /// byte (or from accept, for a connection's first request). Cuts off slow-header clients.</summary>
    public TimeSpan HeaderTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>A connection with no bytes moving (idle keep-alive, stalled body or tunnel) is closed after this.</summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromSeconds(60);

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

    /// <summary>The reserved origin-form path on the proxy port that serves the connection table as JSON to
    /// loopback clients.</summary>
    public string StatusPath { get; init; } = "/natkit/status";

    /// <summary>Resolves a host name; <see cref="Dns.GetHostAddressesAsync(string, CancellationToken)"/> by default.</summary>
    public Func<string, CancellationToken, Task<IPAddress[]>> Resolve { get; init; } = Dns.GetHostAddressesAsync;

    public static IReadOnlyList<IPNetwork> DefaultAllowedClients { get; } =
    [
        IPNetwork.Parse("127.0.0.0/8"), IPNetwork.Parse("::1/128"), IPNetwork.Parse("10.0.0.0/8"),
        IPNetwork.Parse("172.16.0.0/12"), IPNetwork.Parse("192.168.0.0/16"), IPNetwork.Parse("169.254.0.0/16"),
        IPNetwork.Parse("fc00::/7"), IPNetwork.Parse("fe80::/10"),
    ];

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

        foreach (var p in ConnectPorts)
        {
            if (p is < 1 or > 65535)
            {
                throw new ArgumentException($"ConnectPorts has an invalid port {p}.", nameof(ConnectPorts));
            }
        }

        if (!StatusPath.StartsWith('/'))
        {
            throw new ArgumentException("StatusPath must start with '/'.", nameof(StatusPath));
        }

        return this;
    }

    private static void Positive(TimeSpan t, string name)
    {
        if (t <= TimeSpan.Zero)
        {
            throw new ArgumentException($"{name} must be positive.", name);
        }
    }
}
