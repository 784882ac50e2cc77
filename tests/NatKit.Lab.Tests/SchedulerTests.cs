using NatKit.Lab.Scheduling;

namespace NatKit.Lab.Tests;

public sealed class SchedulerTests
{
    [Fact]
    public void Delay_AdvancesVirtualTime_NotWallTime()
    {
        var lab = new LabScheduler();
        var elapsed = lab.Run(async () =>
        {
            var t0 = lab.TimeProvider.GetTimestamp();
            await Task.Delay(TimeSpan.FromHours(2), lab.TimeProvider);
            return lab.TimeProvider.GetElapsedTime(t0);
        });
        Assert.Equal(TimeSpan.FromHours(2), elapsed);
        Assert.Equal(TimeSpan.FromHours(2), lab.Now);
        Assert.Equal(LabScheduler.DefaultEpoch + TimeSpan.FromHours(2), lab.TimeProvider.GetUtcNow());
    }

    [Fact]
    public void Continuations_StayOnTheLabThread_EvenWithConfigureAwaitFalse()
    {
        var lab = new LabScheduler();
        var thread = Environment.CurrentManagedThreadId;
        var threads = lab.Run(async () =>
        {
            var seen = new List<int>();
            for (var i = 0; i < 10; i++)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(10), lab.TimeProvider).ConfigureAwait(false);
                seen.Add(Environment.CurrentManagedThreadId);
                await Task.Delay(TimeSpan.FromMilliseconds(10), lab.TimeProvider);
                seen.Add(Environment.CurrentManagedThreadId);
            }

            return seen;
        });
        Assert.All(threads, t => Assert.Equal(thread, t));
    }

    [Fact]
    public void TimersFire_InDueOrder_ThenInCreationOrder()
    {
        var lab = new LabScheduler();
        var order = lab.Run(async () =>
        {
            var log = new List<string>();
            var a = Log(log, "a", 30);
            var b = Log(log, "b", 10);
            var c = Log(log, "c", 10);
            var d = Log(log, "d", 20);
            await Task.WhenAll(a, b, c, d);
            return log;
        });
        Assert.Equal(["b@10", "c@10", "d@20", "a@30"], order);

        async Task Log(List<string> log, string name, int ms)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(ms), lab.TimeProvider);
            log.Add($"{name}@{lab.Now.TotalMilliseconds}");
        }
    }

    [Fact]
    public void CancellationTokenSource_WithLabClock_CancelsInVirtualTime()
    {
        var lab = new LabScheduler();
        var when = lab.Run(async () =>
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5), lab.TimeProvider);
            await Assert.ThrowsAnyAsync<OperationCanceledException>(
                () => Task.Delay(TimeSpan.FromMinutes(1), lab.TimeProvider, cts.Token));
            return lab.Now;
        });
        Assert.Equal(TimeSpan.FromSeconds(5), when);
    }

    [Fact]
    public void PeriodicTimer_Ticks_AndChangeReschedules()
    {
        var lab = new LabScheduler();
        var ticks = new List<TimeSpan>();
        using var timer = lab.TimeProvider.CreateTimer(_ => ticks.Add(lab.Now), null, TimeSpan.FromSeconds(1),
            TimeSpan.FromSeconds(2));
        lab.Advance(TimeSpan.FromSeconds(6));
        Assert.Equal([TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(5)], ticks);
        timer.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        lab.Advance(TimeSpan.FromSeconds(10));
        Assert.Equal(3, ticks.Count);
        Assert.Equal(TimeSpan.FromSeconds(16), lab.Now);
    }

    [Fact]
    public void Deadlock_IsReported_WithTheVirtualTime()
    {
        var lab = new LabScheduler();
        var never = new TaskCompletionSource();
        var e = Assert.Throws<LabRunException>(() => lab.Run(async () =>
        {
            await Task.Delay(TimeSpan.FromSeconds(3), lab.TimeProvider);
            await never.Task;
        }));
        Assert.Equal(LabRunFailure.Deadlock, e.Failure);
        Assert.Contains("deadlock at virtual time 00:00:03", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void VirtualTimeBudget_StopsAScenarioThatNeverEnds()
    {
        var lab = new LabScheduler();
        var e = Assert.Throws<LabRunException>(() => lab.Run(async () =>
        {
            while (true)
            {
                await Task.Delay(TimeSpan.FromMinutes(1), lab.TimeProvider);
            }
        }, new LabRunOptions { MaxVirtualTime = TimeSpan.FromHours(1) }));
        Assert.Equal(LabRunFailure.VirtualTimeBudget, e.Failure);
        Assert.True(lab.Now <= TimeSpan.FromHours(1));
    }

    [Fact]
    public void StepBudget_StopsABusyLoop()
    {
        var lab = new LabScheduler();
        var e = Assert.Throws<LabRunException>(() => lab.Run(async () =>
        {
            while (true)
            {
                await Task.Yield();
            }
        }, new LabRunOptions { MaxSteps = 10_000 }));
        Assert.Equal(LabRunFailure.StepBudget, e.Failure);
    }

    [Fact]
    public void ScenarioException_IsRethrown()
    {
        var lab = new LabScheduler();
        var e = Assert.Throws<InvalidOperationException>(() => lab.Run(async () =>
        {
            await Task.Delay(TimeSpan.FromMilliseconds(1), lab.TimeProvider);
            throw new InvalidOperationException("boom");
        }));
        Assert.Equal("boom", e.Message);
    }

    [Fact]
    public void TwoHoursOfMinuteTimers_RunInVirtualTime()
    {
        // 120 timer events per logical "flow" x 100 flows: two hours of periodic work. The assertion is on virtual
        // behaviour; the test's own duration (milliseconds) shows the wall-time side.
        var lab = new LabScheduler();
        var fired = 0;
        var timers = Enumerable.Range(0, 100)
            .Select(_ => lab.TimeProvider.CreateTimer(_ => fired++, null, TimeSpan.FromMinutes(1),
                TimeSpan.FromMinutes(1)))
            .ToList();
        lab.Advance(TimeSpan.FromHours(2));
        Assert.Equal(100 * 120, fired);
        timers.ForEach(t => t.Dispose());
    }
}
