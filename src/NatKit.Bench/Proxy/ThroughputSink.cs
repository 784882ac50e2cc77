using System.Net;
using System.Net.Sockets;

namespace NatKit.Bench.Proxy;

/// <summary>Reads and discards until the sender half-closes, then closes: the far end of a throughput run. Each
/// connection gets a dedicated thread doing blocking receives (see <see cref="ProxyBenchmark"/>).</summary>
public sealed class ThroughputSink : IAsyncDisposable
{
    private readonly Socket _listener;
    private readonly Thread _acceptor;

    private ThroughputSink(Socket listener)
    {
        _listener = listener;
        _acceptor = new Thread(Accept) { IsBackground = true, Name = "bench-sink" };
        _acceptor.Start();
    }

    public int Port => ((IPEndPoint)_listener.LocalEndPoint!).Port;

    public static Task<ThroughputSink> StartAsync(CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(16);
        return Task.FromResult(new ThroughputSink(listener));
    }

    private void Accept()
    {
        while (true)
        {
            Socket c;
            try
            {
                c = _listener.Accept();
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                return;
            }

            new Thread(() =>
            {
                using (c)
                {
                    var buffer = new byte[256 * 1024];
                    try
                    {
                        while (c.Receive(buffer) > 0)
                        {
                        }
                    }
                    catch (SocketException)
                    {
                    }
                }
            }) { IsBackground = true, Name = "bench-sink-conn" }.Start();
        }
    }

    public ValueTask DisposeAsync()
    {
        _listener.Dispose();
        _acceptor.Join();
        return ValueTask.CompletedTask;
    }
}
