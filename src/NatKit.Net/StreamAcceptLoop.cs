using System.Security.Authentication;

namespace NatKit.Net;

/// <summary>
/// The one accept loop of NatKit's stream servers (STUN and TURN over TCP/TLS, the proxy, the tunnel's endpoint),
/// so they all treat the same failures the same way:
/// <list type="bullet">
/// <item>the listener closed (<see cref="ObjectDisposedException"/>) or the stop token cancelled: the loop
/// ends;</item>
/// <item>one accept failed (<see cref="IOException"/>, <see cref="NetworkException"/> among them: a client that
/// reset before it was accepted, too many open files): reported to <c>acceptFailed</c>, and the loop goes on;</item>
/// <item>serving a connection failed: a connection error (<see cref="IOException"/>, cancellation, a closed
/// stream, a failed TLS handshake) ends that connection quietly; anything else is reported to <c>serveFailed</c>
/// (a bug: log it); either way that connection is closed and the loop is untouched.</item>
/// </list>
/// Each connection is handed to <c>serve</c> as soon as it is accepted, on the accepting flow up to its first
/// await (so an admission check there runs before the next accept). Awaits are plain: in the lab they stay on
/// the lab's loop.
/// </summary>
public static class StreamAcceptLoop
{
    /// <summary>Accepts until the listener closes or <paramref name="stop"/> is cancelled; never throws.</summary>
    /// <param name="listener">The listener to accept on (the caller closes it).</param>
    /// <param name="serve">Serves one connection; the loop does not wait for it.</param>
    /// <param name="acceptFailed">Told of each failed accept (count and log it).</param>
    /// <param name="serveFailed">Told when <paramref name="serve"/> fails with something other than a
    /// connection error.</param>
    /// <param name="stop">Ends the loop.</param>
    public static async Task RunAsync(IStreamListener listener, Func<IStreamConnection, Task> serve,
        Action<Exception>? acceptFailed = null, Action<IStreamConnection, Exception>? serveFailed = null,
        CancellationToken stop = default)
    {
        ArgumentNullException.ThrowIfNull(listener);
        ArgumentNullException.ThrowIfNull(serve);
        while (!stop.IsCancellationRequested)
        {
            IStreamConnection connection;
            try
            {
                connection = await listener.AcceptAsync(stop);
            }
            catch (Exception e) when (e is ObjectDisposedException or OperationCanceledException)
            {
                return;
            }
            catch (IOException e)
            {
                if (stop.IsCancellationRequested)
                {
                    return;
                }

                acceptFailed?.Invoke(e);
                continue;
            }

            _ = ServeAsync(connection, serve, serveFailed);
        }
    }

    /// <summary>The failures a connection ends with that are not bugs: resets, timeouts, shutdown, a TLS
    /// handshake the client failed.</summary>
    public static bool IsConnectionError(Exception e) =>
        e is IOException or OperationCanceledException or ObjectDisposedException or AuthenticationException;

    private static async Task ServeAsync(IStreamConnection connection, Func<IStreamConnection, Task> serve,
        Action<IStreamConnection, Exception>? serveFailed)
    {
        try
        {
            await serve(connection);
        }
#pragma warning disable CA1031 // one connection's failure must not reach the loop; it is reported
        catch (Exception e)
#pragma warning restore CA1031
        {
            if (!IsConnectionError(e))
            {
                serveFailed?.Invoke(connection, e);
            }

            try
            {
                await connection.DisposeAsync();
            }
            catch (Exception closing) when (IsConnectionError(closing))
            {
                // it is gone either way
            }
        }
    }
}
