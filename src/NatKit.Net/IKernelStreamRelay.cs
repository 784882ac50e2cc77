namespace NatKit.Net;

/// <summary>
/// Optional capability of an <see cref="IStreamConnection"/>: relay bytes both ways between it and another
/// connection without passing them through the process. <see cref="SystemNetwork"/>'s connections on Linux do it
/// with splice(2) on a shared epoll thread; a proxy's tunnel then costs the kernel's work and no copy of its own.
/// </summary>
public interface IKernelStreamRelay
{
    /// <summary>Starts relaying between this connection and <paramref name="other"/>.</summary>
    /// <param name="other">The other connection (of the same network).</param>
    /// <param name="moved">Called on the relay's thread each time bytes were delivered: (true when they came from
    /// this connection, how many). It must be quick and must not block or throw.</param>
    /// <param name="cancellationToken">Ends the relay; the task is then canceled and the connections stay open.</param>
    /// <returns>Null when this pair cannot be relayed in the kernel (the caller copies). Otherwise a task that
    /// completes when both directions reached end-of-stream (each passed on as a half-close), and faults with an
    /// <see cref="IOException"/> when either connection fails.</returns>
    Task? TryRelay(IStreamConnection other, Action<bool, long> moved, CancellationToken cancellationToken);
}
