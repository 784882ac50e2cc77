using System.Net;
using NatKit.Traversal.Identity;
using NatKit.Utp;

namespace NatKit.Traversal.Peer;

/// <summary>One row of the links table: a path to a peer the traversal found, as it is now.</summary>
/// <param name="Peer">The node (verified by the rendezvous, then by TLS on every pipe).</param>
/// <param name="Path">How its datagrams travel.</param>
/// <param name="Method">What found the path.</param>
/// <param name="RemoteEndPoint">The peer's candidate the path goes to.</param>
/// <param name="Rtt">The last check's round trip.</param>
/// <param name="Initiator">True when this node connected (false: the peer did).</param>
public sealed record PeerLinkInfo(NodeId Peer, PathKind Path, TraversalMethod Method, IPEndPoint RemoteEndPoint,
    TimeSpan Rtt, bool Initiator);

/// <summary>A peer connection and the uTP endpoint over it: every pipe to or from that peer is a uTP stream on
/// <see cref="Utp"/>, each with its own TLS session.</summary>
internal sealed class PeerLink(PeerConnection connection, UtpSocket utp) : IAsyncDisposable
{
    private int _disposed;

    public NodeId Peer => connection.Peer;

    public PeerConnection Connection => connection;

    public UtpSocket Utp => utp;

    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    public PeerLinkInfo Snapshot() => new(connection.Peer, connection.Path, connection.Method,
        connection.RemoteEndPoint, connection.Rtt, connection.Initiator);

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await utp.DisposeAsync();
        await connection.DisposeAsync();
    }
}
