using System.Net;
using NatKit.Net;
using NatKit.Traversal.Ice;
using NatKit.Traversal.Identity;

namespace NatKit.Traversal;

/// <summary>
/// A datagram path to one peer that a <see cref="TraversalNode"/> found: how it goes (<see cref="Path"/>), what
/// found it (<see cref="Method"/>), what it cost, and <see cref="Socket"/>, the application's datagrams to and from
/// the peer over the selected pair (uTP runs over it unchanged; it follows the pair from the relay to a direct path
/// when one starts to work later). Disposing it ends the ICE session and closes the sockets it opened for itself.
/// </summary>
public sealed class PeerConnection : IAsyncDisposable
{
    private readonly Func<ValueTask> _dispose;
    private int _disposed;

    internal PeerConnection(NodeId peer, bool initiator, IceTransport transport, IceCandidatePair pair, PathKind path,
        TraversalMethod method, TimeSpan timeToConnect, Func<long> probesSent, Func<ValueTask> dispose)
    {
        Peer = peer;
        Initiator = initiator;
        Transport = transport;
        Path = path;
        Method = method;
        TimeToConnect = timeToConnect;
        SelectedPair = pair;
        _probesSent = probesSent;
        _dispose = dispose;
    }

    private readonly Func<long> _probesSent;

    /// <summary>The peer's node id (verified by the rendezvous: its key hashes to it and it signed its session).</summary>
    public NodeId Peer { get; }

    /// <summary>True on the side that called <see cref="TraversalNode.ConnectAsync"/>.</summary>
    public bool Initiator { get; }

    /// <summary>The ICE transport under the connection (its agent's statistics, the selected pair now).</summary>
    public IceTransport Transport { get; }

    /// <summary>How the first selected pair goes.</summary>
    public PathKind Path { get; }

    /// <summary>What found the first selected pair.</summary>
    public TraversalMethod Method { get; }

    /// <summary>From the connect (or the offer's arrival) to the first selected pair.</summary>
    public TimeSpan TimeToConnect { get; }

    /// <summary>The first selected pair.</summary>
    public IceCandidatePair SelectedPair { get; }

    /// <summary>The round trip of the selected pair's last check.</summary>
    public TimeSpan Rtt => (Transport.SelectedPair ?? SelectedPair).Rtt ?? TimeSpan.Zero;

    /// <summary>Connectivity checks, retransmissions and hole-punching probes this side sent so far.</summary>
    public long ProbesSent => _probesSent();

    /// <summary>The peer's address as <see cref="Socket"/> reports it.</summary>
    public IPEndPoint RemoteEndPoint => SelectedPair.Remote.EndPoint;

    /// <summary>Datagrams to and from the peer over the selected pair.</summary>
    public IDatagramSocket Socket => Transport.DataSocket;

    public override string ToString() =>
        $"{Peer}: {Path} by {Method} in {TimeToConnect.TotalMilliseconds:0} ms ({SelectedPair})";

    public ValueTask DisposeAsync() =>
        Interlocked.Exchange(ref _disposed, 1) == 0 ? _dispose() : ValueTask.CompletedTask;
}
