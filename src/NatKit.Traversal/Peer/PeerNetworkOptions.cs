using System.Net;
using NatKit.Net;
using NatKit.Traversal.Identity;
using NatKit.Turn.Protocol;
using NatKit.Utp;

namespace NatKit.Traversal.Peer;

/// <summary>A local TCP service this node lets chosen peers reach through a pipe (the `ssh -R` half: the service
/// stays where it is, peers forward a port of theirs to it by <see cref="Name"/>).</summary>
/// <param name="Name">What peers ask for (1 to 64 bytes of UTF-8).</param>
/// <param name="Target">Where the node connects for each pipe (usually a loopback port).</param>
public sealed record ExposedService(string Name, IPEndPoint Target)
{
    /// <summary>The peers allowed; null: every peer the node lets in.</summary>
    public IReadOnlyList<NodeId>? Peers { get; init; }

    public bool Allows(NodeId peer) => Peers is null || Peers.Contains(peer);
}

/// <summary>A local TCP port whose connections are piped to a service a peer exposes (the `ssh -L` half).</summary>
/// <param name="Listen">The local TCP endpoint (port 0: any; <see cref="PeerNetwork.Forwards"/> says which).</param>
/// <param name="Peer">The node that exposes the service.</param>
/// <param name="Service">The service's name on that node.</param>
public sealed record PortForward(IPEndPoint Listen, NodeId Peer, string Service)
{
    /// <summary>Where the peer's node listens, when known: its uTP server is dialed there straight, without the
    /// rendezvous (the pin on <see cref="Peer"/> still holds). Null: through the traversal service.</summary>
    public IPEndPoint? Address { get; init; }
}

/// <summary>How a <see cref="PeerNetwork"/> runs. <see cref="Validate"/> names the first bad field.</summary>
public sealed record PeerNetworkOptions
{
    /// <summary>The reference's address for the uTP server: every interface, port 1315.</summary>
    public static readonly IPEndPoint DefaultListen = new(IPAddress.Any, 1315);

    /// <summary>Bytes in a service name at most.</summary>
    public const int MaxServiceName = 64;

    /// <summary>The UDP endpoint the uTP server binds and the traversal shares.</summary>
    public IPEndPoint Listen { get; init; } = DefaultListen;

    /// <summary>Rendezvous, STUN and TURN servers and the traversal's knobs.</summary>
    public required TraversalOptions Traversal { get; init; }

    /// <summary>Let in only the nodes <see cref="PeerNetworkHost.GetKnownNodes"/> lists (on by default).</summary>
    public bool KnownPeersOnly { get; init; } = true;

    /// <summary>Local services peers may reach.</summary>
    public IReadOnlyList<ExposedService> Expose { get; init; } = [];

    /// <summary>Local ports piped to peers' services.</summary>
    public IReadOnlyList<PortForward> Forward { get; init; } = [];

    /// <summary>uTP's defaults for a node: BEP 29's and libutp's, except that a connection to a peer on a loopback
    /// address sends 32 KiB datagrams (<see cref="UtpOptions.LoopbackMaxDatagramSize"/>; both ends are NatKit nodes).</summary>
    public static UtpOptions DefaultUtp { get; } = UtpOptions.Default with { LoopbackMaxDatagramSize = 32 * 1024 };

    /// <summary>uTP's knobs for every connection of the node.</summary>
    public UtpOptions Utp { get; init; } = DefaultUtp;

    /// <summary>The largest uTP datagram on a relayed link whose every leg stays on this host: the TURN server is
    /// on a loopback address and so is the peer's end (uTP's <see cref="UtpOptions.LoopbackMaxDatagramSize"/>
    /// rule). The default is NatKit's TURN server's own cap (<see cref="TurnLimits.DefaultMaxRelayPayload"/>, 4096
    /// bytes), about three times fewer datagrams through the relay than 1400-byte ones; set it to at most the
    /// server's <c>MaxRelayPayload</c> (a larger datagram is dropped there), or 0 for
    /// <see cref="UtpOptions.MaxDatagramSize"/>. A relay on any other address always keeps
    /// <see cref="UtpOptions.MaxDatagramSize"/> (1400 bytes: what real paths carry).</summary>
    public int RelayLoopbackMaxDatagramSize { get; init; } = TurnLimits.DefaultMaxRelayPayload;

    /// <summary>Kernel receive and send buffers asked for the node's UDP socket (SO_RCVBUF/SO_SNDBUF, where the network
    /// offers <see cref="ISocketBuffers"/>; the kernel caps them at net.core.rmem_max/wmem_max); 0 keeps the system's
    /// default. Every pipe's datagrams queue there while the process is busy: the default 208 KB holds a few
    /// milliseconds of a fast pipe, and what overflows is lost and sent again.</summary>
    public int SocketBufferSize { get; init; } = 4 << 20;

    /// <summary>How long a pipe's TLS handshake and service request may take.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>Each pipe direction's copy buffer (the most bytes in flight inside the process per direction).</summary>
    public int PipeBufferSize { get; init; } = 64 * 1024;

    /// <summary>Pipes at once at most (a stranger's pipes count too: a limit on what others make us allocate).</summary>
    public int MaxPipes { get; init; } = 1024;

    public PeerNetworkOptions Validate()
    {
        ArgumentNullException.ThrowIfNull(Listen, nameof(Listen));
        ArgumentNullException.ThrowIfNull(Traversal, nameof(Traversal));
        ArgumentNullException.ThrowIfNull(Utp, nameof(Utp));
        Traversal.Validate();
        Utp.Validate();
        if (HandshakeTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(HandshakeTimeout), HandshakeTimeout,
                $"{nameof(HandshakeTimeout)}: more than 0");
        }

        if (PipeBufferSize is < 1024 or > 16 << 20)
        {
            throw new ArgumentOutOfRangeException(nameof(PipeBufferSize), PipeBufferSize,
                $"{nameof(PipeBufferSize)}: 1024 to 16 MiB");
        }

        if (SocketBufferSize < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(SocketBufferSize), SocketBufferSize,
                $"{nameof(SocketBufferSize)}: 0 (the system's default) or more");
        }

        if (RelayLoopbackMaxDatagramSize is not 0 and (< 150 or > 65507) ||
            Utp.ReceiveBufferSize < 4 * RelayLoopbackMaxDatagramSize)
        {
            throw new ArgumentOutOfRangeException(nameof(RelayLoopbackMaxDatagramSize), RelayLoopbackMaxDatagramSize,
                $"{nameof(RelayLoopbackMaxDatagramSize)}: 0, or 150 to 65507 bytes and at most a quarter of Utp.ReceiveBufferSize");
        }

        if (MaxPipes < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxPipes), MaxPipes, $"{nameof(MaxPipes)}: at least 1");
        }

        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var e in Expose)
        {
            CheckServiceName(e.Name, nameof(Expose));
            ArgumentNullException.ThrowIfNull(e.Target, nameof(Expose));
            if (!names.Add(e.Name))
            {
                throw new ArgumentException($"{nameof(Expose)}: service {e.Name} is exposed twice", nameof(Expose));
            }
        }

        foreach (var f in Forward)
        {
            ArgumentNullException.ThrowIfNull(f.Listen, nameof(Forward));
            CheckServiceName(f.Service, nameof(Forward));
            if (f.Peer.IsEmpty)
            {
                throw new ArgumentException($"{nameof(Forward)}: {f.Listen} names no peer", nameof(Forward));
            }
        }

        return this;
    }

    private static void CheckServiceName(string? name, string field)
    {
        if (string.IsNullOrEmpty(name) || System.Text.Encoding.UTF8.GetByteCount(name) > MaxServiceName)
        {
            throw new ArgumentException($"{field}: a service name is 1 to {MaxServiceName} bytes (got '{name}')",
                field);
        }
    }
}
