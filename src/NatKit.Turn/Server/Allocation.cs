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

    /// <summary>When it was registered and answered (a timestamp of the server's clock), or null before.</summary>
    public long? CreatedAt { get; set; }

    public ClientLink Client { get; }

    public string Username { get; }

    /// <summary>The long-term key the allocation was made with (responses are signed with it).</summary>
    public byte[] Key { get; }

    public StunPasswordAlgorithm Algorithm { get; }

    public PeerBindings Bindings { get; }

    public TokenBucket Bucket;

    /// <summary>The relay sockets, bound and served by the server's edge; the request handler never uses them.</summary>
    public IDatagramSocket? RelayV4 { get; set; }

    public IDatagramSocket? RelayV6 { get; set; }

    /// <summary>The relay ports taken from the ledger's ranges (0: none in that family), released with the
    /// allocation.</summary>
    public int RelayPortV4 { get; set; }

    public int RelayPortV6 { get; set; }

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

    /// <summary>The relay port this allocation keeps back for a later one (EVEN-PORT with the R bit, RFC 8656
    /// section 14.6) while the reservation lives; it goes when this allocation does. Guarded by the server's gate.</summary>
    public Reservation? Reservation { get; set; }

    /// <summary>A quota slot taken for the reservation this allocation is still making. Guarded by the server's
    /// gate.</summary>
    public bool ReservationSlotPending { get; set; }

    /// <summary>The relay sockets' tokens in the server's poller (0: not polled; an async loop serves it).</summary>
    public long PollTokenV4;

    public long PollTokenV6;

    /// <summary>1 once the server's edge has closed the relays (<c>TurnServer.CloseRelays</c>).</summary>
    public int EdgeClosed;

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

    /// <summary>Whether the allocation relays to <paramref name="peer"/>'s family (RFC 8656 section 9.1: else 443).</summary>
    public bool RelaysFamilyOf(IPAddress peer) =>
        (Policy.IpKey.Normalized(peer).IsV4 ? RelayPortV4 : RelayPortV6) != 0;
}

/// <summary>
/// A relay port kept back by an Allocate with EVEN-PORT's R bit (RFC 8656 section 14.6), claimed by a later
/// Allocate with its RESERVATION-TOKEN within <see cref="Protocol.TurnLimits.ReservationLifetime"/>. It counts
/// against its user's quota and the server's total like an allocation, and ends with the allocation that made
/// it (<see cref="Owner"/>).
/// </summary>
internal sealed record Reservation(ulong Token, byte Family, int Port, string Username, Allocation Owner)
{
    /// <summary>What holds the port meanwhile (the edge's socket bound to it), so no other program can take it
    /// before the claim: handed to the claiming allocation, disposed when the reservation is dropped.</summary>
    public IDatagramSocket? Hold { get; init; }
}
