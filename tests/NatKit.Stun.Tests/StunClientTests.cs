using System.Net;
using System.Threading.Channels;
using NatKit.Net;
using NatKit.Stun.Client;

namespace NatKit.Stun.Tests;

public class StunClientTests
{
    [Fact]
    public async Task Rfc8489_S6_2_1_Retransmits_AtRtoDoubling_SevenTimes_ThenWaitsRmRto()
    {
        var time = new ManualTimeProvider();
        var network = new ClockOnlyNetwork(time);
        var socket = new SilentSocket(time);
        var client = new StunClient(network);
        time.ResetArmed();
        var transaction = client.BindingAsync(socket, new IPEndPoint(IPAddress.Loopback, 3478));

        var expected = new[] { 0, 500, 1500, 3500, 7500, 15500, 31500 };
        var seen = new List<double>();
        var previous = TimeSpan.Zero;
        foreach (var at in expected)
        {
            time.Advance(TimeSpan.FromMilliseconds(at) - previous);
            previous = TimeSpan.FromMilliseconds(at);
            seen.Add(await socket.NextSendAsync());
            // Time may move on only once the client is timing its wait for this send's answer: the wait starts
            // after the send, on whatever thread the previous timeout's continuation runs.
            await time.TimerArmed.WaitAsync(TimeSpan.FromSeconds(10));
            time.ResetArmed();
        }

        Assert.Equal(expected.Select(x => (double)x), seen);
        time.Advance(TimeSpan.FromMilliseconds(7999));
        Assert.False(transaction.IsCompleted);
        time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Null(await transaction.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(7, socket.Sends);
    }

    [Fact]
    public void Options_TransactionTimeout_Is39_5Seconds()
    {
        Assert.Equal(TimeSpan.FromMilliseconds(39_500), new StunClientOptions().UdpTransactionTimeout);
        Assert.Throws<ArgumentException>(() => new StunClientOptions { RequestCount = 0 }.Validate());
    }

    /// <summary>A network that only has a clock: the test hands the client its socket.</summary>
    internal sealed class ClockOnlyNetwork(TimeProvider time) : INetwork
    {
        public TimeProvider TimeProvider => time;

        public IReadOnlyList<IPAddress> LocalAddresses => [IPAddress.Loopback];

        public ValueTask<IDatagramSocket> BindUdpAsync(IPEndPoint localEndPoint, CancellationToken cancellationToken = default) =>
            throw new NotSupportedException();

        public ValueTask<IStreamListener> ListenTcpAsync(IPEndPoint localEndPoint, int backlog = 512,
            CancellationToken cancellationToken = default) => throw new NotSupportedException();

        public ValueTask<IStreamConnection> ConnectTcpAsync(IPEndPoint remoteEndPoint, IPEndPoint? localEndPoint = null,
            CancellationToken cancellationToken = default) => throw new NotSupportedException();
    }

    /// <summary>A socket whose peer never answers; it reports when each send happened (virtual ms).</summary>
    private sealed class SilentSocket(ManualTimeProvider time) : IDatagramSocket
    {
        private readonly Channel<double> _sends = Channel.CreateUnbounded<double>();

        public int Sends { get; private set; }

        public IPEndPoint LocalEndPoint { get; } = new(IPAddress.Loopback, 5000);

        public async Task<double> NextSendAsync() =>
            await _sends.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));

        public ValueTask<int> SendToAsync(ReadOnlyMemory<byte> datagram, IPEndPoint remoteEndPoint,
            CancellationToken cancellationToken = default)
        {
            Sends++;
            _sends.Writer.TryWrite(time.Elapsed.TotalMilliseconds);
            return ValueTask.FromResult(datagram.Length);
        }

        public async ValueTask<ReceivedDatagram> ReceiveFromAsync(Memory<byte> buffer,
            CancellationToken cancellationToken = default)
        {
            await Task.Delay(Timeout.Infinite, cancellationToken);
            throw new InvalidOperationException("unreachable");
        }

        public void Dispose()
        {
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}

public class StunClientIntegrityTests
{
    [Fact]
    public async Task Rfc8489_S9_1_4_ResponsesWithoutValidIntegrity_AreIgnored_SignedOnesAccepted()
    {
        await using var fake = await SystemNetwork.Instance.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        var client = new StunClient(SystemNetwork.Instance, new StunClientOptions
        {
            InitialRto = TimeSpan.FromMilliseconds(200),
            RequestCount = 3,
            Username = "alice",
            Password = "secret",
            ShortTermCredentials = true,
        });
        var key = StunCredentials.ShortTermKey("secret");
        var transaction = client.BindingAsync(fake.LocalEndPoint);
        var buffer = new byte[1500];
        var got = await fake.ReceiveFromAsync(buffer).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(StunMessageReader.TryParse(buffer.AsSpan(0, got.Length), out var request));
        Assert.True(request.VerifyMessageIntegrity(key));
        var id = request.TransactionId;

        byte[] Reply(byte[]? signWith)
        {
            var reply = new byte[128];
            var w = new StunMessageWriter(reply, StunMethods.Binding, StunClass.SuccessResponse, id);
            w.AddXorAddress(StunAttributeType.XorMappedAddress, StunAddress.FromEndPoint(got.RemoteEndPoint));
            if (signWith is not null)
            {
                w.AddMessageIntegrity(signWith);
            }

            return reply[..w.Length];
        }

        await fake.SendToAsync(Reply(null), got.RemoteEndPoint);
        await fake.SendToAsync(Reply(StunCredentials.ShortTermKey("forged")), got.RemoteEndPoint);
        await fake.SendToAsync(Reply(key), got.RemoteEndPoint);
        var response = await transaction.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.NotNull(response);
        Assert.True(StunMessageReader.TryParse(response.Message.ToArray(), out var r));
        Assert.True(r.VerifyMessageIntegrity(key));
    }
}
