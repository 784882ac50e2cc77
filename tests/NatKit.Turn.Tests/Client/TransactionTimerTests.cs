using System.Net;
using NatKit.Turn.Client;
using NatKit.Turn.Tests.Support;

namespace NatKit.Turn.Tests.Client;

/// <summary>The client's transactions are timed by its socket's one <see cref="NatKit.Stun.Transactions.StunTransactions"/>
/// timer (retransmissions over UDP, Ti over streams), never a timer per request: however transactions end
/// (answered, refused, cancelled) the client holds that one timer and no more, so a busy client cannot pile them
/// up; and a transaction nothing can answer any more must not sit out its timeout.</summary>
public sealed class TransactionTimerTests
{
    /// <summary>The system clock, counting the timers made on it that are not disposed yet.</summary>
    private sealed class CountingTime : TimeProvider
    {
        private int _live;

        public int Live => Volatile.Read(ref _live);

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            Interlocked.Increment(ref _live);
            return new Counted(System.CreateTimer(callback, state, dueTime, period), this);
        }

        private sealed class Counted(ITimer inner, CountingTime owner) : ITimer
        {
            private int _disposed;

            public bool Change(TimeSpan dueTime, TimeSpan period) => inner.Change(dueTime, period);

            public void Dispose()
            {
                if (Interlocked.Exchange(ref _disposed, 1) == 0)
                {
                    Interlocked.Decrement(ref owner._live);
                }

                inner.Dispose();
            }

            public ValueTask DisposeAsync()
            {
                Dispose();
                return ValueTask.CompletedTask;
            }
        }
    }

    [Theory]
    [InlineData(TurnTransport.Udp)]
    [InlineData(TurnTransport.Tcp)]
    public async Task AnsweredRefusedAndCancelledTransactions_LeaveNoTimer(TurnTransport transport)
    {
        await using var h = await TurnHarness.StartAsync();
        var time = new CountingTime();
        using var cts = TurnHarness.Deadline();
        await using var client = await TurnClient.AllocateAsync(new ClockedNetwork(time),
            h.ClientOptions(transport: transport), cts.Token); // a 401, then the Allocate: both answered
        const int TableTimer = 1;
        Assert.Equal(TableTimer, time.Live);

        await client.CreatePermissionAsync(IPAddress.Loopback, cts.Token); // answered
        Assert.Equal(TableTimer, time.Live);

        // refused: 403 for a peer the policy denies
        await Assert.ThrowsAsync<TurnException>(() => client.CreatePermissionAsync(IPAddress.Parse("10.0.0.1"), cts.Token));
        Assert.Equal(TableTimer, time.Live);

        // cancelled before it could be answered
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            client.CreatePermissionAsync(IPAddress.Loopback, cancelled.Token));
        Assert.Equal(TableTimer, time.Live);

        // the client's own table goes with it (over UDP when its socket closes, over TCP when its stream ends)
        await client.DisposeAsync();
        Assert.Equal(0, time.Live);
    }

    [Fact]
    public async Task OverTcp_ARequestAfterTheServerClosed_FailsAtOnce_NotAfterTi()
    {
        await using var h = await TurnHarness.StartAsync(o => o with { TcpIdleTimeout = TimeSpan.FromSeconds(30) });
        var client = await h.ClientAsync(h.ClientOptions(transport: TurnTransport.Tcp)); // no keep-alive
        var ended = client.ReceiveAsync(new byte[64]).AsTask();

        // The allocation expires unrefreshed, then the server ends the idle connection (docs/turn.md).
        h.Time.Advance(TimeSpan.FromSeconds(601));
        h.Time.Advance(TimeSpan.FromSeconds(31));
        Assert.Equal(1, h.Server.Metrics.ConnectionsTimedOut);
        await Assert.ThrowsAnyAsync<Exception>(() => ended.WaitAsync(TimeSpan.FromSeconds(10))); // the client saw the close

        // Nothing can answer now: the request fails at once rather than waiting Ti (39.5 s) on the client's clock,
        // which no one moves here.
        var e = await Assert.ThrowsAnyAsync<Exception>(() =>
            client.CreatePermissionAsync(IPAddress.Loopback).WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.IsType<IOException>(e, exactMatch: false);
    }
}
