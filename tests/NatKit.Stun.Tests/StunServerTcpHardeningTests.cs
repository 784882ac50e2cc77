using System.Buffers.Binary;
using System.Net;
using NatKit.Net;
using NatKit.Stun.Server;

namespace NatKit.Stun.Tests;

/// <summary>
/// Strangers holding the STUN server's TCP connections (issue 19's attack: one byte of a frame that claims 4,000
/// bytes every few seconds, from one address, kept every slot for good). The server runs on real loopback sockets
/// and a manual clock; a test moves time only once the server has armed the connection's watchdog, and sees a close
/// as the socket's FIN or reset.
/// </summary>
public class StunServerTcpHardeningTests
{
    private static readonly IPAddress Other = IPAddress.Parse("127.0.0.2");

    private static async Task<(StunServer Server, ManualTimeProvider Time)> StartAsync(int max, int perAddress)
    {
        var time = new ManualTimeProvider();
        var server = await StunServer.StartAsync(new ClockedNetwork(time), new StunServerOptions
        {
            Primary = new IPEndPoint(IPAddress.Loopback, 0),
            EnableUdp = false,
            RateLimitPerSecond = 0,
            MaxTcpConnections = max,
            MaxTcpConnectionsPerAddress = perAddress,
            TcpHandshakeTimeout = TimeSpan.FromSeconds(10),
            TcpIdleTimeout = TimeSpan.FromSeconds(30),
        });
        return (server, time);
    }

    private static CancellationTokenSource Deadline() => new(TimeSpan.FromSeconds(10));

    /// <summary>Connects (from <paramref name="local"/> when given) and waits until the server has accepted the
    /// connection and armed its watchdog, so the clock moves for it from here.</summary>
    private static async Task<IStreamConnection> ConnectArmedAsync(StunServer server, ManualTimeProvider time,
        IPAddress? local = null)
    {
        time.ResetArmed();
        using var cts = Deadline();
        var c = await SystemNetwork.Instance.ConnectTcpAsync(server.TcpEndPoint!,
            local is null ? null : new IPEndPoint(local, 0), cts.Token);
        await time.TimerArmed.WaitAsync(cts.Token);
        return c;
    }

    /// <summary>A whole Binding request sent on <paramref name="c"/> and answered with success.</summary>
    private static async Task<bool> BindingAnsweredAsync(IStreamConnection c)
    {
        var request = new StunMessage(StunMethods.Binding, StunClass.Request, StunTransactionId.NewRandom(), []).ToArray();
        using var cts = Deadline();
        try
        {
            await c.Stream.WriteAsync(request, cts.Token);
            var header = new byte[StunMessageReader.HeaderLength];
            await c.Stream.ReadExactlyAsync(header, cts.Token);
            var body = new byte[BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(2))];
            await c.Stream.ReadExactlyAsync(body, cts.Token);
            var response = StunMessage.Parse([.. header, .. body]);
            return response is { Class: StunClass.SuccessResponse } &&
                   response.TransactionId == StunMessage.Parse(request)!.TransactionId;
        }
        catch (Exception e) when (e is IOException or EndOfStreamException)
        {
            return false; // closed by the server
        }
    }

    /// <summary>True once the server has closed the connection (FIN or reset), false if the deadline comes first.</summary>
    private static async Task<bool> IsClosedByServerAsync(IStreamConnection c)
    {
        using var cts = Deadline();
        var buffer = new byte[64];
        try
        {
            while (await c.Stream.ReadAsync(buffer, cts.Token) > 0)
            {
            }

            return true;
        }
        catch (IOException)
        {
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>One more byte of a Binding request header that claims a 4,000-byte body: never a whole message.</summary>
    private static async Task TrickleAsync(IStreamConnection c, int i)
    {
        var frame = new byte[20];
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(0), StunMethods.Binding);
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(2), 4000);
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(4), StunMessageReader.MagicCookie);
        try
        {
            await c.Stream.WriteAsync(frame.AsMemory(i % frame.Length, 1));
        }
        catch (IOException)
        {
            // the server has closed it: what the test waits for
        }
    }

    [Fact]
    public async Task SlowLoris_FromOneAddress_KeepsNoSlotPastTheHandshakeWindow_AndARealTcpBindingIsServedThroughout()
    {
        var (server, time) = await StartAsync(max: 4, perAddress: 2);
        await using var _ = server;
        var trickles = new List<IStreamConnection>();
        for (var i = 0; i < 2; i++)
        {
            trickles.Add(await ConnectArmedAsync(server, time));
        }

        // The trickling host holds its two slots; a third connection from it is closed on accept.
        await using (var over = await SystemNetwork.Instance.ConnectTcpAsync(server.TcpEndPoint!))
        {
            Assert.True(await IsClosedByServerAsync(over));
        }

        Assert.Equal(1, server.Metrics.ConnectionsRejected);

        // Another host is served while the trickle goes on, a byte a second, on every connection.
        await using var real = await ConnectArmedAsync(server, time, Other);
        for (var second = 0; second < 10; second++)
        {
            foreach (var t in trickles)
            {
                await TrickleAsync(t, second);
            }

            Assert.True(await BindingAnsweredAsync(real), $"a real Binding was not served at {second} s");
            time.Advance(TimeSpan.FromSeconds(1));
        }

        // Ten seconds of bytes and never a whole message: the handshake window has closed every trickle.
        foreach (var t in trickles)
        {
            Assert.True(await IsClosedByServerAsync(t));
            await t.DisposeAsync();
        }

        Assert.Equal(2, server.Metrics.ConnectionsTimedOut);
        Assert.True(await BindingAnsweredAsync(real));
        await using var again = await ConnectArmedAsync(server, time); // the trickling host's slots are free again
        Assert.True(await BindingAnsweredAsync(again));
    }

    [Theory]
    [InlineData(false, 10)] // never a whole message: the handshake window (10 s) ends it
    [InlineData(true, 30)] // after a whole message: the idle timeout (30 s) ends it, the trickle does not reset it
    public async Task SlowLoris_TricklingOneMessage_IsCutOff_AndNotBefore(bool greetFirst, int seconds)
    {
        var (server, time) = await StartAsync(max: 8, perAddress: 8);
        await using var _ = server;
        await using var c = await ConnectArmedAsync(server, time);
        await using var witness = await ConnectArmedAsync(server, time, Other);
        if (greetFirst)
        {
            Assert.True(await BindingAnsweredAsync(c));
        }

        for (var i = 0; i < seconds; i++)
        {
            if (i == seconds - 1)
            {
                Assert.Equal(0, server.Metrics.ConnectionsTimedOut); // one second before the end it is still open
            }

            await TrickleAsync(c, i);
            // A whole round trip on another connection each second: the witness is served throughout, and the
            // server has had its turn to read the trickled byte before the clock moves.
            Assert.True(await BindingAnsweredAsync(witness));
            time.Advance(TimeSpan.FromSeconds(1));
        }

        Assert.True(await IsClosedByServerAsync(c));
        Assert.Equal(1, server.Metrics.ConnectionsTimedOut);
        Assert.Equal(1, server.TcpConnectionCount);
        Assert.True(await BindingAnsweredAsync(witness));
    }

    [Fact]
    public async Task WholeMessages_KeepAConnectionOpen_PastTheIdleTimeout()
    {
        var (server, time) = await StartAsync(max: 8, perAddress: 8);
        await using var _ = server;
        await using var c = await ConnectArmedAsync(server, time);
        for (var i = 0; i < 4; i++)
        {
            Assert.True(await BindingAnsweredAsync(c));
            time.Advance(TimeSpan.FromSeconds(20)); // 80 s in all, never 30 s without a message
        }

        Assert.True(await BindingAnsweredAsync(c));
        Assert.Equal(0, server.Metrics.ConnectionsTimedOut);
    }

    [Fact]
    public void Options_Validation_GoesThroughTheSharedCheck_AndNamesTheField()
    {
        var ok = new StunServerOptions();
        ok.Validate();
        Assert.Contains("MaxTcpConnectionsPerAddress", Assert.Throws<ArgumentException>(() =>
            (ok with { MaxTcpConnections = 10, MaxTcpConnectionsPerAddress = 11 }).Validate()).Message, StringComparison.Ordinal);
    }
}
