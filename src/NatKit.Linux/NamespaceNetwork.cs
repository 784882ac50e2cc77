using System.Net;
using NatKit.Net;

namespace NatKit.Linux;

/// <summary>
/// The real network as seen from inside a named network namespace: every socket is created on a thread that has
/// joined the namespace (a socket belongs to the namespace it was made in), then used from anywhere. Lets any
/// NatKit protocol (STUN discovery, hole punching) run unchanged on a host of a namespace topology.
/// </summary>
public sealed class NamespaceNetwork : INetwork, IMulticastNetwork
{
    public NamespaceNetwork(string networkNamespace)
    {
        Namespace = networkNamespace ?? throw new ArgumentNullException(nameof(networkNamespace));
    }

    public string Namespace { get; }

    public TimeProvider TimeProvider => TimeProvider.System;

    /// <summary>Not known from outside the namespace: empty (ask <c>ip -n NS addr</c>).</summary>
    public IReadOnlyList<IPAddress> LocalAddresses => [];

    public ValueTask<IDatagramSocket> BindUdpAsync(IPEndPoint localEndPoint,
        CancellationToken cancellationToken = default) =>
        NetworkNamespace.RunInside(Namespace, () => SystemNetwork.Instance.BindUdpAsync(localEndPoint, cancellationToken));

    public ValueTask<IMulticastDatagramSocket> BindMulticastUdpAsync(IPEndPoint localEndPoint,
        CancellationToken cancellationToken = default) =>
        NetworkNamespace.RunInside(Namespace,
            () => SystemNetwork.Instance.BindMulticastUdpAsync(localEndPoint, cancellationToken));

    public ValueTask<IStreamListener> ListenTcpAsync(IPEndPoint localEndPoint, int backlog = 512,
        CancellationToken cancellationToken = default) =>
        NetworkNamespace.RunInside(Namespace,
            () => SystemNetwork.Instance.ListenTcpAsync(localEndPoint, backlog, cancellationToken));

    /// <summary>The socket is made (synchronously, inside the namespace) before the connect first waits.</summary>
    public ValueTask<IStreamConnection> ConnectTcpAsync(IPEndPoint remoteEndPoint, IPEndPoint? localEndPoint = null,
        CancellationToken cancellationToken = default) =>
        NetworkNamespace.RunInside(Namespace,
            () => SystemNetwork.Instance.ConnectTcpAsync(remoteEndPoint, localEndPoint, cancellationToken));
}
