using System.Net;
using NatKit.Net;

namespace NatKit.Bench.Proxy;

/// <summary>Reads and discards until the sender half-closes, then closes: the far end of a throughput run. Each
/// connection gets a dedicated thread doing blocking reads (see <see cref="ProxyBenchmark"/>), so the sink costs the
/// same on every path and never waits on the thread pool the proxy under test also uses.</summary>
public sealed class ThroughputSink : IAsyncDisposable
{
    private readonly IStreamListener _listener;
    private readonly Thread _acceptor;

    private ThroughputSink(IStreamListener listener)
    {
        _listener = listener;
        _acceptor = new Thread(Accept) { IsBackground = true, Name = "bench-sink" };
        _acceptor.Start();
    }

    /// <summary>The sink's port on 127.0.0.1.</summary>
    public int Port => _listener.LocalEndPoint.Port;

    /// <summary>Listens on an ephemeral port of 127.0.0.1.</summary>
    public static async Task<ThroughputSink> StartAsync(CancellationToken ct) =>
        new(await SystemNetwork.Instance.ListenTcpAsync(new IPEndPoint(IPAddress.Loopback, 0), 16, ct)
            .ConfigureAwait(false));

    private void Accept()
    {
        while (true)
        {
            IStreamConnection c;
            try
            {
                c = _listener.AcceptAsync().AsTask().GetAwaiter().GetResult();
            }
            catch (Exception e) when (e is NetworkException or ObjectDisposedException or OperationCanceledException)
            {
                return; // the listener was closed
            }

            new Thread(() =>
            {
                var buffer = new byte[256 * 1024];
                try
                {
                    while (c.Stream.Read(buffer) > 0)
                    {
                    }
                }
                catch (Exception e) when (e is IOException or ObjectDisposedException)
                {
                    // the sender reset the connection: nothing to count
                }
                finally
                {
                    c.DisposeAsync().AsTask().GetAwaiter().GetResult();
                }
            }) { IsBackground = true, Name = "bench-sink-conn" }.Start();
        }
    }

    /// <summary>Closes the listener and waits for the accepting thread to end.</summary>
    public async ValueTask DisposeAsync()
    {
        await _listener.DisposeAsync().ConfigureAwait(false);
        _acceptor.Join();
    }
}
