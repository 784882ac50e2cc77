using System.Net;
using NatKit.Net;

namespace NatKit.Proxy.Tests.Support;

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

/// <summary>The real network, but outgoing connections hide their socket behind a plain stream, so the proxy's
/// pool cannot see that an idle connection was closed and really sends the next request on it (the race every
/// keep-alive client meets when a server closes an idle connection just as a request goes out).</summary>
public sealed class OpaqueStreamNetwork(INetwork inner) : INetwork
{
    public TimeProvider TimeProvider => inner.TimeProvider;

    public IReadOnlyList<IPAddress> LocalAddresses => inner.LocalAddresses;

    public ValueTask<IDatagramSocket> BindUdpAsync(IPEndPoint localEndPoint, CancellationToken cancellationToken = default) =>
        inner.BindUdpAsync(localEndPoint, cancellationToken);

    public ValueTask<IStreamListener> ListenTcpAsync(IPEndPoint localEndPoint, int backlog = 512,
        CancellationToken cancellationToken = default) => inner.ListenTcpAsync(localEndPoint, backlog, cancellationToken);

    public async ValueTask<IStreamConnection> ConnectTcpAsync(IPEndPoint remoteEndPoint, IPEndPoint? localEndPoint = null,
        CancellationToken cancellationToken = default) =>
        new Opaque(await inner.ConnectTcpAsync(remoteEndPoint, localEndPoint, cancellationToken));

    private sealed class Opaque(IStreamConnection c) : IStreamConnection
    {
        public Stream Stream { get; } = new DelegatingStream(c.Stream);

        public IPEndPoint LocalEndPoint => c.LocalEndPoint;

        public IPEndPoint RemoteEndPoint => c.RemoteEndPoint;

        public void ShutdownSend() => c.ShutdownSend();

        public ValueTask DisposeAsync() => c.DisposeAsync();
    }

}

/// <summary>A stream that passes everything to another (not its disposal: the connection owns that), hiding what
/// the other is; tests override the calls they watch.</summary>
public class DelegatingStream(Stream inner) : Stream
{
    protected Stream Inner => inner;

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override void Flush() => inner.Flush();

    public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        inner.ReadAsync(buffer, cancellationToken);

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) =>
        inner.WriteAsync(buffer, cancellationToken);

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();
}
