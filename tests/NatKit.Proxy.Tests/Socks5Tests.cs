using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using FsCheck;
using FsCheck.Fluent;
using NatKit.Net;
using NatKit.Proxy.Socks;
using NatKit.Proxy.Tests.Support;

namespace NatKit.Proxy.Tests;

/// <summary>SOCKS5 (RFC 1928, RFC 1929): the codec, and the server end to end with a hand-written client.</summary>
public sealed class Socks5Tests
{
    [Theory]
    [InlineData("192.0.2.7", 80)]
    [InlineData("2001:db8::7", 443)]
    public void Rfc1928_Address_RoundTrips(string ip, int port)
    {
        var buffer = new byte[32];
        var endPoint = new IPEndPoint(IPAddress.Parse(ip), port);
        var n = Socks5Codec.WriteReply(buffer, SocksReply.Succeeded, endPoint);
        buffer[1] = (byte)SocksCommand.Connect; // a reply has a request's shape
        Assert.Equal(SocksParse.Ok, Socks5Codec.ParseRequest(buffer.AsSpan(0, n), out var consumed, out _, out var a, out _));
        Assert.Equal(n, consumed);
        Assert.Equal(endPoint.Address, a.Address);
        Assert.Equal(port, a.Port);
    }

    [Theory]
    [InlineData("192.0.2.7", 10)]
    [InlineData("::ffff:192.0.2.7", 10)]
    [InlineData("2001:db8::7", 22)]
    public void Rfc1928_UdpHeader_HasTheLengthItsRelayReservesRoomFor(string ip, int length)
    {
        var source = new IPEndPoint(IPAddress.Parse(ip), 5353);
        var buffer = new byte[32];
        Assert.Equal(length, Socks5Codec.UdpHeaderLength(source));
        Assert.Equal(length, Socks5Codec.WriteUdpHeader(buffer, source));
        Assert.Equal(SocksParse.Ok, Socks5Codec.ParseUdpHeader(buffer.AsSpan(0, length), out var parsed, out _, out var a));
        Assert.Equal(length, parsed);
        Assert.Equal(source.Address.IsIPv4MappedToIPv6 ? source.Address.MapToIPv4() : source.Address, a.Address);
        Assert.Equal(5353, a.Port);
    }

    [Fact]
    public void Rfc1928_DomainRequest_Parses_AndTruncationsAreIncomplete()
    {
        byte[] request = [5, 1, 0, 3, 9, .. "localhost"u8, 0x1F, 0x90];
        Assert.Equal(SocksParse.Ok, Socks5Codec.ParseRequest(request, out var consumed, out var cmd, out var a, out _));
        Assert.Equal(request.Length, consumed);
        Assert.Equal(1, cmd);
        Assert.Equal("localhost", a.Domain);
        Assert.Equal(8080, a.Port);
        for (var i = 0; i < request.Length; i++)
        {
            Assert.Equal(SocksParse.Incomplete, Socks5Codec.ParseRequest(request.AsSpan(0, i), out _, out _, out _, out _));
        }

        byte[] badType = [5, 1, 0, 9, 0, 0];
        Assert.Equal(SocksParse.Invalid, Socks5Codec.ParseRequest(badType, out _, out _, out _, out var bad));
        Assert.True(bad);
    }

    [Fact]
    public void Rfc1929_UserPass_ComparesExactly()
    {
        byte[] msg = [1, 3, .. "bob"u8, 4, .. "pa55"u8];
        Assert.Equal(SocksParse.Ok, Socks5Codec.ParseUserPass(msg, "bob:pa55"u8, out var consumed, out var ok));
        Assert.True(ok);
        Assert.Equal(msg.Length, consumed);
        Socks5Codec.ParseUserPass(msg, "bob:pa5"u8, out _, out ok);
        Assert.False(ok);
    }

    [Fact]
    public void Fuzz_SocksParsers_NeverThrow()
    {
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(2000), Prop.ForAll(ArbMap.Default.ArbFor<byte[]>(), (byte[] b) =>
        {
            Socks5Codec.ParseGreeting(b, 0, out _, out _);
            Socks5Codec.ParseUserPass(b, "a:b"u8, out _, out _);
            Socks5Codec.ParseRequest(b, out _, out _, out _, out _);
            Socks5Codec.ParseUdpHeader(b, out _, out _, out _);
            return true;
        }));
    }

    [Fact]
    public async Task Rfc1928_UdpAssociate_RelaysBothWays()
    {
        await using var proxy = await ProxyServer.StartAsync(ProxyServerTests.TestOptions() with
        {
            SocksListen = new IPEndPoint(IPAddress.Loopback, 0),
        }, SystemNetwork.Instance);
        using var echo = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        var echoEndPoint = (IPEndPoint)echo.Client.LocalEndPoint!;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        var echoTask = Task.Run(async () =>
        {
            var d = await echo.ReceiveAsync(cts.Token);
            await echo.SendAsync(d.Buffer.Reverse().ToArray(), d.RemoteEndPoint, cts.Token);
        });

        using var udp = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        using var control = new TcpClient();
        var relay = await AssociateAsync(proxy, control, udp, cts.Token);

        var datagram = new byte[10 + 5];
        Socks5Codec.WriteUdpHeader(datagram, echoEndPoint);
        "hello"u8.CopyTo(datagram.AsSpan(10));
        await udp.SendAsync(datagram, relay, cts.Token);
        var back = await udp.ReceiveAsync(cts.Token);
        Assert.Equal(SocksParse.Ok, Socks5Codec.ParseUdpHeader(back.Buffer, out var h, out var frag, out var from));
        Assert.Equal(0, frag);
        Assert.Equal(echoEndPoint.Address, from.Address);
        Assert.Equal(echoEndPoint.Port, from.Port);
        Assert.Equal("olleh", Encoding.ASCII.GetString(back.Buffer, h, back.Buffer.Length - h));
        await echoTask;
        Assert.Contains(proxy.Connections.Snapshot(), f => f.Kind == "socks-udp" && f.BytesUp == 5 && f.BytesDown == 5);
    }

    /// <summary>UDP ASSOCIATE over <paramref name="control"/> for <paramref name="udp"/>'s port; the relay's
    /// endpoint.</summary>
    private static async Task<IPEndPoint> AssociateAsync(ProxyServer proxy, TcpClient control, UdpClient udp,
        CancellationToken ct)
    {
        await control.ConnectAsync(proxy.SocksEndPoint!, ct);
        var s = control.GetStream();
        await s.WriteAsync(new byte[] { 5, 1, 0 }, ct);
        Assert.Equal(new byte[] { 5, 0 }, await ReadAsync(s, 2, ct));
        var request = new byte[10];
        request[0] = 5;
        request[1] = 3;
        request[3] = 1;
        IPAddress.Loopback.TryWriteBytes(request.AsSpan(4), out _);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(8), (ushort)((IPEndPoint)udp.Client.LocalEndPoint!).Port);
        await s.WriteAsync(request, ct);
        var reply = await ReadAsync(s, 10, ct);
        Assert.Equal(0, reply[1]);
        return new IPEndPoint(new IPAddress(reply.AsSpan(4, 4)), BinaryPrimitives.ReadUInt16BigEndian(reply.AsSpan(8)));
    }

    /// <summary>The relay remembers the destinations it was sent to lately by their header bytes: every datagram
    /// must still go where its own header says, a refused destination stays refused, a name is resolved once,
    /// and destinations pushed out of the memory by many others still work.</summary>
    [Fact]
    public async Task Rfc1928_UdpAssociate_ManyDestinations_EachDatagramGoesWhereItsHeaderSays()
    {
        var resolved = 0;
        using var e1 = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        using var e2 = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        var p1 = ((IPEndPoint)e1.Client.LocalEndPoint!).Port;
        var p2 = ((IPEndPoint)e2.Client.LocalEndPoint!).Port;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        var sinks = new List<UdpClient>();
        for (var i = 0; i < 20; i++)
        {
            sinks.Add(new UdpClient(new IPEndPoint(IPAddress.Loopback, 0)));
        }

        var allowed = new HashSet<int>(sinks.Select(c => ((IPEndPoint)c.Client.LocalEndPoint!).Port)) { p1, p2 };
        // a refused port someone listens on, so a datagram wrongly let through (or remembered as allowed) is seen
        using var refused = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        var refusedPort = ((IPEndPoint)refused.Client.LocalEndPoint!).Port;
        await using var proxy = await ProxyServer.StartAsync(ProxyServerTests.TestOptions() with
        {
            SocksListen = new IPEndPoint(IPAddress.Loopback, 0),
            SocksPorts = allowed,
            Resolve = (name, _) =>
            {
                Interlocked.Increment(ref resolved);
                return Task.FromResult(name == "echo.test" ? new[] { IPAddress.Loopback } : []);
            },
        }, SystemNetwork.Instance);
        using var udp = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        using var control = new TcpClient();
        var relay = await AssociateAsync(proxy, control, udp, cts.Token);

        async Task SendAsync(byte[] header, string text)
        {
            byte[] datagram = [0, 0, 0, .. header, .. Encoding.ASCII.GetBytes(text)];
            await udp.SendAsync(datagram, relay, cts.Token);
        }

        static byte[] V4(int port)
        {
            var h = new byte[7];
            h[0] = Socks5Codec.AtypIPv4;
            IPAddress.Loopback.TryWriteBytes(h.AsSpan(1), out _);
            BinaryPrimitives.WriteUInt16BigEndian(h.AsSpan(5), (ushort)port);
            return h;
        }

        static byte[] Name(string name, int port) =>
            [Socks5Codec.AtypDomain, (byte)name.Length, .. Encoding.ASCII.GetBytes(name), (byte)(port >> 8), (byte)port];

        async Task<string> NextAsync(UdpClient at) => Encoding.ASCII.GetString((await at.ReceiveAsync(cts.Token)).Buffer);

        for (var round = 0; round < 3; round++)
        {
            await SendAsync(V4(p1), $"one {round}");
            await SendAsync(V4(refusedPort), "refused port"); // not in SocksPorts: dropped every time
            await SendAsync(V4(p2), $"two {round}");
            await SendAsync(Name("echo.test", p2), $"named {round}");
            await SendAsync(Name("nowhere.test", p1), "unresolvable"); // dropped every time
            Assert.Equal($"one {round}", await NextAsync(e1));
            Assert.Equal($"two {round}", await NextAsync(e2));
            Assert.Equal($"named {round}", await NextAsync(e2));
        }

        Assert.Equal(2, resolved); // each name once, not once per datagram

        foreach (var sink in sinks) // more destinations than the relay remembers
        {
            await SendAsync(V4(((IPEndPoint)sink.Client.LocalEndPoint!).Port), "spread");
            Assert.Equal("spread", await NextAsync(sink));
        }

        await SendAsync(V4(p1), "one again");
        await SendAsync(V4(refusedPort), "refused again");
        await SendAsync(V4(p2), "two again");
        Assert.Equal("one again", await NextAsync(e1));
        Assert.Equal("two again", await NextAsync(e2));
        // the relay handles the client's datagrams in order and loopback delivers at once: a refused datagram
        // let through would be queued before "two again" arrived
        Assert.Equal(0, e1.Available + e2.Available + refused.Available); // nothing refused arrived anywhere
        foreach (var sink in sinks)
        {
            Assert.Equal(0, sink.Available);
            sink.Dispose();
        }
    }

    /// <summary>A name the resolver refuses outright (Dns throws ArgumentOutOfRangeException for a 255-character
    /// name without a trailing dot, which a client may send) drops that datagram only: the association relays on
    /// and its session does not fail.</summary>
    [Fact]
    public async Task Rfc1928_UdpAssociate_NameTheResolverRefuses_DropsTheDatagram_AndRelaysOn()
    {
        using var peer = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        var peerEndPoint = (IPEndPoint)peer.Client.LocalEndPoint!;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        var log = new ListLogger();
        var proxy = await ProxyServer.StartAsync(ProxyServerTests.TestOptions() with
        {
            SocksListen = new IPEndPoint(IPAddress.Loopback, 0),
            Resolve = (name, _) => throw new ArgumentOutOfRangeException(nameof(name), "as Dns does for a name it refuses"),
        }, SystemNetwork.Instance, log);
        try
        {
            using var udp = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
            using var control = new TcpClient();
            var relay = await AssociateAsync(proxy, control, udp, cts.Token);

            var name = new string('a', 255);
            byte[] named = [0, 0, 0, Socks5Codec.AtypDomain, 255, .. Encoding.ASCII.GetBytes(name), 0, 53, .. "lost"u8];
            await udp.SendAsync(named, relay, cts.Token);
            var datagram = new byte[10 + 5];
            Socks5Codec.WriteUdpHeader(datagram, peerEndPoint);
            "after"u8.CopyTo(datagram.AsSpan(10));
            await udp.SendAsync(datagram, relay, cts.Token);
            Assert.Equal("after", Encoding.ASCII.GetString((await peer.ReceiveAsync(cts.Token)).Buffer));
        }
        finally
        {
            await proxy.DisposeAsync(); // waits for the session to end
        }

        Assert.Empty(log.Lines(3)); // no session failed
    }

    [Fact]
    public async Task Rfc1928_Bind_IsNotSupported_AndNoAcceptableMethod_Gets0xFF()
    {
        await using var proxy = await ProxyServer.StartAsync(ProxyServerTests.TestOptions() with
        {
            SocksListen = new IPEndPoint(IPAddress.Loopback, 0),
            Credentials = "a:b",
        }, SystemNetwork.Instance);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        using (var c = new TcpClient())
        {
            await c.ConnectAsync(proxy.SocksEndPoint!, cts.Token);
            await c.GetStream().WriteAsync(new byte[] { 5, 1, 0 }, cts.Token);
            Assert.Equal(new byte[] { 5, 0xFF }, await ReadAsync(c.GetStream(), 2, cts.Token));
        }

        using (var c = new TcpClient())
        {
            await c.ConnectAsync(proxy.SocksEndPoint!, cts.Token);
            var s = c.GetStream();
            await s.WriteAsync(new byte[] { 5, 1, 2, 1, 1, (byte)'a', 1, (byte)'b', 5, 2, 0, 1, 127, 0, 0, 1, 0, 80 }, cts.Token);
            Assert.Equal(new byte[] { 5, 2, 1, 0 }, await ReadAsync(s, 4, cts.Token));
            var reply = await ReadAsync(s, 10, cts.Token);
            Assert.Equal((byte)SocksReply.CommandNotSupported, reply[1]);
        }
    }

    [Fact]
    public async Task Fuzz_RandomBytesToBothPorts_NeverStopTheServer()
    {
        await using var proxy = await ProxyServer.StartAsync(ProxyServerTests.TestOptions() with
        {
            SocksListen = new IPEndPoint(IPAddress.Loopback, 0),
            HeaderTimeout = TimeSpan.FromSeconds(1),
            Resolve = (_, _) => throw new NetworkException(SocketError.HostNotFound, "not found"), // no DNS for fuzzed names
        }, new LoopbackOnlyNetwork(SystemNetwork.Instance));
        var seeds = new[]
        {
            "GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: a\r\n\r\n",
            "POST http://127.0.0.1:1/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "\u0005\u0001\u0000\u0005\u0001\u0000\u0001\u007f\u0000\u0000\u0001\u0000\u0050",
        };
        var inputs = HttpHeadParserTests.MutatedGen(seeds).Sample(60, 60);
        var random = new Random(1);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        foreach (var input in inputs)
        {
            var port = random.Next(2) == 0 ? proxy.HttpEndPoint : proxy.SocksEndPoint!;
            using var c = new TcpClient();
            await c.ConnectAsync(port, cts.Token);
            var s = c.GetStream();
            try
            {
                await s.WriteAsync(input, cts.Token);
                c.Client.Shutdown(SocketShutdown.Send);
                var buffer = new byte[4096];
                while (await s.ReadAsync(buffer, cts.Token) > 0)
                {
                }
            }
            catch (IOException)
            {
                // a reset is a fine answer to garbage
            }
        }

        await using var good = await RawClient.ConnectAsync(proxy.HttpEndPoint);
        await good.SendAsync("GET /natkit/status HTTP/1.1\r\nHost: a\r\n\r\n");
        Assert.Equal(200, (await good.ReadResponseAsync()).Status);
    }

    [Fact]
    public async Task Socks5Connect_ReachesOnlyTheConnectPorts_ByDefault_AndItsOwnListWhenGiven()
    {
        // The attack run's SOCKS5 CONNECT reached port 22 while HTTP CONNECT was held to 443.
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var open = ((IPEndPoint)listener.LocalEndpoint).Port; // someone listens: a refusal is the proxy's
        var defaults = new ProxyOptions
        {
            HttpListen = new IPEndPoint(IPAddress.Loopback, 0),
            SocksListen = new IPEndPoint(IPAddress.Loopback, 0),
            AllowLoopbackDestinations = true, // so the port rule is what refuses
        };
        Assert.Null(defaults.SocksPorts);
        await using (var proxy = await ProxyServer.StartAsync(defaults, SystemNetwork.Instance))
        {
            Assert.Equal(SocksReply.NotAllowed, await SocksConnectAsync(proxy, 22));
            Assert.Equal(SocksReply.NotAllowed, await SocksConnectAsync(proxy, open));
        }

        await using (var proxy = await ProxyServer.StartAsync(defaults with { ConnectPorts = new HashSet<int> { open } },
                         SystemNetwork.Instance))
        {
            Assert.Equal(SocksReply.Succeeded, await SocksConnectAsync(proxy, open)); // follows --connect-ports
            Assert.Equal(SocksReply.NotAllowed, await SocksConnectAsync(proxy, 22));
        }

        await using (var proxy = await ProxyServer.StartAsync(defaults with { SocksPorts = new HashSet<int> { open } },
                         SystemNetwork.Instance))
        {
            Assert.Equal(SocksReply.Succeeded, await SocksConnectAsync(proxy, open)); // its own list
            await using var c = await RawClient.ConnectAsync(proxy.HttpEndPoint);
            await c.SendAsync($"CONNECT 127.0.0.1:{open} HTTP/1.1\r\nHost: 127.0.0.1:{open}\r\n\r\n");
            Assert.Equal(403, (await c.ReadResponseAsync()).Status); // HTTP CONNECT keeps its own
        }
    }

    [Fact]
    public async Task Proxy_RefusesItselfAsADestination_OverHttpConnectAndSocks5()
    {
        // The attack run nested 40 CONNECTs to the proxy's own listen endpoint, two connection slots a level.
        await using var proxy = await ProxyServer.StartAsync(ProxyServerTests.TestOptions() with
        {
            SocksListen = new IPEndPoint(IPAddress.Loopback, 0),
            ConnectPorts = ProxyOptions.AnyPort,
        }, SystemNetwork.Instance);
        var http = proxy.HttpEndPoint.Port;
        var socks = proxy.SocksEndPoint!.Port;
        foreach (var target in new[] { $"127.0.0.1:{http}", $"127.0.0.1:{socks}", $"127.0.0.2:{http}", $"[::ffff:127.0.0.1]:{http}" })
        {
            await using var c = await RawClient.ConnectAsync(proxy.HttpEndPoint);
            await c.SendAsync($"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
            var r = await c.ReadResponseAsync();
            Assert.True(r.Status == 403, $"CONNECT {target}: {r.Status}");
        }

        Assert.Equal(SocksReply.NotAllowed, await SocksConnectAsync(proxy, http));
        Assert.Equal(SocksReply.NotAllowed, await SocksConnectAsync(proxy, socks));

        // A name that resolves to this host is refused too: the check is on the address dialled.
        await using (var c = await RawClient.ConnectAsync(proxy.HttpEndPoint))
        {
            await c.SendAsync($"GET http://localhost:{http}/natkit/status HTTP/1.1\r\nHost: localhost:{http}\r\n\r\n");
            Assert.Equal(403, (await c.ReadResponseAsync()).Status);
        }
    }

    /// <summary>A SOCKS5 CONNECT (no authentication) to 127.0.0.1:<paramref name="port"/>; the reply code.</summary>
    private static async Task<SocksReply> SocksConnectAsync(ProxyServer proxy, int port)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        using var c = new TcpClient();
        await c.ConnectAsync(proxy.SocksEndPoint!, cts.Token);
        var s = c.GetStream();
        await s.WriteAsync(new byte[] { 5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, (byte)(port >> 8), (byte)port }, cts.Token);
        Assert.Equal(new byte[] { 5, 0 }, await ReadAsync(s, 2, cts.Token));
        var reply = await ReadAsync(s, 10, cts.Token);
        return (SocksReply)reply[1];
    }

    private static async Task<byte[]> ReadAsync(NetworkStream s, int count, CancellationToken token)
    {
        var b = new byte[count];
        await s.ReadExactlyAsync(b, token);
        return b;
    }
}
