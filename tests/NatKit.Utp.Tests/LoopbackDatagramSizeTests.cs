using System.Net;

namespace NatKit.Utp.Tests;

/// <summary><see cref="UtpOptions.LoopbackMaxDatagramSize"/>: large datagrams to a loopback peer only, chosen per
/// connection by the peer's address, and a receiver that takes any size whatever its own setting.</summary>
public sealed class LoopbackDatagramSizeTests
{
    private static readonly UtpOptions Large = UtpOptions.Default with { LoopbackMaxDatagramSize = 16 * 1024 };

    [Theory]
    [InlineData("127.0.0.1", "127.0.0.2", 16 * 1024)]
    [InlineData("::1", "::1", 16 * 1024)]
    [InlineData("10.0.0.1", "10.0.0.2", 1400)]
    public async Task DatagramSize_FollowsThePeersAddress_AndTheBytesArriveIntact(string a, string b, int expected)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var net = new TestDatagramNetwork();
        var sizes = new SizeRecorder();
        net.Sent += sizes.Record;
        var addressA = new IPEndPoint(IPAddress.Parse(a), 1000);
        var addressB = new IPEndPoint(IPAddress.Parse(b), 2000);
        await using var sender = new UtpSocket(net.Bind(addressA), TimeProvider.System, Large);
        // The receiver keeps the default (no loopback size): it still takes the sender's large datagrams.
        await using var receiver = new UtpSocket(net.Bind(addressB), TimeProvider.System);
        receiver.Listen();
        var accept = receiver.AcceptAsync(cts.Token);
        await using var client = await sender.ConnectAsync(addressB, cts.Token);
        await using var server = await accept;

        var up = TestData.Generate(400_000, 21);
        var down = TestData.Generate(100_000, 22);
        await TestData.ExchangeAndVerifyAsync(client, server, up, down, 65536, cts.Token);

        Assert.Equal(expected, sizes.Largest(addressA));
        Assert.Equal(1400, sizes.Largest(addressB)); // the receiver's own sends keep its setting
        // A window moves in a tenth of the datagrams: 400 kB in 16 KiB datagrams is 25 of them, not 290. Counted
        // without resends, which the real clock makes under load (a stalled reader's probe, a late ACK).
        var stats = client.Statistics;
        Assert.InRange(stats.PacketsSent - stats.Retransmissions, up.Length / (expected - 20), up.Length / (expected - 20) + 8);
    }

    [Theory]
    [InlineData(149)]
    [InlineData(65508)]
    public void LoopbackMaxDatagramSize_OutOfRange_IsRefusedByName(int size)
    {
        var e = Assert.Throws<ArgumentException>(() => (UtpOptions.Default with { LoopbackMaxDatagramSize = size }).Validate());
        Assert.Contains(nameof(UtpOptions.LoopbackMaxDatagramSize), e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void LoopbackMaxDatagramSize_LargerThanTheBuffersAllow_IsRefused()
    {
        var e = Assert.Throws<ArgumentException>(() => (UtpOptions.Default with
        {
            LoopbackMaxDatagramSize = 65507,
            ReceiveBufferSize = 128 * 1024,
        }).Validate());
        Assert.Contains(nameof(UtpOptions.ReceiveBufferSize), e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MaxDatagramSizeFor_Zero_MeansMaxDatagramSize_EvenOnLoopback()
    {
        Assert.Equal(1400, UtpOptions.Default.MaxDatagramSizeFor(new IPEndPoint(IPAddress.Loopback, 1)));
        Assert.Equal(16 * 1024, Large.MaxDatagramSizeFor(new IPEndPoint(IPAddress.Parse("127.8.9.10"), 1)));
        Assert.Equal(1400, Large.MaxDatagramSizeFor(new IPEndPoint(IPAddress.Parse("192.0.2.1"), 1)));
    }

    private sealed class SizeRecorder
    {
        private readonly Dictionary<IPEndPoint, int> _largest = [];

        public void Record(int length, IPEndPoint from)
        {
            lock (_largest)
            {
                _largest[from] = Math.Max(length, _largest.GetValueOrDefault(from));
            }
        }

        public int Largest(IPEndPoint from)
        {
            lock (_largest)
            {
                return _largest.GetValueOrDefault(from);
            }
        }
    }
}
