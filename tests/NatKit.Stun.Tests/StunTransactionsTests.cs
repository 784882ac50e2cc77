using System.Net;
using NatKit.Lab;
using NatKit.Net;
using NatKit.Stun.Server;
using NatKit.Stun.Transactions;

namespace NatKit.Stun.Tests;

/// <summary>
/// <see cref="StunTransactions"/>: the push-based table of a shared socket. It claims only responses to its pending
/// ids (everything else stays on the socket for others), times every transaction on one timer, and ends each one
/// exactly once.
/// </summary>
public sealed class StunTransactionsTests
{
    private static readonly IPAddress ServerAddress = IPAddress.Parse("203.0.113.100");

    private static (VirtualNetwork Lab, LabHost Server, LabHost Client) Lab()
    {
        var lab = new VirtualNetwork(seed: 3);
        var internet = lab.AddSegment("internet");
        var server = lab.AddHost("server", internet, "203.0.113.100");
        var client = lab.AddHost("client", internet, "198.51.100.10");
        return (lab, server, client);
    }

    private static byte[] Request(StunTransactionId id)
    {
        var b = new byte[28];
        var w = new StunMessageWriter(b, StunMethods.Binding, StunClass.Request, id);
        w.AddFingerprint();
        return b[..w.Length];
    }

    private static byte[] Response(StunTransactionId id, StunClass cls = StunClass.SuccessResponse, byte tag = 0)
    {
        var b = new byte[40];
        var w = new StunMessageWriter(b, StunMethods.Binding, cls, id);
        w.AddXorAddress(StunAttributeType.XorMappedAddress,
            StunAddress.FromEndPoint(new IPEndPoint(IPAddress.Parse("192.0.2.1"), 1000 + tag)));
        return b[..w.Length];
    }

    [Fact]
    public void Rfc8489_S6_2_1_Retransmits_OnTheSchedule_ThenTimesOutWithNull_InVirtualTime()
    {
        var (lab, serverHost, clientHost) = Lab();
        var (sends, result, elapsed) = lab.Run(async () =>
        {
            var silent = await serverHost.BindUdpAsync(new IPEndPoint(ServerAddress, 3478));
            var at = new List<double>();
            var time = lab.TimeProvider;
            var start = time.GetTimestamp();
            var recording = RecordAsync(silent, at, time, start);
            await using var mux = new DatagramMultiplexer(
                await clientHost.BindUdpAsync(new IPEndPoint(clientHost.Address, 0)));
            using var table = new StunTransactions(mux, time);
            var r = await table.TransactAsync(Request(StunTransactionId.NewRandom()), silent.LocalEndPoint,
                StunRetransmitPolicy.Default);
            var took = time.GetElapsedTime(start);
            silent.Dispose();
            await recording;
            return (at, r, took);
        });

        Assert.Equal(new double[] { 0, 500, 1500, 3500, 7500, 15500, 31500 }, sends);
        Assert.Null(result);
        Assert.Equal(TimeSpan.FromMilliseconds(39_500), elapsed);
    }

    private static async Task RecordAsync(IDatagramSocket socket, List<double> at, TimeProvider time, long start)
    {
        var buffer = new byte[1500];
        try
        {
            while (true)
            {
                await socket.ReceiveFromAsync(buffer);
                at.Add(time.GetElapsedTime(start).TotalMilliseconds);
            }
        }
        catch (ObjectDisposedException)
        {
        }
    }

    [Fact]
    public void OnlyResponsesToPendingIds_AreClaimed_EverythingElseStaysOnTheSocketForOthers()
    {
        var (lab, serverHost, clientHost) = Lab();
        var (response, others) = lab.Run(async () =>
        {
            var server = await serverHost.BindUdpAsync(new IPEndPoint(ServerAddress, 3478));
            await using var mux = new DatagramMultiplexer(
                await clientHost.BindUdpAsync(new IPEndPoint(clientHost.Address, 0)));
            using var table = new StunTransactions(mux, lab.TimeProvider);
            using var rest = mux.CreateUnclaimedSocket();
            var id = StunTransactionId.NewRandom();
            var transaction = table.TransactAsync(Request(id), server.LocalEndPoint, StunRetransmitPolicy.Default);
            var buffer = new byte[1500];
            var got = await server.ReceiveFromAsync(buffer);

            var stranger = StunTransactionId.NewRandom();
            await server.SendToAsync(Request(id), got.RemoteEndPoint); // a request with our id: not a response
            await server.SendToAsync(Response(stranger), got.RemoteEndPoint); // a response to no pending id
            await server.SendToAsync("uTP or a probe"u8.ToArray(), got.RemoteEndPoint);
            var bad = Response(id);
            bad[3]++; // the length no longer matches: not a whole STUN message
            await server.SendToAsync(bad, got.RemoteEndPoint);
            await server.SendToAsync(Response(id, tag: 1), got.RemoteEndPoint);
            await server.SendToAsync(Response(id, tag: 2), got.RemoteEndPoint); // a duplicate: no longer pending

            var r = await transaction;
            var seen = new List<int>();
            for (var i = 0; i < 5; i++)
            {
                seen.Add((await rest.ReceiveFromAsync(buffer)).Length);
            }

            return (r, seen);
        });

        Assert.NotNull(response);
        Assert.True(StunMessageReader.TryParse(response.Message, out var reader));
        Assert.True(reader.TryGetXorAddress(StunAttributeType.XorMappedAddress, out var mapped));
        Assert.Equal(1001, mapped.Port); // the first genuine response, not the duplicate
        Assert.Equal(1, response.Transmissions);
        Assert.Equal(new IPEndPoint(ServerAddress, 3478), response.Source);
        // request, stranger's response, the probe, the bad length, the duplicate: all left for the unclaimed socket
        Assert.Equal(5, others.Count);
    }

    [Fact]
    public void AResponseTheCallerRejects_IsSwallowed_AndTheTransactionKeepsWaitingForAGenuineOne()
    {
        var (lab, serverHost, clientHost) = Lab();
        var response = lab.Run(async () =>
        {
            var server = await serverHost.BindUdpAsync(new IPEndPoint(ServerAddress, 3478));
            await using var mux = new DatagramMultiplexer(
                await clientHost.BindUdpAsync(new IPEndPoint(clientHost.Address, 0)));
            using var table = new StunTransactions(mux, lab.TimeProvider);
            var id = StunTransactionId.NewRandom();
            // "genuine" = mapped port 1002 here (a stand-in for a valid MESSAGE-INTEGRITY)
            var transaction = table.TransactAsync(Request(id), server.LocalEndPoint, StunRetransmitPolicy.Default,
                static (d, _) => StunMessageReader.TryParse(d, out var r) &&
                                 r.TryGetXorAddress(StunAttributeType.XorMappedAddress, out var a) && a.Port == 1002);
            var got = await server.ReceiveFromAsync(new byte[1500]);
            await server.SendToAsync(Response(id, tag: 1), got.RemoteEndPoint);
            await Task.Delay(TimeSpan.FromMilliseconds(10), lab.TimeProvider);
            Assert.False(transaction.IsCompleted);
            Assert.Equal(1, table.Count);
            await server.SendToAsync(Response(id, tag: 2), got.RemoteEndPoint);
            return await transaction;
        });

        Assert.NotNull(response);
        Assert.True(StunMessageReader.TryParse(response.Message, out var reader));
        Assert.True(reader.TryGetXorAddress(StunAttributeType.XorMappedAddress, out var mapped));
        Assert.Equal(1002, mapped.Port);
    }

    [Fact]
    public void Cancellation_EndsTheTransaction_StopsItsRetransmissions_AndALateResponseIsLeftForOthers()
    {
        var (lab, serverHost, clientHost) = Lab();
        var (sends, late) = lab.Run(async () =>
        {
            var server = await serverHost.BindUdpAsync(new IPEndPoint(ServerAddress, 3478));
            await using var mux = new DatagramMultiplexer(
                await clientHost.BindUdpAsync(new IPEndPoint(clientHost.Address, 0)));
            using var table = new StunTransactions(mux, lab.TimeProvider);
            using var rest = mux.CreateUnclaimedSocket();
            var id = StunTransactionId.NewRandom();
            using var cts = new CancellationTokenSource();
            var transaction = table.TransactAsync(Request(id), server.LocalEndPoint, StunRetransmitPolicy.Default,
                null, cts.Token);
            var buffer = new byte[1500];
            var got = await server.ReceiveFromAsync(buffer);
            cts.Cancel(); // not CancelAsync: it runs the callbacks on the thread pool, outside the lab's loop
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => transaction);
            Assert.Equal(0, table.Count);

            var sent = 1;
            using (var quiet = new CancellationTokenSource(TimeSpan.FromSeconds(60), lab.TimeProvider))
            {
                try
                {
                    while (true)
                    {
                        await server.ReceiveFromAsync(buffer, quiet.Token);
                        sent++;
                    }
                }
                catch (OperationCanceledException)
                {
                }
            }

            await server.SendToAsync(Response(id), got.RemoteEndPoint);
            var l = await rest.ReceiveFromAsync(buffer);
            return (sent, l.Length);
        });

        Assert.Equal(1, sends);
        Assert.Equal(Response(StunTransactionId.NewRandom()).Length, late);
    }

    [Fact]
    public void ClosingTheSocket_FailsPendingTransactions_WithObjectDisposed_AndTheTableTakesNoMore()
    {
        var (lab, serverHost, clientHost) = Lab();
        lab.Run(async () =>
        {
            var server = await serverHost.BindUdpAsync(new IPEndPoint(ServerAddress, 3478));
            var mux = new DatagramMultiplexer(await clientHost.BindUdpAsync(new IPEndPoint(clientHost.Address, 0)));
            var table = new StunTransactions(mux, lab.TimeProvider);
            var transaction = table.TransactAsync(Request(StunTransactionId.NewRandom()), server.LocalEndPoint,
                StunRetransmitPolicy.Default);
            await server.ReceiveFromAsync(new byte[1500]);
            await mux.DisposeAsync();
            await Assert.ThrowsAsync<ObjectDisposedException>(() => transaction);
            Assert.True(table.IsClosed);
            Assert.False(table.TryAdd(Request(StunTransactionId.NewRandom()), server.LocalEndPoint,
                StunRetransmitPolicy.Default, new Owner()));
            await Assert.ThrowsAsync<ObjectDisposedException>(() => table.TransactAsync(
                Request(StunTransactionId.NewRandom()), server.LocalEndPoint, StunRetransmitPolicy.Default));
        });
    }

    [Fact]
    public void OwnerSentTransactions_AreTimedAndMatched_ButTheTableNeverSendsForThem()
    {
        var time = new ManualTimeProvider();
        using var table = new StunTransactions(time);
        var owner = new Owner(time);
        var id = StunTransactionId.NewRandom();
        var destination = new IPEndPoint(ServerAddress, 3478);
        Assert.True(table.TryAdd(Request(id), destination, StunRetransmitPolicy.Udp(TimeSpan.FromMilliseconds(100), 3),
            owner));
        Assert.False(table.TryAdd(Request(id), destination, StunRetransmitPolicy.Default, owner)); // pending already

        time.Advance(TimeSpan.FromMilliseconds(99));
        Assert.Empty(owner.Retransmits);
        time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal([100.0], owner.Retransmits);
        time.Advance(TimeSpan.FromMilliseconds(200));
        Assert.Equal([100.0, 300.0], owner.Retransmits);

        owner.Reject = true;
        Assert.True(table.TryReceive(Response(id), destination)); // claimed (it is ours) but not accepted
        Assert.Null(owner.Response);
        owner.Reject = false;
        Assert.False(table.TryReceive(Request(id), destination)); // a request is never a response
        Assert.True(table.TryReceive(Response(id, StunClass.ErrorResponse), destination));
        Assert.Equal(StunClass.ErrorResponse, owner.Response!.Value.Class);
        Assert.Equal(3, owner.Response.Value.Transmissions);
        Assert.Equal(TimeSpan.FromMilliseconds(300), owner.Response.Value.Elapsed);

        time.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(0, owner.Timeouts); // answered: no timeout follows
        Assert.Equal(0, table.Count);
    }

    [Fact]
    public void EachTransactionEndsOnce_TimeoutsFireForTheUnanswered_AndOneTimerServesThemAll()
    {
        var time = new CountingTime();
        using var table = new StunTransactions(time);
        var owners = new List<(StunTransactionId Id, Owner Owner)>();
        for (var i = 0; i < 50; i++)
        {
            var id = StunTransactionId.NewRandom();
            var owner = new Owner();
            owners.Add((id, owner));
            Assert.True(table.TryAdd(Request(id), new IPEndPoint(ServerAddress, 3478),
                StunRetransmitPolicy.Udp(TimeSpan.FromMilliseconds(10 + i), 2, 1), owner));
        }

        Assert.Equal(1, time.Timers); // not one per transaction
        for (var i = 0; i < 50; i += 2)
        {
            Assert.True(table.TryReceive(Response(owners[i].Id), new IPEndPoint(ServerAddress, 3478)));
        }

        time.Advance(TimeSpan.FromSeconds(1));
        for (var i = 0; i < 50; i++)
        {
            var o = owners[i].Owner;
            Assert.Equal(i % 2 == 0 ? 0 : 1, o.Timeouts);
            Assert.Equal(i % 2 == 0, o.Response is not null);
        }

        Assert.Equal(0, table.Count);
        Assert.Equal(1, time.Timers);
    }

    [Fact]
    public async Task ManyTransactionsAtOnce_OnOneSharedSocket_AllGetTheirOwnAnswers_FromARealServer()
    {
        await using var server = await StunServer.StartAsync(SystemNetwork.Instance, new StunServerOptions
        {
            Primary = new IPEndPoint(IPAddress.Loopback, 0),
            EnableTcp = false,
            RateLimitPerSecond = 0,
        });
        await using var mux = new DatagramMultiplexer(
            await SystemNetwork.Instance.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0)));
        using var table = new StunTransactions(mux, TimeProvider.System);
        var ids = Enumerable.Range(0, 200).Select(_ => StunTransactionId.NewRandom()).ToArray();
        var all = ids.Select(id => table.TransactAsync(Request(id), server.UdpEndPoints[0],
            StunRetransmitPolicy.Udp(TimeSpan.FromMilliseconds(200)))).ToArray();
        var responses = await Task.WhenAll(all).WaitAsync(TimeSpan.FromSeconds(20));
        for (var i = 0; i < ids.Length; i++)
        {
            Assert.NotNull(responses[i]);
            Assert.True(StunMessageReader.TryParse(responses[i]!.Message, out var r));
            Assert.Equal(ids[i], r.TransactionId);
            Assert.True(r.TryGetXorAddress(StunAttributeType.XorMappedAddress, out var mapped));
            Assert.Equal(mux.LocalEndPoint, mapped.ToEndPoint());
        }

        Assert.Equal(0, table.Count);
    }

    [Fact]
    public void ARequestThatIsNotStun_IsRefused()
    {
        using var table = new StunTransactions(TimeProvider.System);
        Assert.Throws<ArgumentException>(() =>
            table.TryAdd(new byte[10], new IPEndPoint(ServerAddress, 1), StunRetransmitPolicy.Default, new Owner()));
    }

    private sealed class Owner(ManualTimeProvider? time = null) : IStunTransactionOwner
    {
        public List<double> Retransmits { get; } = [];

        public (StunClass Class, int Transmissions, TimeSpan Elapsed)? Response { get; private set; }

        public int Timeouts { get; private set; }

        public bool Reject { get; set; }

        public bool Accepts(ReadOnlySpan<byte> response, IPEndPoint source, in StunTransactionMatch match) => !Reject;

        public void OnResponse(ReadOnlySpan<byte> response, IPEndPoint source, in StunTransactionMatch match)
        {
            Assert.Null(Response);
            StunMessageReader.TryParse(response, out var r);
            Response = (r.Class, match.Transmissions, match.Elapsed);
        }

        public void OnRetransmit(in StunTransactionDue due) => Retransmits.Add(time?.Elapsed.TotalMilliseconds ?? -1);

        public void OnTimeout(in StunTransactionDue due) => Timeouts++;
    }

    /// <summary>A manual clock that counts the timers made on it.</summary>
    private sealed class CountingTime : TimeProvider
    {
        private readonly ManualTimeProvider _inner = new();

        public int Timers { get; private set; }

        public void Advance(TimeSpan by) => _inner.Advance(by);

        public override long TimestampFrequency => _inner.TimestampFrequency;

        public override long GetTimestamp() => _inner.GetTimestamp();

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            Timers++;
            return _inner.CreateTimer(callback, state, dueTime, period);
        }
    }
}
