using System.Net.Sockets;

namespace NatKit.Net;

/// <summary>A network operation failed for a reason the caller should handle (address in use, refused, ...).
/// <see cref="Error"/> carries the socket error so the real network and the lab report failures alike.</summary>
public sealed class NetworkException : IOException
{
    public NetworkException(SocketError error, string message, Exception? inner = null)
        : base(message, inner)
    {
        Error = error;
    }

    public NetworkException()
        : this(SocketError.SocketError, "network error")
    {
    }

    public NetworkException(string message)
        : this(SocketError.SocketError, message)
    {
    }

    public NetworkException(string message, Exception inner)
        : this(SocketError.SocketError, message, inner)
    {
    }

    public SocketError Error { get; }
}
