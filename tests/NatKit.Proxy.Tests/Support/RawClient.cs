using System.Net;
using System.Net.Sockets;
using System.Text;

namespace NatKit.Proxy.Tests.Support;

/// <summary>A plain TCP client that writes exact bytes and reads HTTP/1.1 responses, with a hard timeout on
/// every read so a test never hangs.</summary>
public sealed class RawClient : IAsyncDisposable
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(15);
    private readonly TcpClient _tcp;
    private readonly NetworkStream _stream;
    private readonly MemoryStream _pending = new();

    private RawClient(TcpClient tcp)
    {
        _tcp = tcp;
        _stream = tcp.GetStream();
    }

    public NetworkStream Stream => _stream;

    public static async Task<RawClient> ConnectAsync(IPEndPoint endPoint)
    {
        var tcp = new TcpClient(endPoint.AddressFamily) { NoDelay = true };
        await tcp.ConnectAsync(endPoint);
        return new RawClient(tcp);
    }

    public Task SendAsync(string text) => SendAsync(Encoding.Latin1.GetBytes(text));

    public async Task SendAsync(byte[] bytes)
    {
        using var cts = new CancellationTokenSource(Guard);
        await _stream.WriteAsync(bytes, cts.Token);
    }

    /// <summary>Reads one response: status, head text, body (Content-Length, chunked, or none for
    /// HEAD/1xx/204/304).</summary>
    public async Task<HttpReply> ReadResponseAsync(bool head = false)
    {
        var headText = await ReadHeadAsync();
        var lines = headText.Split("\r\n");
        var status = int.Parse(lines[0].Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        var fields = lines.Skip(1).Where(l => l.Length > 0)
            .Select(l => (Name: l[..l.IndexOf(':', StringComparison.Ordinal)].Trim(), Value: l[(l.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim()))
            .ToList();
        string? Field(string name) => fields.LastOrDefault(f => f.Name.Equals(name, StringComparison.OrdinalIgnoreCase)).Value;
        byte[] body = [];
        if (!head && status >= 200 && status != 204 && status != 304)
        {
            if (Field("Transfer-Encoding") is { } te && te.Contains("chunked", StringComparison.OrdinalIgnoreCase))
            {
                var ms = new MemoryStream();
                while (true)
                {
                    var line = await ReadLineAsync();
                    var size = Convert.ToInt32(line.Split(';')[0], 16);
                    if (size == 0)
                    {
                        while ((await ReadLineAsync()).Length > 0)
                        {
                        }

                        break;
                    }

                    ms.Write(await ReadExactAsync(size));
                    await ReadLineAsync();
                }

                body = ms.ToArray();
            }
            else if (Field("Content-Length") is { } cl)
            {
                body = await ReadExactAsync(int.Parse(cl, System.Globalization.CultureInfo.InvariantCulture));
            }
        }

        return new HttpReply(status, headText, fields, body);
    }

    /// <summary>True when the server closed the connection (read returns 0 or resets) within the guard time.</summary>
    public async Task<bool> ClosedAsync()
    {
        if (_pending.Length > 0)
        {
            return false;
        }

        using var cts = new CancellationTokenSource(Guard);
        try
        {
            var b = new byte[1];
            return await _stream.ReadAsync(b, cts.Token) == 0;
        }
        catch (IOException)
        {
            return true;
        }
    }

    /// <summary>Everything until the server closes (a close-delimited body).</summary>
    public async Task<byte[]> ReadToEndAsync()
    {
        using var cts = new CancellationTokenSource(Guard);
        var all = new MemoryStream();
        all.Write(_pending.ToArray());
        _pending.SetLength(0);
        await _stream.CopyToAsync(all, cts.Token);
        return all.ToArray();
    }

    public async Task<byte[]> ReadExactAsync(int count)
    {
        var result = new byte[count];
        var have = (int)Math.Min(_pending.Length, count);
        _pending.ToArray().AsSpan(0, have).CopyTo(result);
        Drop(have);
        using var cts = new CancellationTokenSource(Guard);
        while (have < count)
        {
            var n = await _stream.ReadAsync(result.AsMemory(have), cts.Token);
            if (n == 0)
            {
                throw new EndOfStreamException($"closed after {have} of {count} bytes");
            }

            have += n;
        }

        return result;
    }

    private async Task<string> ReadHeadAsync()
    {
        using var cts = new CancellationTokenSource(Guard);
        while (true)
        {
            var text = Encoding.Latin1.GetString(_pending.ToArray());
            var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
            if (end >= 0)
            {
                Drop(end + 4);
                return text[..end];
            }

            await FillAsync(cts.Token);
        }
    }

    private async Task<string> ReadLineAsync()
    {
        using var cts = new CancellationTokenSource(Guard);
        while (true)
        {
            var text = Encoding.Latin1.GetString(_pending.ToArray());
            var end = text.IndexOf("\r\n", StringComparison.Ordinal);
            if (end >= 0)
            {
                Drop(end + 2);
                return text[..end];
            }

            await FillAsync(cts.Token);
        }
    }

    private async Task FillAsync(CancellationToken token)
    {
        var buffer = new byte[16384];
        var n = await _stream.ReadAsync(buffer, token);
        if (n == 0)
        {
            throw new EndOfStreamException("connection closed");
        }

        _pending.Position = _pending.Length;
        _pending.Write(buffer, 0, n);
    }

    private void Drop(int count)
    {
        var rest = _pending.ToArray()[count..];
        _pending.SetLength(0);
        _pending.Write(rest);
    }

    public ValueTask DisposeAsync()
    {
        _tcp.Dispose();
        return ValueTask.CompletedTask;
    }
}

public sealed record HttpReply(int Status, string Head, List<(string Name, string Value)> Fields, byte[] Body)
{
    public string? Field(string name) =>
        Fields.LastOrDefault(f => f.Name.Equals(name, StringComparison.OrdinalIgnoreCase)).Value;

    public string Text => Encoding.UTF8.GetString(Body);
}
