namespace NatKit.Net;

/// <summary>
/// Optional capability of an <see cref="IStreamConnection"/>: close at once with a reset (TCP RST), dropping any
/// bytes still queued for the peer. A server cutting off a peer that will not read asks for this, so the kernel
/// does not go on holding (and retrying) the unsent bytes after the close. <see cref="SystemNetwork"/>'s TCP
/// connections offer it; where it is missing, disposing the connection is the fallback.
/// </summary>
public interface IStreamAbort
{
    /// <summary>Resets and closes the connection; pending reads and writes fail. Idempotent.</summary>
    void Abort();
}
