using NatKit.Net;

namespace NatKit.Proxy;

/// <summary>
/// Joins two streams byte for byte (CONNECT, SOCKS5 CONNECT, an upgraded WebSocket): each direction copies
/// through its reader's pooled buffer, forwards end-of-stream as a half-close, and counts bytes in the flow.
/// The deadline is re-armed on every read and write, so the tunnel closes only when both directions are idle.
/// Between two real sockets on Linux the bytes move by splice(2) instead (<see cref="SplicePump"/>).
/// </summary>
internal static class Tunnel
{
    public static async Task RunAsync(IStreamConnection client, PooledReader clientReader, IStreamConnection server,
        PooledReader serverReader, Flow flow, Deadline deadline)
    {
        var up = PumpAsync(clientReader, server, flow, up: true, deadline);
        var down = PumpAsync(serverReader, client, flow, up: false, deadline);
        await Task.WhenAll(up, down).ConfigureAwait(false);
    }

    private static async Task PumpAsync(PooledReader source, IStreamConnection destination, Flow flow, bool up,
        Deadline deadline)
    {
        try
        {
            if (source.Available > 0)
            {
                var leftover = source.Memory;
                deadline.Arm();
                await destination.Stream.WriteAsync(leftover, deadline.Token).ConfigureAwait(false);
                flow.Add(up, leftover.Length);
                source.Consume(leftover.Length);
            }

            if (SplicePump.SocketOf(source.Stream) is { } from && SplicePump.SocketOf(destination.Stream) is { } to &&
                await SplicePump.PumpAsync(from, to, destination.ShutdownSend, flow, up, deadline, source.Scratch)
                    .ConfigureAwait(false))
            {
                return;
            }

            while (true)
            {
                if (source.Available == 0)
                {
                    deadline.Arm();
                    var n = await source.FillAsync(deadline.Token).ConfigureAwait(false);
                    if (n <= 0)
                    {
                        destination.ShutdownSend();
                        return;
                    }
                }

                var chunk = source.Memory;
                deadline.Arm();
                await destination.Stream.WriteAsync(chunk, deadline.Token).ConfigureAwait(false);
                flow.Add(up, chunk.Length);
                source.Consume(chunk.Length);
            }
        }
        catch (Exception e) when (ProxyServer.IsConnectionError(e))
        {
            // one side reset or timed out: stop the other direction too
            deadline.Cancel();
        }
    }
}
