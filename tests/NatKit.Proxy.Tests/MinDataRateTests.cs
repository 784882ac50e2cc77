using System.Net;
using System.Security.Cryptography;
using System.Text;
using NatKit.Net;
using NatKit.Proxy.Tests.Support;
using NatKit.TestSupport;

namespace NatKit.Proxy.Tests;

/// <summary>The minimum request body data rate, on a virtual clock: a body trickled one byte a second is cut off
/// when its average falls below the rate after the grace period; a slow but steady upload passes.
/// <see cref="ManualTimeProvider.TimerArmed"/> tells when the proxy has read a piece and waits for the next
/// (the rate's timer is armed at every wait once a body has started), so each virtual second is a second the
/// proxy spent waiting for the client.</summary>
public sealed class MinDataRateTests
{
    private static ProxyOptions RateOptions() => ProxyServerTests.TestOptions() with
    {
        MinRequestBodyDataRate = 100,
        MinRequestBodyDataRateGracePeriod = TimeSpan.FromSeconds(5),
        IdleTimeout = TimeSpan.FromSeconds(60),
    };

    /// <summary>Sends <paramref name="piece"/> and waits until the proxy has read it and waits for more.</summary>
    private static async Task SendAndWaitForTheNextReadAsync(ManualTimeProvider time, RawClient c, byte[] piece)
    {
        time.ResetArmed();
        await c.SendAsync(piece);
        await time.TimerArmed.WaitAsync(TimeSpan.FromSeconds(15));
    }

    [Fact]
    public async Task OneByteASecondBody_IsCutOffWith408_WhenItsAverageFallsBelowTheRate_AfterTheGrace()
    {
        // an origin that takes the head and then reads whatever body comes, recording whether it was complete
        var listener = await SystemNetwork.Instance.ListenTcpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        await using var _ = listener;
        var headSeen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var origin = Task.Run(async () =>
        {
            await using var conn = await listener.AcceptAsync();
            var text = "";
            var buf = new byte[4096];
            int n;
            while ((n = await conn.Stream.ReadAsync(buf)) > 0)
            {
                text += Encoding.Latin1.GetString(buf, 0, n);
                if (text.Contains("\r\n\r\n", StringComparison.Ordinal))
                {
                    headSeen.TrySetResult();
                }
            }

            return text[(text.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..].Length;
        });
        var time = new ManualTimeProvider();
        await using var proxy = await ProxyServer.StartAsync(RateOptions(), new ClockedNetwork(time));
        await using var c = await RawClient.ConnectAsync(proxy.HttpEndPoint);
        await c.SendAsync($"POST http://127.0.0.1:{listener.LocalEndPoint.Port}/ HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n");
        await headSeen.Task.WaitAsync(TimeSpan.FromSeconds(15)); // the proxy now waits for the body
        var response = c.ReadResponseAsync();

        await SendAndWaitForTheNextReadAsync(time, c, "x"u8.ToArray()); // the first byte starts the count
        for (var second = 1; second <= 4; second++)
        {
            time.Advance(TimeSpan.FromSeconds(1));
            await SendAndWaitForTheNextReadAsync(time, c, "x"u8.ToArray());
        }

        // 4.9 s of waiting for 5 bytes: still inside the grace, so the next byte is read
        time.Advance(TimeSpan.FromSeconds(0.9));
        await SendAndWaitForTheNextReadAsync(time, c, "x"u8.ToArray());
        Assert.False(response.IsCompleted, "cut off inside the grace period");

        // past 5 s with 6 bytes (needs 500 at 100 B/s): cut off
        time.Advance(TimeSpan.FromSeconds(0.2));
        var r = await response;
        Assert.Equal(408, r.Status);
        Assert.Contains("slower than 100 bytes/s", r.Text, StringComparison.Ordinal);
        Assert.True(await c.ClosedAsync());
        Assert.True(await origin < 100, "the origin must not see the body as complete");
    }

    [Fact]
    public async Task SlowButSteadyUpload_AboveTheRate_Passes_AndArrivesIntact()
    {
        await using var origin = await Origin.StartAsync();
        var time = new ManualTimeProvider();
        await using var proxy = await ProxyServer.StartAsync(RateOptions() with { ConnectPorts = new HashSet<int> { 443 } },
            new ClockedNetwork(time));
        await using var c = await RawClient.ConnectAsync(proxy.HttpEndPoint);
        var body = new byte[2000];
        new Random(5).NextBytes(body);
        var id = Guid.NewGuid().ToString("N");
        await c.SendAsync($"PUT http://127.0.0.1:{origin.Port}/echo HTTP/1.1\r\nHost: a\r\nX-Test-Id: {id}\r\n" +
                          $"Content-Length: {body.Length}\r\n\r\n");
        var response = c.ReadResponseAsync();

        // 125 bytes/s for 16 s: slow, well past the grace, above the 100 bytes/s floor
        for (var i = 0; i < body.Length - 50; i += 50)
        {
            await SendAndWaitForTheNextReadAsync(time, c, body[i..(i + 50)]);
            time.Advance(TimeSpan.FromSeconds(0.4));
        }

        await c.SendAsync(body[^50..]); // the last piece: no wait follows it

        var r = await response;
        Assert.Equal(200, r.Status);
        Assert.Equal(body, r.Body);
        Assert.Equal(Convert.ToHexString(SHA256.HashData(body)), origin.Received[id].Sha256);
    }

    [Fact]
    public async Task TrickledBody_IsCutOffOnTheRealClock()
    {
        // an origin that reads and waits for the whole body before it would answer
        var listener = await SystemNetwork.Instance.ListenTcpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        await using var _ = listener;
        var origin = Task.Run(async () =>
        {
            await using var conn = await listener.AcceptAsync();
            var buf = new byte[4096];
            while (await conn.Stream.ReadAsync(buf) > 0)
            {
            }
        });
        await using var proxy = await ProxyServer.StartAsync(ProxyServerTests.TestOptions() with
        {
            MinRequestBodyDataRate = 100,
            MinRequestBodyDataRateGracePeriod = TimeSpan.FromSeconds(1),
        }, SystemNetwork.Instance);
        await using var c = await RawClient.ConnectAsync(proxy.HttpEndPoint);
        await c.SendAsync($"POST http://127.0.0.1:{listener.LocalEndPoint.Port}/ HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n");
        var response = c.ReadResponseAsync();
        var started = DateTime.UtcNow;
        await TrickleAsync(c, response);
        var r = await response;
        Assert.Equal(408, r.Status);
        Assert.InRange((DateTime.UtcNow - started).TotalSeconds, 0.9, 8); // ~1 s of waiting for 4 bytes a second
        await origin; // the proxy closed the origin's connection: it never saw the body as complete
    }

    [Fact]
    public async Task TrickledBody_OnceTheResponseHasBegun_ClosesTheConnection_OnTheRealClock()
    {
        await using var origin = await Origin.StartAsync(); // /echo answers while the body is still coming
        // The response must have begun before the grace ends, or the proxy rightly answers 408 instead: a cold
        // origin (Kestrel's first request, JIT, on a loaded machine) once stayed silent past a 1 s grace. So the echo
        // path is warmed first, straight to the origin, and the grace is 2 s.
        using (var warm = new HttpClient())
        {
            using var echoed = await warm.PostAsync($"http://127.0.0.1:{origin.Port}/echo", new ByteArrayContent("warm"u8.ToArray()));
            Assert.Equal("warm", await echoed.Content.ReadAsStringAsync());
        }

        await using var proxy = await ProxyServer.StartAsync(ProxyServerTests.TestOptions() with
        {
            MinRequestBodyDataRate = 100,
            MinRequestBodyDataRateGracePeriod = TimeSpan.FromSeconds(2),
        }, SystemNetwork.Instance);
        await using var c = await RawClient.ConnectAsync(proxy.HttpEndPoint);
        await c.SendAsync($"POST http://127.0.0.1:{origin.Port}/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\nxx");
        var response = c.ReadResponseAsync();
        await TrickleAsync(c, response);
        await Assert.ThrowsAsync<EndOfStreamException>(() => response); // the 200 is cut short: no 408 can follow it
    }

    /// <summary>Sends a byte every quarter second (the client's pace, by design) until the response task ends or
    /// the proxy closes; at most 10 s.</summary>
    private static async Task TrickleAsync(RawClient c, Task response)
    {
        for (var i = 0; i < 40 && !response.IsCompleted; i++)
        {
            try
            {
                await c.SendAsync("x"u8.ToArray());
            }
            catch (IOException)
            {
                break;
            }

            await Task.WhenAny(response, Task.Delay(TimeSpan.FromSeconds(0.25)));
        }
    }

    [Fact]
    public void AHugeFastBody_PutsTheLimitFarAhead_WithoutOverflowingTheRealTimer()
    {
        using var deadline = new Deadline(TimeProvider.System, TimeSpan.FromSeconds(60), CancellationToken.None);
        using var rate = new MinDataRate(TimeProvider.System, 1, TimeSpan.FromSeconds(5), deadline, fromFirstByte: true);
        rate.Reset();
        for (var i = 0; i < 10; i++)
        {
            rate.Begin();
            rate.End(int.MaxValue); // 20 GiB at 1 B/s: the average stays above the floor for centuries
        }

        rate.Begin(); // a System timer past ~49 days would throw here
        Assert.False(rate.Violated);
        Assert.False(deadline.Token.IsCancellationRequested);
    }

    /// <summary>The two ways a wait starts counting, on a virtual clock (the rate's timer fires inside Advance): a
    /// response's rate counts its very first wait (the head's write), a request body's only once a byte has come
    /// (a client may wait for 100 Continue first). Either way the cut comes at the grace, not before.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TheFirstWait_CountsForAResponse_AndNotForARequestBodyBeforeItsFirstByte(bool fromFirstByte)
    {
        var time = new ManualTimeProvider();
        var grace = TimeSpan.FromSeconds(5);
        var margin = TimeSpan.FromMilliseconds(10);
        using var deadline = new Deadline(time, TimeSpan.FromHours(2), CancellationToken.None);
        using var rate = new MinDataRate(time, 100, grace, deadline, fromFirstByte);
        rate.Reset();
        rate.Begin();
        if (fromFirstByte)
        {
            time.Advance(TimeSpan.FromHours(1)); // waiting for the first byte: only the idle timeout applies
            Assert.False(rate.Violated);
            rate.End(1);
            rate.Begin();
        }

        time.Advance(grace - margin);
        Assert.False(rate.Violated);
        Assert.False(deadline.Token.IsCancellationRequested);
        time.Advance(margin * 2);
        Assert.True(rate.Violated);
        Assert.True(deadline.Token.IsCancellationRequested);
    }

    /// <summary>Reset starts a new message: the waiting of the one before is not carried over (a keep-alive
    /// connection's second response gets its own grace).</summary>
    [Fact]
    public void Reset_ForgetsThePreviousMessagesWaiting()
    {
        var time = new ManualTimeProvider();
        var grace = TimeSpan.FromSeconds(5);
        var margin = TimeSpan.FromMilliseconds(10);
        using var deadline = new Deadline(time, TimeSpan.FromHours(2), CancellationToken.None);
        using var rate = new MinDataRate(time, 100, grace, deadline, fromFirstByte: false);
        rate.Reset();
        rate.Begin();
        time.Advance(grace - margin);
        rate.End(0);

        rate.Reset();
        rate.Begin();
        time.Advance(grace - margin);
        Assert.False(rate.Violated, "the previous message's waiting was counted again");
        time.Advance(margin * 2);
        Assert.True(rate.Violated);
    }

    [Fact]
    public void MinRequestBodyDataRate_IsValidated()
    {
        Assert.Throws<ArgumentException>(() => (ProxyServerTests.TestOptions() with { MinRequestBodyDataRate = -1 }).Validate());
        Assert.Throws<ArgumentException>(() => (ProxyServerTests.TestOptions() with { MinRequestBodyDataRate = double.NaN }).Validate());
        Assert.Throws<ArgumentException>(() => (ProxyServerTests.TestOptions() with
        {
            MinRequestBodyDataRateGracePeriod = TimeSpan.Zero,
        }).Validate());
        (ProxyServerTests.TestOptions() with { MinRequestBodyDataRate = 0 }).Validate();
        Assert.Equal(240, new ProxyOptions().MinRequestBodyDataRate); // Kestrel's default
    }
}
