using System.Net;
using System.Security.Cryptography.X509Certificates;
using NatKit.Net;
using NatKit.Turn.Policy;
using NatKit.Turn.Protocol;

namespace NatKit.Turn.Server;

/// <summary>
/// Everything a TURN server is told. Defaults are safe for the open internet except where noted: loopback
/// listeners, deny-by-default peer policy, lifetimes capped, limits on allocations, permissions, channels,
/// bandwidth and unauthenticated requests. <see cref="Validate"/> names the bad field.
/// </summary>
public sealed record TurnServerOptions
{
    /// <summary>UDP listeners. Default: 127.0.0.1:3478.</summary>
    public IReadOnlyList<IPEndPoint> UdpListen { get; init; } = [new(IPAddress.Loopback, 3478)];

    /// <summary>TCP listeners (RFC 8489 framing, ChannelData padded to 4 bytes). Default: none.</summary>
    public IReadOnlyList<IPEndPoint> TcpListen { get; init; } = [];

    /// <summary>TLS-over-TCP listeners; need <see cref="Certificate"/>. Default: none.</summary>
    public IReadOnlyList<IPEndPoint> TlsListen { get; init; } = [];

    /// <summary>The certificate (with private key) for <see cref="TlsListen"/>.</summary>
    public X509Certificate2? Certificate { get; init; }

    /// <summary>Where IPv4 relay sockets bind. Default: 127.0.0.1.</summary>
    public IPAddress RelayAddress { get; init; } = IPAddress.Loopback;

    /// <summary>Where IPv6 relay sockets bind (REQUESTED-ADDRESS-FAMILY / ADDITIONAL-ADDRESS-FAMILY); null
    /// disables IPv6 relays (440).</summary>
    public IPAddress? RelayAddressV6 { get; init; }

    /// <summary>The IPv4 address put in XOR-RELAYED-ADDRESS when the relay binds a wildcard or sits behind a
    /// 1:1 NAT (coturn's --external-ip). Default: <see cref="RelayAddress"/>.</summary>
    public IPAddress? ExternalAddress { get; init; }

    /// <summary>Relay port range (RFC 8656 recommends 49152-65535).</summary>
    public int MinPort { get; init; } = 49152;

    public int MaxPort { get; init; } = 65535;

    public string Realm { get; init; } = "natkit";

    /// <summary>Long-term credential users: name to password.</summary>
    public IReadOnlyDictionary<string, string> Users { get; init; } = new Dictionary<string, string>();

    /// <summary>TURN REST API shared secret; when set, usernames are "expiry:user" and passwords derived.</summary>
    public string? SharedSecret { get; init; }

    public PeerPolicy Policy { get; init; } = PeerPolicy.Default;

    public TimeSpan DefaultLifetime { get; init; } = TurnLimits.DefaultAllocationLifetime;

    /// <summary>The cap on a requested LIFETIME (RFC 8656 section 7.2: 3600 s recommended).</summary>
    public TimeSpan MaxLifetime { get; init; } = TimeSpan.FromSeconds(3600);

    public TimeSpan NonceLifetime { get; init; } = TimeSpan.FromMinutes(10);

    public int MaxAllocations { get; init; } = 50_000;

    public int MaxAllocationsPerUser { get; init; } = 1000;

    public int MaxPermissionsPerAllocation { get; init; } = 128;

    public int MaxChannelsPerAllocation { get; init; } = 128;

    /// <summary>Relayed bytes per second per allocation, both directions together; 0 for no limit.</summary>
    public long BandwidthBytesPerSecond { get; init; } = 10_000_000;

    /// <summary>Requests per second one source address may make without valid credentials; beyond it they go
    /// unanswered. 0 for no limit.</summary>
    public int UnauthenticatedRequestsPerSecond { get; init; } = 100;

    /// <summary>The largest payload relayed, in both directions: a datagram from a peer, and the DATA of a Send
    /// indication or ChannelData from a client; larger ones are dropped (natkit.turn.drops reason=too_large).
    /// Each allocation holds a receive buffer this size, so it sets the memory an allocation costs.</summary>
    public int MaxRelayPayload { get; init; } = TurnLimits.DefaultMaxRelayPayload;

    public string Software { get; init; } = "NatKit TURN";

    /// <summary>Most TCP and TLS client connections held at once, both listeners together; a connection over it
    /// is closed as soon as it is accepted (existing ones go on). Each costs a 64 KB frame buffer.</summary>
    public int MaxTcpConnections { get; init; } = 1024;

    /// <summary>Most TCP and TLS client connections from one source IP address, so a single host cannot take
    /// every slot of <see cref="MaxTcpConnections"/>. Raise it for many clients behind one NAT address.</summary>
    public int MaxTcpConnectionsPerAddress { get; init; } = 128;

    /// <summary>Time a new TCP or TLS connection has to finish its TLS handshake and its first complete, valid
    /// STUN message; closed otherwise.</summary>
    public TimeSpan TcpHandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>A TCP or TLS connection without a live allocation is closed after this long with no complete,
    /// valid STUN message (counted from the last one, or from the end of its allocation). A connection that
    /// carries a live allocation is never closed by it: the allocation's lifetime governs.</summary>
    public TimeSpan TcpIdleTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Kernel receive and send buffer asked for on each UDP listening socket, which carries every UDP
    /// client's traffic (where the network offers <see cref="NatKit.Net.ISocketBuffers"/>; capped by the kernel).</summary>
    public int ListenSocketBufferBytes { get; init; } = 4 << 20;

    /// <summary>Kernel receive and send buffer asked for on each relay socket (0: the system's default, 208 KB on
    /// Linux). A peer's burst waits there until a poller thread relays it; the default held about 90 datagrams of
    /// 1400 bytes, and a uTP window through the relay overflowed it whenever the relay threads were not scheduled
    /// at once (loss, retransmission, a halved window). A cap, not a reservation: an idle relay holds nothing.</summary>
    public int RelaySocketBufferBytes { get; init; } = 1 << 20;

    /// <summary>Stops start-up with one sentence naming the bad field.</summary>
    public void Validate()
    {
        static void Fail(string message) => throw new ArgumentException(message);

        if (UdpListen.Count + TcpListen.Count + TlsListen.Count == 0)
        {
            Fail("TURN server needs at least one listen address (UdpListen, TcpListen or TlsListen).");
        }

        if (TlsListen.Count > 0 && Certificate is null)
        {
            Fail("TlsListen needs a Certificate.");
        }

        if (RelaySocketBufferBytes < 0)
        {
            Fail($"RelaySocketBufferBytes ({RelaySocketBufferBytes}) must be 0 (the system's default) or more.");
        }

        if (MinPort < 1 || MaxPort > 65535 || MinPort > MaxPort)
        {
            Fail($"relay port range MinPort..MaxPort ({MinPort}..{MaxPort}) must lie within 1..65535.");
        }

        if (Users.Count == 0 && SharedSecret is null)
        {
            Fail("TURN server needs Users or a SharedSecret: an open relay is not offered.");
        }

        if (string.IsNullOrEmpty(Realm) || Realm.Length > 127)
        {
            Fail("Realm must be 1-127 characters.");
        }

        if (DefaultLifetime <= TimeSpan.Zero || MaxLifetime < DefaultLifetime)
        {
            Fail("MaxLifetime must be at least DefaultLifetime, and both positive.");
        }

        if (NonceLifetime <= TimeSpan.Zero)
        {
            Fail("NonceLifetime must be positive.");
        }

        if (MaxAllocations < 1 || MaxAllocationsPerUser < 1 || MaxPermissionsPerAllocation < 1 ||
            MaxChannelsPerAllocation < 1)
        {
            Fail("MaxAllocations, MaxAllocationsPerUser, MaxPermissionsPerAllocation and MaxChannelsPerAllocation must be positive.");
        }

        TcpConnectionLimits.Validate(MaxTcpConnections, MaxTcpConnectionsPerAddress,
            TcpHandshakeTimeout, TcpIdleTimeout);

        if (MaxRelayPayload is < 548 or > 65507)
        {
            Fail("MaxRelayPayload must be 548-65507 bytes.");
        }

        if (RelayAddress.AddressFamily != System.Net.Sockets.AddressFamily.InterNetwork)
        {
            Fail("RelayAddress must be an IPv4 address (RelayAddressV6 is the IPv6 one).");
        }

        if (RelayAddressV6 is not null && RelayAddressV6.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6)
        {
            Fail("RelayAddressV6 must be an IPv6 address.");
        }
    }
}
