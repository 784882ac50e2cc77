using System.Text;

namespace NatKit.Traversal.Peer;

/// <summary>The answer a node gives to a pipe request.</summary>
public enum PipeStatus : byte
{
    /// <summary>Connected to the service: the pipe carries bytes from now on.</summary>
    Ok = 0,

    /// <summary>The node exposes no service of that name.</summary>
    UnknownService = 1,

    /// <summary>The service is not exposed to the asking peer.</summary>
    NotAllowed = 2,

    /// <summary>The node could not connect to the service's target.</summary>
    TargetUnreachable = 3,

    /// <summary>The request was malformed (version, name length).</summary>
    BadRequest = 4,

    /// <summary>The node has <see cref="PeerNetworkOptions.MaxPipes"/> pipes already.</summary>
    TooManyPipes = 5,
}

/// <summary>A pipe the peer refused (its <see cref="Status"/> says why), or whose peer could not be reached or
/// authenticated.</summary>
public sealed class PeerPipeException : Exception
{
    public PeerPipeException()
    {
    }

    public PeerPipeException(string message) : base(message)
    {
    }

    public PeerPipeException(string message, Exception inner) : base(message, inner)
    {
    }

    public PeerPipeException(PipeStatus status, string message) : base(message)
    {
        Status = status;
    }

    /// <summary>The peer's answer, or null when there was none (no path, no uTP, TLS refused).</summary>
    public PipeStatus? Status { get; }
}

/// <summary>
/// The two messages at the start of a pipe, inside TLS: the request (version 1, the service name's length in one
/// byte, the name in UTF-8) and the answer (a <see cref="PipeStatus"/>, a reason's length in one byte, the reason).
/// Bytes from the peer are checked before use and never throw out of <see cref="ReadRequestAsync"/>.
/// </summary>
internal static class PipeRequest
{
    public const byte Version = 1;

    public static async Task WriteRequestAsync(Stream stream, string service, CancellationToken cancellationToken)
    {
        var name = Encoding.UTF8.GetBytes(service);
        var message = new byte[2 + name.Length];
        message[0] = Version;
        message[1] = (byte)name.Length;
        name.CopyTo(message, 2);
        await stream.WriteAsync(message, cancellationToken);
    }

    /// <summary>The service name asked for, or null with the status to answer (a bad version or length).</summary>
    public static async Task<(string? Service, PipeStatus Status)> ReadRequestAsync(Stream stream,
        CancellationToken cancellationToken)
    {
        var head = new byte[2];
        await stream.ReadExactlyAsync(head, cancellationToken);
        if (head[0] != Version || head[1] is 0 or > PeerNetworkOptions.MaxServiceName)
        {
            return (null, PipeStatus.BadRequest);
        }

        var name = new byte[head[1]];
        await stream.ReadExactlyAsync(name, cancellationToken);
        try
        {
            return (new UTF8Encoding(false, true).GetString(name), PipeStatus.Ok);
        }
        catch (DecoderFallbackException)
        {
            return (null, PipeStatus.BadRequest);
        }
    }

    public static async Task WriteAnswerAsync(Stream stream, PipeStatus status, string reason,
        CancellationToken cancellationToken)
    {
        var text = Encoding.UTF8.GetBytes(reason);
        var length = Math.Min(text.Length, 255);
        var message = new byte[2 + length];
        message[0] = (byte)status;
        message[1] = (byte)length;
        text.AsSpan(0, length).CopyTo(message.AsSpan(2));
        await stream.WriteAsync(message, cancellationToken);
    }

    public static async Task<(PipeStatus Status, string Reason)> ReadAnswerAsync(Stream stream,
        CancellationToken cancellationToken)
    {
        var head = new byte[2];
        await stream.ReadExactlyAsync(head, cancellationToken);
        var reason = new byte[head[1]];
        await stream.ReadExactlyAsync(reason, cancellationToken);
        return ((PipeStatus)head[0], Encoding.UTF8.GetString(reason));
    }
}
