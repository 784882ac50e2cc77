using NatKit.Net;

namespace NatKit.Proxy;

/// <summary>
/// Joins two streams byte for byte (CONNECT, SOCKS5 CONNECT, an upgraded WebSocket) and forwards end-of-stream
/// as a half-close, counting bytes in the flow. The deadline is re-armed on every move, so the tunnel closes only
/// when both directions are idle. When the network can relay the two connections in the kernel
/// (<see cref="IKernelStreamRelay"/>: splice(2) on Linux) the bytes never enter the process; otherwise each
/// direction copies through its reader's pooled buffer.
/// </summary>
internal static class Tunnel
{
    public static async Task RunAsync(IStreamConnection client, PooledReader clientReader, IStreamConnection server,
        PooledReader serverReader, Flow flow, Deadline deadline)
    {
        if (client is IKernelStreamRelay relay)
        {
            try
            {
                // What the readers already hold goes first; the kernel relays the rest.
                await Task.WhenAll(FlushAsync(clientReader, server, flow, up: true, deadline),
                    FlushAsync(serverReader, client, flow, up: false, deadline)).ConfigureAwait(false);
                deadline.Arm();
                var relayed = relay.TryRelay(server, (fromClient, n) =>
                {
                    flow.Add(fromClient, n);
                    deadline.Arm();
                }, deadline.Token);
                if (relayed is not null)
                {
                    await relayed.ConfigureAwait(false);
                    return;
                }
            }
            catch (Exception e) when (ProxyServer.IsConnectionError(e))
            {
                deadline.Cancel();
                return;
            }
        }

        var up = PumpAsync(clientReader, server, flow, up: true, deadline);
        var down = PumpAsync(serverReader, client, flow, up: false, deadline);
        await Task.WhenAll(up, down).ConfigureAwait(false);
    }

    private static async Task FlushAsync(PooledReader source, IStreamConnection destination, Flow flow, bool up,
        Deadline deadline)
    {
        if (source.Available > 0)
        {
            var leftover = source.Memory;
            deadline.Arm();
            await destination.Stream.WriteAsync(leftover, deadline.Token).ConfigureAwait(false);
            flow.Add(up, leftover.Length);
            source.Consume(leftover.Length);
        }
    }

    private static async Task PumpAsync(PooledReader source, IStreamConnection destination, Flow flow, bool up,
        Deadline deadline)
    {
        try
        {
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
