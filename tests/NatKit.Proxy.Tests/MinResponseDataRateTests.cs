using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using NatKit.Net;
using NatKit.Proxy.Tests.Support;
using NatKit.TestSupport;

namespace NatKit.Proxy.Tests;

/// <summary>
/// The minimum response data rate, over real loopback sockets on a virtual clock. The client's connection is
/// watched (<see cref="WatchedNetwork"/>): a write that the kernel does not take at once is the proxy blocked on a
/// client that does not read, and only then is the clock moved, so each virtual second is a second the proxy spent
/// blocked writing to the client. The rate's timer fires inside <see cref="ManualTimeProvider.Advance(TimeSpan)"/>,
/// so whether the blocked write was cancelled is known the moment the clock has moved.
/// </summary>
public sealed class MinResponseDataRateTests
{
    private const int BodyBytes = 16 * 1024 * 1024; // more than the kernel buffers on both legs can hold
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(15);
    private static readonly TimeSpan Margin = TimeSpan.FromMilliseconds(10);

    public enum Framing
    {
        ContentLength,
        Chunked,
        UntilClose,
    }


    private static byte[] Body(int length)
    {
        var body = new byte[length];
        new Random(length).NextBytes(body);
        return body;
    }

    /// <summary>A client that stops reading is cut off once its blocked time passes the grace or the time its bytes
    /// so far buy at the rate, whichever is longer: the grace-bound case (a high rate) and the rate-bound case (the
    /// bytes the kernel took at once buy more than the grace), for every framing the origin may use.</summary>
    [Theory]
    [InlineData(Framing.ContentLength, 100_000_000d, 5d)]
    [InlineData(Framing.Chunked, 100_000_000d, 5d)]
    [InlineData(Framing.UntilClose, 100_000_000d, 5d)]
    [InlineData(Framing.ContentLength, 16_384d, 1d)]
    [InlineData(Framing.Chunked, 16_384d, 1d)]
    [InlineData(Framing.UntilClose, 16_384d, 1d)]
    public async Task AClientThatStopsReading_IsCutOff_AfterTheGraceOrItsBytesWorthOfTime_AndNotBefore(
        Framing framing, double rate, double graceSeconds)
    {
        var grace = TimeSpan.FromSeconds(graceSeconds);
        await using var rig = await Rig.StartAsync(rate, grace);
        var (time, proxy, client, watched) = (rig.Time, rig.Proxy, rig.Client, rig.ClientSide);
        var served = rig.Origin.ServeAsync(framing, Body(BodyBytes));

        await watched.WhenWriteBlocked().WaitAsync(Guard);
        var counted = watched.Written; // what the client took at once: head and body so far
        var owed = TimeSpan.FromSeconds(counted / rate);
        var limit = owed > grace ? owed : grace;
        if (rate < 1_000_000)
        {
            Assert.True(owed > grace, $"the rate-bound case needs more than the grace's worth of bytes ({counted})");
        }

        time.Advance(limit - Margin);
        Assert.False(watched.LastWriteCancelled, $"cut off before {limit} of blocked time ({counted} bytes)");
        Assert.Equal(0, proxy.ResponseRateViolations);

        time.Advance(Margin * 2);
        Assert.True(watched.LastWriteCancelled, $"not cut off at {limit} of blocked time ({counted} bytes)");
        var (received, reset) = await client.ReadUntilClosedAsync();
        Assert.True(received < BodyBytes, "the client must not get the whole body");
        Assert.True(watched.Aborted && reset, "the client's connection is reset, not closed with its unsent bytes queued");
        Assert.False(await served.WaitAsync(Guard), "the origin's connection is closed, not left to finish");
        Assert.Equal(0, proxy.Pool.IdleCount);
        Assert.Equal(1, proxy.ResponseRateViolations);
        Assert.Contains(rig.Log.Lines(5), l => l.Contains("slower than", StringComparison.Ordinal));
        await rig.StopProxyAsync(); // every session has ended: none of them failed
        Assert.Empty(rig.Log.Lines(3));
    }

    /// <summary>A client that reads steadily above the rate (256 KiB per virtual second blocked, against a floor
    /// of 64 KiB/s with a 1 s grace, for about half a minute of blocked time) gets every byte.</summary>
    [Theory]
    [InlineData(Framing.ContentLength)]
    [InlineData(Framing.Chunked)]
    public async Task AClientReadingAboveTheRate_GetsTheWholeBody(Framing framing)
    {
        await using var rig = await Rig.StartAsync(64 * 1024, TimeSpan.FromSeconds(1));
        var (time, proxy, client, watched) = (rig.Time, rig.Proxy, rig.Client, rig.ClientSide);
        var body = Body(8 * 1024 * 1024);
        var served = rig.Origin.ServeAsync(framing, body);
        var relayed = rig.Log.WhenLogged(1); // the access log line: the proxy has written the whole response
        var raw = new MemoryStream();
        var blockedSeconds = 0;
        while (true)
        {
            var step = raw.Length + (256 * 1024);
            while (raw.Length < step && !IsComplete(framing, raw, body.Length))
            {
                Assert.True(await client.ReadSomeAsync(raw, (int)(step - raw.Length)) > 0, "the proxy closed the connection");
            }

            if (IsComplete(framing, raw, body.Length))
            {
                break;
            }

            // the proxy fills the room the client made; once it blocks again, a second passes
            var blocked = watched.WhenWriteBlocked();
            await Task.WhenAny(blocked, relayed).WaitAsync(Guard);
            if (blocked.IsCompleted)
            {
                time.Advance(TimeSpan.FromSeconds(1));
                blockedSeconds++;
            }
        }

        Assert.Equal(body, Decode(framing, raw.ToArray()));
        Assert.True(blockedSeconds > 5, $"the client must have been timed well past the grace ({blockedSeconds} s)");
        Assert.False(watched.LastWriteCancelled);
        Assert.Equal(0, proxy.ResponseRateViolations);
        Assert.True(await served.WaitAsync(Guard));
    }

    /// <summary>An origin that sends 1000 bytes over 200 s (5 bytes/s, far below the 1000 bytes/s floor) to a client
    /// that reads at once: the time spent waiting for the origin is not the client's, so nothing is cut.</summary>
    [Fact]
    public async Task ASlowOrigin_WithAFastClient_IsNotCutOff()
    {
        await using var rig = await Rig.StartAsync(1000, TimeSpan.FromSeconds(1), path: "/slow");
        var (time, proxy, client, watched) = (rig.Time, rig.Proxy, rig.Client, rig.ClientSide);
        var body = Body(1000);
        var conn = await rig.Origin.AcceptAsync();
        var upstream = WatchedNetwork.First(rig.Network.Dialled);

        // the head, then ten pieces; after each, the proxy is back to reading from the origin when the clock moves
        upstream.ResetReadStarted();
        await conn.WriteAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nContent-Length: {body.Length}\r\n\r\n"));
        _ = await client.ReadHeadAsync();
        var received = new MemoryStream();
        for (var i = 0; i < 10; i++)
        {
            await upstream.ReadStarted.WaitAsync(Guard);
            time.Advance(TimeSpan.FromSeconds(20));
            upstream.ResetReadStarted();
            await conn.WriteAsync(body.AsMemory(i * 100, 100));
            while (received.Length < (i + 1) * 100)
            {
                Assert.True(await client.ReadSomeAsync(received, 100) > 0, "the proxy closed the connection");
            }
        }

        Assert.Equal(body, received.ToArray());
        Assert.False(watched.LastWriteCancelled);
        Assert.Equal(0, proxy.ResponseRateViolations);
        await conn.DisposeAsync();
    }

    /// <summary>A CONNECT tunnel or an upgraded WebSocket is long-lived and interactive: a client that stops reading
    /// it for ten virtual minutes (far past a 1 s grace at 1 MB/s) is not cut off by the response rate (the idle
    /// timeout governs tunnels), and then gets every byte.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ATunnel_WithAStalledReader_IsNotCutOffByTheRate(bool webSocket)
    {
        await using var rig = await Rig.StartAsync(1_000_000, TimeSpan.FromSeconds(1),
            path: webSocket ? WebSocketRequest : null);
        var (time, proxy, client, watched) = (rig.Time, rig.Proxy, rig.Client, rig.ClientSide);
        var conn = await rig.Origin.AcceptAsync(readHead: webSocket);
        if (webSocket)
        {
            await conn.WriteAsync("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"u8.ToArray());
        }

        Assert.StartsWith(webSocket ? "HTTP/1.1 101" : "HTTP/1.1 200", await client.ReadHeadAsync(), StringComparison.Ordinal);
        var body = Body(BodyBytes);
        var sent = Task.Run(async () => await conn.WriteAsync(body));

        await watched.WhenWriteBlocked().WaitAsync(Guard);
        time.Advance(TimeSpan.FromMinutes(10));
        Assert.False(watched.LastWriteCancelled, "the tunnel was cut off");

        var received = new MemoryStream();
        while (received.Length < body.Length)
        {
            Assert.True(await client.ReadSomeAsync(received, body.Length) > 0, "the tunnel closed");
        }

        Assert.Equal(body, received.ToArray());
        await sent.WaitAsync(Guard);
        Assert.Equal(0, proxy.ResponseRateViolations);
        await conn.DisposeAsync();
    }

    /// <summary>The target and fields of a WebSocket upgrade request (RFC 6455 4.1), after "GET http://origin".</summary>
    private const string WebSocketRequest = "/ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    /// <summary>0 turns the rule off: a client that stops reading for ten virtual minutes keeps its response.</summary>
    [Fact]
    public async Task Zero_TurnsTheRateOff()
    {
        await using var rig = await Rig.StartAsync(0, TimeSpan.FromSeconds(1));
        var (time, client, watched) = (rig.Time, rig.Client, rig.ClientSide);
        var body = Body(BodyBytes);
        var served = rig.Origin.ServeAsync(Framing.ContentLength, body);

        await watched.WhenWriteBlocked().WaitAsync(Guard);
        time.Advance(TimeSpan.FromMinutes(10));
        Assert.False(watched.LastWriteCancelled, "cut off with the rate off");

        var raw = new MemoryStream();
        while (!IsComplete(Framing.ContentLength, raw, body.Length))
        {
            Assert.True(await client.ReadSomeAsync(raw, BodyBytes) > 0, "the proxy closed the connection");
        }

        Assert.Equal(body, Decode(Framing.ContentLength, raw.ToArray()));
        Assert.True(await served.WaitAsync(Guard));
    }

    /// <summary>A client that reads nothing at all is the idle timeout's, not the rate's: each write arms the
    /// idle deadline, and a write still blocked when it passes is cancelled (here with the rate off, so only the
    /// idle timeout can end it).</summary>
    [Fact]
    public async Task AClientThatReadsNothing_IsCutOffByTheIdleTimeout()
    {
        await using var rig = await Rig.StartAsync(0, TimeSpan.FromSeconds(1), idle: TimeSpan.FromSeconds(60));
        var (time, watched) = (rig.Time, rig.ClientSide);
        var served = rig.Origin.ServeAsync(Framing.ContentLength, Body(BodyBytes));

        await watched.WhenWriteBlocked().WaitAsync(Guard);
        time.Advance(TimeSpan.FromSeconds(60) - Margin);
        Assert.False(watched.LastWriteCancelled, "cut off before the idle timeout");
        time.Advance(Margin + Margin);
        Assert.True(watched.LastWriteCancelled, "a write blocked past the idle timeout was not cancelled");
        _ = served;
    }

    [Fact]
    public void MinResponseDataRate_IsValidated_AndDefaultsToKestrels()
    {
        Assert.Throws<ArgumentException>(() => (ProxyServerTests.TestOptions() with { MinResponseDataRate = -1 }).Validate());
        Assert.Throws<ArgumentException>(() => (ProxyServerTests.TestOptions() with { MinResponseDataRate = double.PositiveInfinity }).Validate());
        Assert.Throws<ArgumentException>(() => (ProxyServerTests.TestOptions() with
        {
            MinResponseDataRateGracePeriod = TimeSpan.Zero,
        }).Validate());
        (ProxyServerTests.TestOptions() with { MinResponseDataRate = 0 }).Validate();
        Assert.Equal(240, new ProxyOptions().MinResponseDataRate);
        Assert.Equal(TimeSpan.FromSeconds(5), new ProxyOptions().MinResponseDataRateGracePeriod);
    }

    /// <summary>Whether the raw bytes after the head hold the whole body: its length, or the last chunk.</summary>
    private static bool IsComplete(Framing framing, MemoryStream raw, int bodyLength) => framing == Framing.ContentLength
        ? raw.Length >= bodyLength
        : raw.Length >= 5 && raw.GetBuffer().AsSpan((int)raw.Length - 5, 5).SequenceEqual("0\r\n\r\n"u8) &&
          Decode(framing, raw.ToArray()).Length == bodyLength;

    /// <summary>The body from the bytes after the head: as is, or de-chunked (the proxy re-chunks).</summary>
    private static byte[] Decode(Framing framing, byte[] raw)
    {
        if (framing == Framing.ContentLength)
        {
            return raw;
        }

        var body = new MemoryStream();
        var i = 0;
        while (true)
        {
            var eol = raw.AsSpan(i).IndexOf("\r\n"u8);
            if (eol < 0)
            {
                return body.ToArray();
            }

            var size = int.Parse(Encoding.ASCII.GetString(raw, i, eol), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            i += eol + 2;
            if (size == 0 || i + size > raw.Length)
            {
                return body.ToArray();
            }

            body.Write(raw, i, size);
            i += size + 2;
        }
    }

    /// <summary>A proxy on a virtual clock and a watched network, a scripted origin, and a slow client that has sent
    /// its request: a GET for <c>path</c> (which may go on with the version and fields), or a CONNECT to the origin
    /// when <c>path</c> is null.</summary>
    private sealed class Rig : IAsyncDisposable
    {
        private Rig()
        {
            Network = new WatchedNetwork(new ClockedNetwork(Time));
        }

        public ManualTimeProvider Time { get; } = new();

        public ListLogger Log { get; } = new();

        public WatchedNetwork Network { get; }

        public ScriptedOrigin Origin { get; private set; } = null!;

        public ProxyServer Proxy { get; private set; } = null!;

        public SlowClient Client { get; private set; } = null!;

        /// <summary>The client's connection as the proxy writes to it.</summary>
        public WatchedStream ClientSide { get; private set; } = null!;

        public static async Task<Rig> StartAsync(double rate, TimeSpan grace, string? path = "/big", TimeSpan? idle = null)
        {
            var rig = new Rig();
            rig.Origin = await ScriptedOrigin.StartAsync();
            rig.Proxy = await ProxyServer.StartAsync(ProxyServerTests.TestOptions(rig.Origin.Port) with
            {
                MinResponseDataRate = rate,
                MinResponseDataRateGracePeriod = grace,
                IdleTimeout = idle ?? TimeSpan.FromHours(2), // by default the idle timeout must not end these tests
            }, rig.Network, rig.Log);
            rig.Client = await SlowClient.ConnectAsync(rig.Proxy.HttpEndPoint);
            var origin = $"127.0.0.1:{rig.Origin.Port}";
            await rig.Client.SendAsync(path is null
                ? $"CONNECT {origin} HTTP/1.1\r\nHost: {origin}\r\n\r\n"
                : path.Contains(' ', StringComparison.Ordinal) ? $"GET http://{origin}{path}"
                : $"GET http://{origin}{path} HTTP/1.1\r\nHost: a\r\n\r\n");
            rig.ClientSide = WatchedNetwork.First(rig.Network.Accepted);
            return rig;
        }

        /// <summary>Stops the proxy, waiting for its sessions to end.</summary>
        public async Task StopProxyAsync()
        {
            if (!_stopped)
            {
                _stopped = true;
                await Proxy.DisposeAsync();
            }
        }

        public async ValueTask DisposeAsync()
        {
            Client.Dispose();
            await StopProxyAsync();
            await Origin.DisposeAsync();
        }

        private bool _stopped;
    }

    /// <summary>An origin on loopback the test drives: one connection, a head and a body in the framing asked.</summary>
    private sealed class ScriptedOrigin : IAsyncDisposable
    {
        private readonly IStreamListener _listener;

        private ScriptedOrigin(IStreamListener listener) => _listener = listener;

        public int Port => _listener.LocalEndPoint.Port;

        public static async Task<ScriptedOrigin> StartAsync() =>
            new(await SystemNetwork.Instance.ListenTcpAsync(new IPEndPoint(IPAddress.Loopback, 0)));

        /// <summary>Accepts the proxy's connection and reads its request head (a tunnel has none).</summary>
        public async Task<Stream> AcceptAsync(bool readHead = true)
        {
            var c = await _listener.AcceptAsync().AsTask().WaitAsync(Guard);
            var head = new List<byte>();
            if (!readHead)
            {
                return c.Stream;
            }

            var b = new byte[1];
            while (head.Count < 4 || !head[^4..].SequenceEqual("\r\n\r\n"u8.ToArray()))
            {
                if (await c.Stream.ReadAsync(b).AsTask().WaitAsync(Guard) == 0)
                {
                    throw new EndOfStreamException("the proxy closed before its request head");
                }

                head.Add(b[0]);
            }

            return c.Stream;
        }

        /// <summary>Answers one request with <paramref name="body"/>. True when all of it was sent; false when the
        /// proxy closed the connection first.</summary>
        public Task<bool> ServeAsync(Framing framing, byte[] body) => Task.Run(async () =>
        {
            await using var s = await AcceptAsync();
            try
            {
                var head = framing switch
                {
                    Framing.ContentLength => $"HTTP/1.1 200 OK\r\nContent-Length: {body.Length}\r\n\r\n",
                    Framing.Chunked => "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                    _ => "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
                };
                await s.WriteAsync(Encoding.ASCII.GetBytes(head));
                for (var i = 0; i < body.Length; i += 64 * 1024)
                {
                    var piece = body.AsMemory(i, Math.Min(64 * 1024, body.Length - i));
                    if (framing == Framing.Chunked)
                    {
                        await s.WriteAsync(Encoding.ASCII.GetBytes(piece.Length.ToString("x", CultureInfo.InvariantCulture) + "\r\n"));
                        await s.WriteAsync(piece);
                        await s.WriteAsync("\r\n"u8.ToArray());
                    }
                    else
                    {
                        await s.WriteAsync(piece);
                    }
                }

                if (framing == Framing.Chunked)
                {
                    await s.WriteAsync("0\r\n\r\n"u8.ToArray());
                }

                return true;
            }
            catch (IOException)
            {
                return false;
            }
        });

        public ValueTask DisposeAsync() => _listener.DisposeAsync();
    }

    /// <summary>A client socket with a small receive buffer (so a client that stops reading blocks the proxy soon)
    /// that reads only when told.</summary>
    private sealed class SlowClient : IDisposable
    {
        private readonly Socket _socket;
        private readonly NetworkStream _stream;
        private readonly MemoryStream _pending = new(); // bytes read past the head

        private SlowClient(Socket socket)
        {
            _socket = socket;
            _stream = new NetworkStream(socket, ownsSocket: true);
        }

        public static async Task<SlowClient> ConnectAsync(IPEndPoint proxy)
        {
            var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp)
            {
                ReceiveBufferSize = 16 * 1024,
                NoDelay = true,
            };
            await socket.ConnectAsync(proxy);
            return new SlowClient(socket);
        }

        public Task SendAsync(string text) => _stream.WriteAsync(Encoding.ASCII.GetBytes(text)).AsTask().WaitAsync(Guard);

        /// <summary>Reads the response head (keeping what follows it).</summary>
        public async Task<string> ReadHeadAsync()
        {
            _headRead = true;
            var buffer = new byte[64 * 1024];
            var all = new MemoryStream();
            while (true)
            {
                var n = await _stream.ReadAsync(buffer).AsTask().WaitAsync(Guard);
                if (n == 0)
                {
                    throw new EndOfStreamException("closed before the head");
                }

                all.Write(buffer, 0, n);
                var end = all.GetBuffer().AsSpan(0, (int)all.Length).IndexOf("\r\n\r\n"u8);
                if (end >= 0)
                {
                    _pending.Write(all.GetBuffer(), end + 4, (int)all.Length - end - 4);
                    return Encoding.ASCII.GetString(all.GetBuffer(), 0, end);
                }
            }
        }

        /// <summary>Appends up to <paramref name="max"/> bytes after the head to <paramref name="into"/> (the head
        /// is read and skipped first); 0 at the end.</summary>
        public async Task<int> ReadSomeAsync(MemoryStream into, int max)
        {
            if (!_headRead)
            {
                _ = await ReadHeadAsync();
            }

            if (_pending.Length > 0)
            {
                var n = (int)Math.Min(_pending.Length, max);
                into.Write(_pending.GetBuffer(), 0, n);
                var rest = _pending.ToArray()[n..];
                _pending.SetLength(0);
                _pending.Write(rest);
                return n;
            }

            var buffer = new byte[Math.Min(max, 64 * 1024)];
            var read = await _stream.ReadAsync(buffer).AsTask().WaitAsync(Guard);
            into.Write(buffer, 0, read);
            return read;
        }

        /// <summary>Reads until the proxy closes or resets the connection: the bytes after the head, and whether it
        /// ended with a reset (TCP RST) rather than an end of stream.</summary>
        public async Task<(long Received, bool Reset)> ReadUntilClosedAsync()
        {
            var received = new MemoryStream();
            try
            {
                while (await ReadSomeAsync(received, 1024 * 1024) > 0)
                {
                }
            }
            catch (IOException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.ConnectionReset })
            {
                return (received.Length, true);
            }

            return (received.Length, false);
        }

        public void Dispose() => _stream.Dispose();

        private bool _headRead;
    }
}
