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
    private static readonly IPEndPoint AddressA = new(IPAddress.Parse("10.0.0.1"), 1000);
    private static readonly IPEndPoint AddressB = new(IPAddress.Parse("10.0.0.2"), 2000);

    // A small window recycles the send slots every 32 packets, so a held send outlives its slot's packet.
    private static readonly UtpOptions Options = new()
    {
        MaxPacketsInFlight = 32,
        MinRetransmitTimeout = TimeSpan.FromMilliseconds(50),
        TickInterval = TimeSpan.FromMilliseconds(10),
    };

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public async Task SendsReadLate_AcrossRetransmissionsAndAcks_NeverSeeTheirBufferReused(int seed)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await using var pair = new LatePair(seed);
        var (client, server) = await pair.ConnectAsync(cts.Token);
        pair.WireA.HoldProbability = 0.05;
        pair.WireB.HoldProbability = 0.05;
        pair.Net.Loss = 0.02;

        // Writes of random sizes, each flushed, make packets of varied lengths: a send that reads a slot after the
        // slot took a later packet then carries that packet's sequence number with the wrong bytes.
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
        await client.FlushAsync(cts.Token); // the FINs were acknowledged: both connections completed
        await server.FlushAsync(cts.Token);

        Assert.True(pair.WireA.HeldTotal > 10 && pair.WireB.HeldTotal > 5,
            $"held {pair.WireA.HeldTotal}/{pair.WireB.HeldTotal}");
        Assert.True(client.Statistics.Retransmissions > 0, "held data packets must have been retransmitted");
        Assert.Equal(0, pair.WireA.MutatedWhileHeld);
        Assert.Equal(0, pair.WireB.MutatedWhileHeld);
    }

    [Fact]
    public async Task Close_WhileSendsStillReadTheirBuffers_ReturnsNoneOfThemToThePool()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await using var pair = new LatePair(7);
        var (client, _) = await pair.ConnectAsync(cts.Token);

        // Every send from here on is still being read when the endpoint closes (the first window: two packets).
        pair.WireA.HoldProbability = 1;
        pair.WireA.MaxHoldSends = int.MaxValue;
        await client.WriteAsync(TestData.Generate(20_000, 9), cts.Token);
        var held = pair.WireA.HeldArrays();
        Assert.True(held.Count >= 2, $"only {held.Count} sends held");

        // Disposing releases the connection's slot buffers to the pool on this thread; rent the pool dry.
        pair.A.Dispose();
        var rented = new List<byte[]>();
        for (var i = 0; i < 512; i++)
        {
            rented.Add(ArrayPool<byte>.Shared.Rent(Options.MaxDatagramSize));
        }

        var pooledWhileHeld = rented.Count(r => held.Exists(h => ReferenceEquals(h, r)));
        foreach (var r in rented)
        {
            ArrayPool<byte>.Shared.Return(r);
        }

        Assert.Equal(0, pooledWhileHeld);
        Assert.Equal(0, pair.WireA.MutatedWhileHeld);
    }

    /// <summary>Two endpoints on late-reading sockets over the in-test network; held sends are read at the end.</summary>
    private sealed class LatePair : IAsyncDisposable
    {
        public LatePair(int seed)
        {
            Net = new TestDatagramNetwork(seed);
            WireA = new LateReadingDatagramSocket(Net.Bind(AddressA), seed * 10);
            WireB = new LateReadingDatagramSocket(Net.Bind(AddressB), (seed * 10) + 1);
            A = new UtpSocket(WireA, TimeProvider.System, Options, ownsSocket: false);
            B = new UtpSocket(WireB, TimeProvider.System, Options, ownsSocket: false);
        }

        public TestDatagramNetwork Net { get; }

        public LateReadingDatagramSocket WireA { get; }

        public LateReadingDatagramSocket WireB { get; }

        public UtpSocket A { get; }

        public UtpSocket B { get; }

        public async Task<(UtpStream Client, UtpStream Server)> ConnectAsync(CancellationToken ct)
        {
            B.Listen();
            var accept = B.AcceptAsync(ct);
            var client = await A.ConnectAsync(AddressB, ct);
            return (client, await accept);
        }

        public async ValueTask DisposeAsync()
        {
            await A.DisposeAsync();
            await B.DisposeAsync();
            WireA.Dispose();
            WireB.Dispose();
        }
    }
}
