using System.Net;
using NatKit.Net;

namespace NatKit.Proxy.Tests.Support;

/// <summary>The real network with another clock: real loopback sockets, virtual time.</summary>
public sealed class ClockedNetwork(INetwork inner, TimeProvider time) : INetwork
{
    public TimeProvider TimeProvider => time;

    public IReadOnlyList<IPAddress> LocalAddresses => inner.LocalAddresses;

    public ValueTask<IDatagramSocket> BindUdpAsync(IPEndPoint localEndPoint, CancellationToken cancellationToken = default) =>
        inner.BindUdpAsync(localEndPoint, cancellationToken);

    public ValueTask<IStreamListener> ListenTcpAsync(IPEndPoint localEndPoint, int backlog = 512,
        CancellationToken cancellationToken = default) => inner.ListenTcpAsync(localEndPoint, backlog, cancellationToken);

    public ValueTask<IStreamConnection> ConnectTcpAsync(IPEndPoint remoteEndPoint, IPEndPoint? localEndPoint = null,
        CancellationToken cancellationToken = default) => inner.ConnectTcpAsync(remoteEndPoint, localEndPoint, cancellationToken);
}

/// <summary>The real network, refusing any connection that would leave loopback: fuzzed requests may name any
/// address, and none of them may be reached.</summary>
public sealed class LoopbackOnlyNetwork(INetwork inner) : INetwork
{
    public TimeProvider TimeProvider => inner.TimeProvider;

    public IReadOnlyList<IPAddress> LocalAddresses => inner.LocalAddresses;

    public ValueTask<IDatagramSocket> BindUdpAsync(IPEndPoint localEndPoint, CancellationToken cancellationToken = default) =>
        IPAddress.IsLoopback(localEndPoint.Address)
            ? inner.BindUdpAsync(localEndPoint, cancellationToken)
            : throw new NetworkException(System.Net.Sockets.SocketError.AccessDenied, "test: loopback only");

    public ValueTask<IStreamListener> ListenTcpAsync(IPEndPoint localEndPoint, int backlog = 512,
        CancellationToken cancellationToken = default) => inner.ListenTcpAsync(localEndPoint, backlog, cancellationToken);

    public ValueTask<IStreamConnection> ConnectTcpAsync(IPEndPoint remoteEndPoint, IPEndPoint? localEndPoint = null,
        CancellationToken cancellationToken = default) =>
        IPAddress.IsLoopback(remoteEndPoint.Address)
            ? inner.ConnectTcpAsync(remoteEndPoint, localEndPoint, cancellationToken)
            : throw new NetworkException(System.Net.Sockets.SocketError.ConnectionRefused, "test: loopback only");
}
