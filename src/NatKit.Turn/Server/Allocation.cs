using System.Net;
using NatKit.Net;
using NatKit.Stun;

namespace NatKit.Turn.Server;

/// <summary>
/// One allocation (RFC 8656 section 2.2): the client it belongs to, its relay sockets (IPv4, IPv6 or both),
/// its permissions and channels, lifetime and bandwidth bucket. <see cref="Gate"/> guards the mutable state;
/// the relay loops and the request handlers take it briefly.
/// </summary>
internal sealed class Allocation
{
    public Allocation(ClientLink client, string username, byte[] key, StunPasswordAlgorithm algorithm,
        PeerBindings bindings, TokenBucket bucket)
    {
        Client = client;
        Username = username;
        Key = key;
        Algorithm = algorithm;
        Bindings = bindings;
        Bucket = bucket;
    }

    public Lock Gate { get; } = new();

    public ClientLink Client { get; }

    public string Username { get; }

    /// <summary>The long-term key the allocation was made with (responses are signed with it).</summary>
    public byte[] Key { get; }

    public StunPasswordAlgorithm Algorithm { get; }

    public PeerBindings Bindings { get; }

    public TokenBucket Bucket;

    public IDatagramSocket? RelayV4 { get; set; }

    public IDatagramSocket? RelayV6 { get; set; }

    /// <summary>The relayed addresses as announced (the external address for IPv4).</summary>
    public StunAddress RelayedV4 { get; set; }

    public StunAddress RelayedV6 { get; set; }

    /// <summary>Timestamp (TimeProvider ticks) after which the allocation is gone.</summary>
    public long Expires { get; set; }

    public bool Closed { get; set; }

    /// <summary>The Allocate transaction that made this allocation and the response sent, so a retransmission
    /// gets the same answer rather than 437 (RFC 8656 section 7.2).</summary>
    public StunTransactionId AllocateTransaction { get; set; }

    public byte[]? AllocateResponse { get; set; }

    public CancellationTokenSource Stop { get; } = new();

    /// <summary>The relay sockets' tokens in the server's poller (0: not polled; an async loop serves it).</summary>
    public long PollTokenV4;

    public long PollTokenV6;

    private const int MaxPeerEndPoints = 64;
    private Dictionary<StunAddress, IPEndPoint>? _peerEndPoints;

    /// <summary>The endpoint for a peer address a Send indication names, made once per peer and reused, so a
    /// client that relays without a channel costs no allocation per packet. Bounded: starts over when full.
    /// Call under <see cref="Gate"/>.</summary>
    public IPEndPoint PeerEndPoint(StunAddress address, Func<StunAddress, IPEndPoint> make)
    {
        _peerEndPoints ??= [];
        if (!_peerEndPoints.TryGetValue(address, out var peer))
        {
            if (_peerEndPoints.Count >= MaxPeerEndPoints)
            {
                _peerEndPoints.Clear();
            }

            peer = make(address);
            _peerEndPoints[address] = peer;
        }

        return peer;
    }

    public IDatagramSocket? RelayFor(IPAddress peer) =>
        Policy.IpKey.Normalized(peer).IsV4 ? RelayV4 : RelayV6;
}
