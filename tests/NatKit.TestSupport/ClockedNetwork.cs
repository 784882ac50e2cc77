using System.Net;
using NatKit.Net;

namespace NatKit.TestSupport;

/// <summary>The real network on loopback with a test's clock: real sockets, virtual time for the code under
/// test (its timers and timestamps come from <see cref="TimeProvider"/>).</summary>
public sealed class ClockedNetwork(TimeProvider time) : INetwork
{
    public TimeProvider TimeProvider => time;

    public IReadOnlyList<IPAddress> LocalAddresses => SystemNetwork.Instance.LocalAddresses;

    public ValueTask<IDatagramSocket> BindUdpAsync(IPEndPoint localEndPoint, CancellationToken cancellationToken = default) =>
        SystemNetwork.Instance.BindUdpAsync(localEndPoint, cancellationToken);

    public ValueTask<IStreamListener> ListenTcpAsync(IPEndPoint localEndPoint, int backlog = 512,
        CancellationToken cancellationToken = default) =>
        SystemNetwork.Instance.ListenTcpAsync(localEndPoint, backlog, cancellationToken);

    public ValueTask<IStreamConnection> ConnectTcpAsync(IPEndPoint remoteEndPoint, IPEndPoint? localEndPoint = null,
        CancellationToken cancellationToken = default) =>
        SystemNetwork.Instance.ConnectTcpAsync(remoteEndPoint, localEndPoint, cancellationToken);
}
