using System.Net;
using NatKit.Net;
using NatKit.Stun;
using NatKit.Turn.Protocol;
using NatKit.Turn.Server;
using NatKit.Turn.Tests.Support;

namespace NatKit.Turn.Tests.Server;

/// <summary>
/// Strangers holding TCP connections: the connection caps (total and per source address), the handshake window
/// and the idle timeout. Real loopback sockets, the server on a manual clock: a test moves time only after the
/// server has armed the connection's timer (<see cref="ManualTimeProvider.TimerArmed"/>), and sees a close as
/// the socket's FIN or reset.
/// </summary>
public class TcpHardeningTests
{
    private static readonly TimeSpan Tick = TimeSpan.FromTicks(1);

    private static Task<TurnHarness> StartAsync(int max = 1024, int perAddress = 128) =>
        TurnHarness.StartAsync(o => o with
        {
            MaxTcpConnections = max,
            MaxTcpConnectionsPerAddress = perAddress,
            TcpHandshakeTimeout = TimeSpan.FromSeconds(10),
            TcpIdleTimeout = TimeSpan.FromSeconds(30),
        });

    /// <summary>Connects and waits until the server has accepted the connection and armed its watchdog.</summary>
    private static async Task<RawClient> ConnectArmedAsync(TurnHarness h, IPEndPoint? local = null)
    {
        h.Time.ResetArmed();
        var c = await RawClient.ConnectTcpAsync(h.Tcp, local);
        await h.Time.TimerArmed.WaitAsync(TimeSpan.FromSeconds(10));
        return c;
    }

    private static byte[] BindingWithBody()
    {
        var buffer = new byte[256];
        var w = new StunMessageWriter(buffer, StunMethods.Binding, StunClass.Request, StunTransactionId.NewRandom());
        w.AddString(StunAttributeType.Software, "a slow loris, one byte at a time");
        return w.Written.ToArray();
    }

    [Fact]
    public async Task ConnectionCap_ClosesTheNextConnection_TheOthersKeepAnswering_AndAClosedOneFreesItsSlot()
    {
        await using var h = await StartAsync(max: 3, perAddress: 3);
        var held = new List<RawClient>();
        for (var i = 0; i < 3; i++)
        {
            held.Add(await RawClient.ConnectTcpAsync(h.Tcp));
        }

        await using (var over = await RawClient.ConnectTcpAsync(h.Tcp))
        {
            Assert.True(await over.IsClosedByServerAsync());
        }

        Assert.Equal(1, h.Server.Metrics.ConnectionsRejected);
        foreach (var c in held)
        {
            Assert.True(await c.BindingAnsweredAsync());
        }

        Assert.Equal(3, h.Server.TcpConnectionCount);
        Assert.True(await held[0].HangUpAsync());
        await held[0].DisposeAsync();
        await using (var next = await RawClient.ConnectTcpAsync(h.Tcp))
        {
            Assert.True(await next.BindingAnsweredAsync());
        }

        Assert.Equal(1, h.Server.Metrics.ConnectionsRejected);
        foreach (var c in held.Skip(1))
        {
            await c.DisposeAsync();
        }
    }

    [Fact]
    public async Task ConnectionCap_PerSourceAddress_LeavesRoomForOtherHosts()
    {
        await using var h = await StartAsync(max: 8, perAddress: 2);
        await using var a1 = await RawClient.ConnectTcpAsync(h.Tcp);
        await using var a2 = await RawClient.ConnectTcpAsync(h.Tcp);
        await using (var a3 = await RawClient.ConnectTcpAsync(h.Tcp))
        {
            Assert.True(await a3.IsClosedByServerAsync());
        }

        await using var b = await RawClient.ConnectTcpAsync(h.Tcp, new IPEndPoint(IPAddress.Parse("127.0.0.2"), 0));
        Assert.True(await b.BindingAnsweredAsync());
        Assert.True(await a1.BindingAnsweredAsync());
        Assert.True(await a2.BindingAnsweredAsync());
        Assert.Equal(1, h.Server.Metrics.ConnectionsRejected);
    }

    [Fact]
    public async Task SilentConnection_IsClosedAfterTheHandshakeWindow_AndNotBefore()
    {
        await using var h = await StartAsync();
        await using var early = await ConnectArmedAsync(h);
        h.Time.Advance(TimeSpan.FromSeconds(10) - Tick);
        Assert.True(await early.BindingAnsweredAsync()); // still open one tick before the window ends

        await using var silent = await ConnectArmedAsync(h);
        h.Time.Advance(TimeSpan.FromSeconds(10));
        Assert.True(await silent.IsClosedByServerAsync());
        Assert.Equal(1, h.Server.Metrics.ConnectionsTimedOut);
        Assert.True(await early.BindingAnsweredAsync()); // greeted: the idle timeout (30 s) governs it
    }

    [Fact]
    public async Task GreetedConnection_WithoutAllocation_IsClosedWhenIdle_EachMessageRestartsTheTimeout()
    {
        await using var h = await StartAsync();
        await using var c = await ConnectArmedAsync(h);
        Assert.True(await c.BindingAnsweredAsync());
        h.Time.Advance(TimeSpan.FromSeconds(20));
        Assert.True(await c.BindingAnsweredAsync());
        h.Time.Advance(TimeSpan.FromSeconds(20)); // 40 s since the first message, 20 s since the last
        Assert.True(await c.BindingAnsweredAsync());
        h.Time.Advance(TimeSpan.FromSeconds(30));
        Assert.True(await c.IsClosedByServerAsync());
        Assert.Equal(1, h.Server.Metrics.ConnectionsTimedOut);
    }

    [Theory]
    [InlineData(false, 10)] // never a whole message: the handshake window (10 s) ends it
    [InlineData(true, 30)] // after a valid message: the idle timeout (30 s) ends it
    public async Task SlowLoris_TricklingOneMessage_IsCutOff(bool greetFirst, int seconds)
    {
        await using var h = await StartAsync();
        await using var c = await ConnectArmedAsync(h);
        if (greetFirst)
        {
            Assert.True(await c.BindingAnsweredAsync());
        }

        var message = BindingWithBody();
        for (var i = 0; i < seconds; i++)
        {
            await c.SendAsync(message[i..(i + 1)]); // a byte a second, never the whole message
            h.Time.Advance(TimeSpan.FromSeconds(1));
        }

        Assert.True(await c.IsClosedByServerAsync());
        Assert.Equal(1, h.Server.Metrics.ConnectionsTimedOut);
    }

    [Fact]
    public async Task Rfc8656_LiveAllocation_OutlivesTheIdleTimeout_ThenTheConnectionEndsIdleAfterItExpires()
    {
        await using var h = await StartAsync();
        await using var c = await ConnectArmedAsync(h);
        Assert.Equal(StunClass.SuccessResponse, (await c.AllocateAsync()).Class);
        h.Time.Advance(TimeSpan.FromSeconds(90)); // three idle timeouts with not a byte sent
        Assert.True(await c.BindingAnsweredAsync());
        Assert.Equal(0, h.Server.Metrics.ConnectionsTimedOut);

        h.Time.Advance(TimeSpan.FromSeconds(512)); // the 600 s lifetime ends, unrefreshed
        Assert.Equal(0, h.Server.AllocationCount);
        Assert.Equal(0, h.Server.Metrics.ConnectionsTimedOut);
        Assert.True(await c.BindingAnsweredAsync()); // the idle timeout runs from the allocation's end: not cut there
        h.Time.Advance(TimeSpan.FromSeconds(31));
        Assert.True(await c.IsClosedByServerAsync());
        Assert.Equal(1, h.Server.Metrics.ConnectionsTimedOut);
    }

    [Fact]
    public async Task Rfc8656_7_3_DeletedAllocation_LeavesTheConnectionToTheIdleTimeout()
    {
        await using var h = await StartAsync();
        await using var c = await ConnectArmedAsync(h);
        await c.AllocateAsync();
        h.Time.Advance(TimeSpan.FromSeconds(100));
        var refresh = await c.TransactAsync(c.Build(TurnMethods.Refresh,
            static (ref StunMessageWriter w) => w.AddUInt32(TurnAttributeType.Lifetime, 0)));
        Assert.Equal(StunClass.SuccessResponse, refresh.Class);
        Assert.Equal(0, h.Server.AllocationCount);
        h.Time.Advance(TimeSpan.FromSeconds(30) - Tick);
        Assert.True(await c.BindingAnsweredAsync()); // not before the idle timeout
        h.Time.Advance(TimeSpan.FromSeconds(30));
        Assert.True(await c.IsClosedByServerAsync());
    }

    [Fact]
    public void Options_Validation_GoesThroughTheSharedCheck_AndNamesTheField()
    {
        // The four settings are checked by TcpConnectionLimits.Validate (its cases: NatKit.Stun.Tests).
        var ok = new TurnServerOptions { SharedSecret = "s" };
        ok.Validate();
        Assert.Contains("TcpIdleTimeout", Assert.Throws<ArgumentException>(() =>
            (ok with { TcpIdleTimeout = TimeSpan.FromSeconds(-1) }).Validate()).Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Fuzz_RandomAndMutatedTcpStreams_GetAnswersOrAClose_AndTheServerServesOn()
    {
        await using var h = await StartAsync();
        await using var probe = await RawClient.ConnectTcpAsync(h.Tcp);
        var seeds = new List<byte[]>
        {
            probe.Build(StunMethods.Binding, null, user: null),
            BindingWithBody(),
            probe.Build(TurnMethods.Allocate, RawClient.RequestUdp, user: null),
            probe.Build(TurnMethods.Allocate, RawClient.RequestUdp),
            probe.Build(TurnMethods.Refresh, static (ref StunMessageWriter w) => w.AddUInt32(TurnAttributeType.Lifetime, 0)),
            probe.Build(TurnMethods.ChannelBind, static (ref StunMessageWriter w) =>
            {
                w.AddUInt32(TurnAttributeType.ChannelNumber, 0x4000u << 16);
                w.AddXorAddress(TurnAttributeType.XorPeerAddress, StunAddress.FromAddress(IPAddress.Loopback, 9));
            }),
            new byte[] { 0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0 },
            new byte[] { 0x40, 0x00, 0xFF, 0xFF },
        };
        var random = new Random(8656);
        for (var i = 0; i < 60; i++)
        {
            var stream = new MemoryStream();
            for (var f = random.Next(1, 4); f > 0; f--)
            {
                byte[] frame;
                if (random.Next(4) == 0)
                {
                    frame = new byte[random.Next(1, 120)];
                    random.NextBytes(frame);
                }
                else
                {
                    frame = (byte[])seeds[random.Next(seeds.Count)].Clone();
                    for (var k = random.Next(0, 4); k > 0; k--)
                    {
                        frame[random.Next(frame.Length)] = (byte)random.Next(256);
                    }
                }

                stream.Write(frame);
            }

            var bytes = stream.ToArray();
            await using var c = await RawClient.ConnectTcpAsync(h.Tcp);
            for (var at = 0; at < bytes.Length;)
            {
                var chunk = Math.Min(bytes.Length - at, random.Next(1, 64)); // messages split across writes
                if (!await c.TryWriteAsync(bytes.AsMemory(at, chunk)))
                {
                    break; // the server already closed on bad framing
                }

                at += chunk;
            }

            // However the bytes ended (a whole answerable message, a truncated one, garbage), hanging up gets a
            // close: no connection is left stuck, and nothing a client sent stops the server.
            Assert.True(await c.HangUpAndDrainAsync(), $"case {i}: the server did not close");
        }

        Assert.True(await probe.BindingAnsweredAsync());
        Assert.Equal(1, h.Server.TcpConnectionCount); // the probe; every fuzzed connection freed its slot
        Assert.Equal(0, h.Server.AllocationCount); // allocations made by fuzzed connections ended with them
        await using var fresh = await RawClient.ConnectTcpAsync(h.Tcp);
        Assert.Equal(StunClass.SuccessResponse, (await fresh.AllocateAsync()).Class);
    }
}
