using System.Net;
using System.Text;
using NatKit.Net;

namespace NatKit.Bench.Proxy;

/// <summary>A minimal keep-alive HTTP/1.1 origin answering every request head with the same response.</summary>
public sealed class BenchOrigin : IAsyncDisposable
{
    private readonly IStreamListener _listener;
    private readonly byte[] _keepAlive;
    private readonly byte[] _close;
    private readonly Task _loop;
    private readonly CancellationToken _ct;

    private BenchOrigin(IStreamListener listener, int bodyBytes, CancellationToken ct)
    {
        _listener = listener;
        _ct = ct;
        var body = new string('x', bodyBytes);
        _keepAlive = Encoding.ASCII.GetBytes(
            $"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {bodyBytes}\r\nConnection: keep-alive\r\n\r\n{body}");
        _close = Encoding.ASCII.GetBytes(
            $"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {bodyBytes}\r\nConnection: close\r\n\r\n{body}");
        _loop = Task.Run(AcceptAsync, CancellationToken.None);
    }

    public int Port => _listener.LocalEndPoint.Port;

    /// <summary>Listens on a free port of 127.0.0.1 and answers with a body of <paramref name="bodyBytes"/> bytes.</summary>
    public static async Task<BenchOrigin> StartAsync(int bodyBytes, CancellationToken ct) =>
        new(await SystemNetwork.Instance.ListenTcpAsync(new IPEndPoint(IPAddress.Loopback, 0), 1024, ct), bodyBytes, ct);

    private async Task AcceptAsync()
    {
        while (true)
        {
            IStreamConnection c;
            try
            {
                c = await _listener.AcceptAsync(_ct);
            }
            catch (Exception e) when (e is ObjectDisposedException or OperationCanceledException)
            {
                return;
            }
            catch (IOException)
            {
                continue;
            }

            _ = ServeAsync(c);
        }
    }

    private async Task ServeAsync(IStreamConnection c)
    {
        await using var _ = c;
        var buffer = new byte[16384];
        var have = 0;
        try
        {
            while (true)
            {
                var n = await c.Stream.ReadAsync(buffer.AsMemory(have), _ct);
                if (n == 0)
                {
                    return;
                }

                have += n;
                int end;
                while ((end = buffer.AsSpan(0, have).IndexOf("\r\n\r\n"u8)) >= 0)
                {
                    var head = buffer.AsSpan(0, end);
                    var close = head.IndexOf("HTTP/1.0"u8) >= 0
                        ? !ContainsIgnoreCase(head, "keep-alive")
                        : ContainsIgnoreCase(head, "connection: close");
                    await c.Stream.WriteAsync(close ? _close : _keepAlive, _ct);
                    if (close)
                    {
                        return;
                    }

                    buffer.AsSpan(end + 4, have - end - 4).CopyTo(buffer);
                    have -= end + 4;
                }

                if (have == buffer.Length)
                {
                    return;
                }
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException)
        {
        }
    }

    private static bool ContainsIgnoreCase(ReadOnlySpan<byte> head, string needle) =>
        Encoding.ASCII.GetString(head).Contains(needle, StringComparison.OrdinalIgnoreCase);

    public async ValueTask DisposeAsync()
    {
        await _listener.DisposeAsync();
        await _loop;
    }
}
