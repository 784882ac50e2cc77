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

/// <summary>Collects formatted log lines by event id.</summary>
public sealed class ListLogger : Microsoft.Extensions.Logging.ILogger
{
    private readonly System.Collections.Concurrent.ConcurrentQueue<(int EventId, string Line)> _lines = new();

    public IReadOnlyList<string> Lines(int eventId) => _lines.Where(l => l.EventId == eventId).Select(l => l.Line).ToList();

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => true;

    public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId,
        TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
        _lines.Enqueue((eventId.Id, formatter(state, exception)));
}
