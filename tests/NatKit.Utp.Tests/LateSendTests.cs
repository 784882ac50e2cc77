using System.Buffers;
using System.Net;

namespace NatKit.Utp.Tests;

/// <summary>
/// Sends that the socket finishes reading only later (SendToAsync returns a pending ValueTask, as a busy kernel's
/// does): uTP must never rewrite, reuse or pool a buffer such a send still reads, or a datagram leaves with another
/// packet's bytes under its sequence number.
/// </summary>
public sealed class LateSendTests
{
    private static readonly IPEndPoint A = new(IPAddress.Parse("10.0.0.1"), 1000);
    private static readonly IPEndPoint B = new(IPAddress.Parse("10.0.0.2"), 2000);

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public async Task SendsReadLate_AcrossRetransmissionsAndAcks_NeverSeeTheirBufferReused(int seed)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var net = new TestDatagramNetwork(seed);
        var wireA = new LateReadingDatagramSocket(net.Bind(A), seed * 10);
        var wireB = new LateReadingDatagramSocket(net.Bind(B), (seed * 10) + 1);
        // A small window recycles the send slots every 32 packets, so a held send outlives its slot's packet.
        var options = new UtpOptions
        {
            MaxPacketsInFlight = 32,
            MinRetransmitTimeout = TimeSpan.FromMilliseconds(50),
            TickInterval = TimeSpan.FromMilliseconds(10),
        };
        var a = new UtpSocket(wireA, TimeProvider.System, options, ownsSocket: false);
        var b = new UtpSocket(wireB, TimeProvider.System, options, ownsSocket: false);
        try
        {
            b.Listen();
            var accept = b.AcceptAsync(cts.Token);
            var client = await a.ConnectAsync(B, cts.Token);
            var server = await accept;
            wireA.HoldProbability = 0.05;
            wireB.HoldProbability = 0.05;
            net.Loss = 0.02;

            // Writes of random sizes, each flushed, make packets of varied lengths: a send that reads a slot after
            // the slot took a later packet then carries that packet's sequence number with the wrong bytes.
            var up = TestData.Generate(400_000, 21);
            var down = TestData.Generate(200_000, 22);
            var readUp = TestData.ReadToEndAsync(server, cts.Token);
            var readDown = TestData.ReadToEndAsync(client, cts.Token);
            var sizes = new Random(seed);
            for (var offset = 0; offset < up.Length;)
            {
                var n = Math.Min(up.Length - offset, 1 + sizes.Next(3 * 1380));
                await client.WriteAsync(up.AsMemory(offset, n), cts.Token);
                await client.FlushAsync(cts.Token);
                offset += n;
            }

            client.ShutdownWrite();
            await TestData.WriteChunkedAsync(server, down, 9_973, cts.Token);
            server.ShutdownWrite();
            Assert.Equal(TestData.Sha256(up), TestData.Sha256(await readUp));
            Assert.Equal(TestData.Sha256(down), TestData.Sha256(await readDown));
            await client.FlushAsync(cts.Token);
            await server.FlushAsync(cts.Token);

            Assert.True(wireA.HeldTotal > 10 && wireB.HeldTotal > 5, $"held {wireA.HeldTotal}/{wireB.HeldTotal}");
            Assert.True(client.Statistics.Retransmissions > 0, "held data packets must have been retransmitted");
            Assert.Equal(0, wireA.MutatedWhileHeld);
            Assert.Equal(0, wireB.MutatedWhileHeld);
        }
        finally
        {
            await a.DisposeAsync();
            await b.DisposeAsync();
            wireA.Dispose();
            wireB.Dispose();
        }
    }

    [Fact]
    public async Task Close_WhileSendsStillReadTheirBuffers_ReturnsNoneOfThemToThePool()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var net = new TestDatagramNetwork();
        var wireA = new LateReadingDatagramSocket(net.Bind(A), 7);
        var wireB = new LateReadingDatagramSocket(net.Bind(B), 8);
        var options = new UtpOptions { MaxPacketsInFlight = 32 };
        var a = new UtpSocket(wireA, TimeProvider.System, options, ownsSocket: false);
        var b = new UtpSocket(wireB, TimeProvider.System, options, ownsSocket: false);
        try
        {
            b.Listen();
            var accept = b.AcceptAsync(cts.Token);
            var client = await a.ConnectAsync(B, cts.Token);
            _ = await accept;

            // Every send from here on is still being read when the endpoint closes (the first window: two packets).
            wireA.HoldProbability = 1;
            wireA.MaxHoldSends = int.MaxValue;
            await client.WriteAsync(TestData.Generate(20_000, 9), cts.Token);
            var held = wireA.HeldArrays();
            Assert.True(held.Count >= 2, $"only {held.Count} sends held");

            // Disposing releases the connection's slot buffers to the pool on this thread; rent the pool dry.
            a.Dispose();
            var rented = new List<byte[]>();
            for (var i = 0; i < 512; i++)
            {
                rented.Add(ArrayPool<byte>.Shared.Rent(options.MaxDatagramSize));
            }

            var pooledWhileHeld = rented.Count(r => held.Exists(h => ReferenceEquals(h, r)));
            foreach (var r in rented)
            {
                ArrayPool<byte>.Shared.Return(r);
            }

            Assert.Equal(0, pooledWhileHeld);
            Assert.Equal(0, wireA.MutatedWhileHeld);
        }
        finally
        {
            await a.DisposeAsync();
            await b.DisposeAsync();
            wireA.Dispose();
            wireB.Dispose();
        }
    }
}
