using System.Net;

namespace NatKit.Net;

/// <summary>A connected TCP stream. Disposing it closes the connection.</summary>
public interface IStreamConnection : IAsyncDisposable
{
    Stream Stream { get; }

    IPEndPoint LocalEndPoint { get; }

    IPEndPoint RemoteEndPoint { get; }

    /// <summary>Half-close: no more bytes will be written (TCP FIN); reading goes on.</summary>
    void ShutdownSend();
}

/// <summary>A TCP listener. Disposing it stops accepting; accepted connections live on.</summary>
public interface IStreamListener : IAsyncDisposable
{
    IPEndPoint LocalEndPoint { get; }

    /// <exception cref="ObjectDisposedException">The listener was closed.</exception>
    ValueTask<IStreamConnection> AcceptAsync(CancellationToken cancellationToken = default);
}
