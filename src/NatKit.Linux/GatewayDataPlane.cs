using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using NatKit.Linux.Interop;
using NatKit.Nat;
using NatKit.Nat.Ports;

namespace NatKit.Linux;

/// <summary>What a <see cref="GatewayDataPlane"/> has done since it started.</summary>
/// <param name="InsideRead">Packets read from the inside TUN (a GSO super-packet counts once).</param>
/// <param name="OutsideRead">Packets read from the outside TUN.</param>
/// <param name="InsideWritten">Packets written to the inside TUN.</param>
/// <param name="OutsideWritten">Packets written to the outside TUN.</param>
/// <param name="Dropped">Packets the engine dropped.</param>
/// <param name="WriteFailures">Writes the kernel refused.</param>
/// <param name="SuperPackets">GSO super-packets carried whole.</param>
/// <param name="Segmented">Super-packets cut into segments because the other link lacked the offload.</param>
/// <param name="Emitted">Packets the engine made itself (ICMP errors, fragments).</param>
/// <param name="Coalesced">UDP datagrams written as part of a USO super-packet (see <see cref="UdpCoalescer"/>).</param>
/// <param name="Batches">Rounds of the thread's loop that moved packets: reads per batch is the batching achieved.</param>
public readonly record struct GatewayStats(long InsideRead, long OutsideRead, long InsideWritten, long OutsideWritten,
    long Dropped, long WriteFailures, long SuperPackets, long Segmented, long Emitted, long Coalesced, long Batches);

/// <summary>How a <see cref="GatewayDataPlane"/>'s thread waits for packets and is scheduled.</summary>
/// <remarks>
/// The thread has two modes, the way Linux NAPI has. Idle, it sleeps in poll(2) on both TUNs and is woken by the
/// first packet; that wake-up is the latency a lone packet sees, so the thread then runs SCHED_FIFO at
/// <see cref="RealtimePriority"/> (a real-time wake-up preempts at once instead of waiting for the scheduler's
/// next slot). Once traffic is flowing (two batches in a row had packets), it drops to the normal scheduler and
/// sleeps <see cref="BatchPause"/> between batches instead of waiting on the TUNs: the senders then find nobody to
/// wake, the next batch gathers, and a bigger batch coalesces into fewer writes. The first empty batch brings it
/// back to idle.
/// </remarks>
public sealed record DataPlaneOptions
{
    /// <summary>Real-time priority 10, a pause of 20 µs.</summary>
    public static DataPlaneOptions Default { get; } = new();

    /// <summary>SCHED_FIFO priority (1-99) while idle; 0 keeps the normal scheduler. Without the privilege
    /// (CAP_SYS_NICE) the thread keeps the normal scheduler and <see cref="GatewayDataPlane.Realtime"/> says so.</summary>
    public int RealtimePriority { get; init; } = 10;

    /// <summary>The sleep between batches while traffic flows; zero goes straight back to the TUNs.</summary>
    public TimeSpan BatchPause { get; init; } = TimeSpan.FromMicroseconds(20);

    /// <summary>The first problem with these options, or null.</summary>
    public string? Validate() =>
        RealtimePriority is < 0 or > 99 ? "the real-time priority must be 0-99"
        : BatchPause < TimeSpan.Zero || BatchPause > TimeSpan.FromMilliseconds(10) ? "the batch pause must be 0-10 ms"
        : null;
}

/// <summary>
/// Runs a <see cref="PacketPump"/> (the engine between two packet ports) on one dedicated thread: each round reads a
/// batch from each port (non-blocking), translates every packet in place and writes it to the port the verdict
/// names, and sleeps in poll(2) when both are idle (see <see cref="DataPlaneOptions"/> for how it waits). A TUN port
/// is polled on its file descriptor; a port fed from other threads (<see cref="ISignalingPacketPort"/>, a tunnel's
/// WebSocket sessions) wakes the thread through an eventfd. The engine is only ever touched from that thread; flow
/// snapshots and counters are fetched by handing the thread a request.
/// </summary>
/// <remarks>
/// <para>GSO super-packets (up to 64 KiB of TCP, or UDP with USO) pass through the engine whole: a NAT rewrites only
/// headers, so one translation serves up to 45 segments. Carrying, segmenting and coalescing are the ports' business
/// (<see cref="TunPort"/>); partial checksums are moved by the pump (<see cref="PacketPump"/>).</para>
/// </remarks>
public sealed class GatewayDataPlane : IPacketPumpDriver, IAsyncDisposable
{
    /// <summary>Meter name for the gateway's instruments (the engine's are on "NatKit.Nat").</summary>
    public const string MeterName = "NatKit.Gateway";

    private const int TickMilliseconds = 250;

    private readonly PacketPump _pump;
    private readonly TimeProvider _time;
    private readonly long _start;
    private readonly int[] _descriptors;
    private readonly ConcurrentQueue<Action> _requests = new();
    private readonly Meter _meter;
    private readonly int _wake;
    private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Thread? _thread;
    private readonly int _realtimePriority;
    private readonly TimeSpan _batchPause;
    private volatile bool _realtime;
    private volatile bool _stopping;
    private int _disposed;

    /// <param name="engine">The engine; only the data-plane thread touches it once started.</param>
    /// <param name="inside">The inside link.</param>
    /// <param name="outside">The outside link.</param>
    /// <param name="time">The clock the engine's time is read from.</param>
    /// <param name="options">How the thread waits and is scheduled; <see cref="DataPlaneOptions.Default"/> if null.</param>
    public GatewayDataPlane(NatEngine engine, TunDevice inside, TunDevice outside, TimeProvider? time = null,
        DataPlaneOptions? options = null)
        : this(engine ?? throw new ArgumentNullException(nameof(engine)),
            new TunPort(inside ?? throw new ArgumentNullException(nameof(inside))),
            new TunPort(outside ?? throw new ArgumentNullException(nameof(outside))), time, options)
    {
    }

    /// <param name="engine">The engine (only the data-plane thread touches it once started), or null to forward
    /// between the ports unchanged.</param>
    /// <param name="inside">The inside port.</param>
    /// <param name="outside">The outside port.</param>
    /// <param name="time">The clock the engine's time is read from.</param>
    /// <param name="options">How the thread waits and is scheduled; <see cref="DataPlaneOptions.Default"/> if null.</param>
    public GatewayDataPlane(NatEngine? engine, IPacketPort inside, IPacketPort outside, TimeProvider? time = null,
        DataPlaneOptions? options = null)
    {
        options ??= DataPlaneOptions.Default;
        if (options.Validate() is { } problem)
        {
            throw new ArgumentException(problem, nameof(options));
        }

        _realtimePriority = options.RealtimePriority;
        _batchPause = options.BatchPause;
        _pump = new PacketPump(engine, inside, outside);
        _time = time ?? TimeProvider.System;
        _start = _time.GetTimestamp();
        _descriptors = [.. new[] { inside, outside }.OfType<TunPort>().Select(p => p.Descriptor)];
        _wake = Libc.EventFd(0, Libc.EFD_NONBLOCK | Libc.EFD_CLOEXEC);
        if (_wake < 0)
        {
            throw Libc.Error("eventfd");
        }

        foreach (var port in new[] { inside, outside }.OfType<ISignalingPacketPort>())
        {
            port.SetWake(Wake);
        }

        _meter = new Meter(MeterName);
        _meter.CreateObservableCounter("natkit.gateway.packets.read", () =>
        {
            var s = _pump.Stats;
            return new[]
            {
                new Measurement<long>(s.InsideRead, new KeyValuePair<string, object?>("side", "inside")),
                new Measurement<long>(s.OutsideRead, new KeyValuePair<string, object?>("side", "outside")),
            };
        }, "{packet}", "Packets read from the ports");
        _meter.CreateObservableCounter("natkit.gateway.packets.written", () => new[]
        {
            new Measurement<long>(inside.Stats.Written, new KeyValuePair<string, object?>("side", "inside")),
            new Measurement<long>(outside.Stats.Written, new KeyValuePair<string, object?>("side", "outside")),
        }, "{packet}", "Packets written to the ports");
        _meter.CreateObservableCounter("natkit.gateway.packets.dropped", () => _pump.Stats.Dropped, "{packet}",
            "Packets the engine dropped");
        _meter.CreateObservableCounter("natkit.gateway.write_failures",
            () => inside.Stats.WriteFailures + outside.Stats.WriteFailures, "{packet}", "Writes the ports refused");
        _meter.CreateObservableCounter("natkit.gateway.gso.whole",
            () => inside.Stats.SuperPackets + outside.Stats.SuperPackets, "{packet}", "GSO super-packets translated whole");
        _meter.CreateObservableCounter("natkit.gateway.gso.segmented",
            () => inside.Stats.Segmented + outside.Stats.Segmented, "{packet}", "GSO super-packets cut into segments");
    }

    /// <summary>The engine; throws for a data plane that forwards without one.</summary>
    public NatEngine Engine => _pump.Engine ?? throw new InvalidOperationException("this data plane forwards without a NAT engine");

    /// <summary>The pump the thread runs (its ports and counters).</summary>
    public PacketPump Pump => _pump;

    /// <summary>True once the thread runs with the real-time priority it was asked for while idle; false when none
    /// was asked for or the process lacks the privilege.</summary>
    public bool Realtime => _realtime;

    /// <summary>Completes when the data-plane thread has ended (after <see cref="StopAsync"/> or a fatal error).</summary>
    public Task Completion => _stopped.Task;

    /// <summary>A racy but tear-free read of the pump's and the ports' counters.</summary>
    public GatewayStats Stats
    {
        get
        {
            var pump = _pump.Stats;
            var inside = _pump.Inside.Stats;
            var outside = _pump.Outside.Stats;
            return new GatewayStats(pump.InsideRead, pump.OutsideRead, inside.Written, outside.Written, pump.Dropped,
                inside.WriteFailures + outside.WriteFailures, inside.SuperPackets + outside.SuperPackets,
                inside.Segmented + outside.Segmented, pump.Emitted, inside.Coalesced + outside.Coalesced, pump.Batches);
        }
    }

    /// <summary>Starts the data-plane thread.</summary>
    public void Start()
    {
        if (_thread is not null)
        {
            throw new InvalidOperationException("the data plane is already running");
        }

        _thread = new Thread(Run) { IsBackground = true, Name = "natkit-gateway", Priority = ThreadPriority.AboveNormal };
        _thread.Start();
    }

    /// <summary>Runs <paramref name="query"/> against the engine on the data-plane thread and returns its result.</summary>
    public Task<T> QueryAsync<T>(Func<NatEngine, T> query)
    {
        ArgumentNullException.ThrowIfNull(query);
        return InvokeAsync(() => query(Engine));
    }

    /// <summary>Runs <paramref name="action"/> on the data-plane thread (between batches) and returns its result.</summary>
    public Task<T> InvokeAsync<T>(Func<T> action)
    {
        ArgumentNullException.ThrowIfNull(action);
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        if (_thread is null || _stopped.Task.IsCompleted)
        {
            done.SetResult(action()); // not running: nobody else touches the engine
            return done.Task;
        }

        _requests.Enqueue(() =>
        {
            try
            {
                done.SetResult(action());
            }
            catch (Exception e)
            {
                done.SetException(e);
            }
        });
        Wake();
        return done.Task;
    }

    /// <summary>Asks the thread to finish its batch and stop; completes when it has.</summary>
    public Task StopAsync()
    {
        _stopping = true;
        if (_thread is null)
        {
            _stopped.TrySetResult();
        }
        else
        {
            Wake();
        }

        return _stopped.Task;
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await StopAsync().ConfigureAwait(false);
        _ = Libc.Close(_wake);
        _meter.Dispose();
    }

    /// <summary>The engine's clock (milliseconds since the data plane was made).</summary>
    public long EngineNow => Now();

    /// <summary>The clock the engine runs on (its timers, and whatever the gateway schedules beside them).</summary>
    public TimeProvider Time => _time;

    private long Now() => (long)_time.GetElapsedTime(_start).TotalMilliseconds;

    private void Wake()
    {
        Span<byte> one = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(one, 1);
        unsafe
        {
            fixed (byte* p = one)
            {
                _ = Libc.Write(_wake, p, 8);
            }
        }
    }

    private unsafe void Run()
    {
        try
        {
            _realtime = _realtimePriority > 0 && SetScheduler(realtime: true);
            var count = _descriptors.Length + 1;
            var fds = stackalloc Libc.PollFd[count];
            for (var i = 0; i < _descriptors.Length; i++)
            {
                fds[i] = new Libc.PollFd { Fd = _descriptors[i], Events = Libc.POLLIN };
            }

            fds[count - 1] = new Libc.PollFd { Fd = _wake, Events = Libc.POLLIN };
            var drain = stackalloc byte[8];
            var pause = new Libc.TimeSpec { Nanoseconds = _batchPause.Ticks * 100 };
            if (_batchPause > TimeSpan.Zero)
            {
                _ = Libc.Prctl(Libc.PR_SET_TIMERSLACK, 1000, 0, 0, 0); // the default 50 µs slack would swamp the pause
            }

            var lastTick = Now();
            var busyRounds = 0;
            var realtime = _realtime;
            while (!_stopping)
            {
                var now = Now(); // the engine's clock for the batch: read once per batch, not per packet
                var moved = _pump.RunBatch(now, out var more);
                while (_requests.TryDequeue(out var request))
                {
                    request();
                }

                if (now - lastTick >= TickMilliseconds)
                {
                    _pump.Tick(now);
                    lastTick = now;
                }

                if (moved > 0)
                {
                    if (++busyRounds == 2 && realtime)
                    {
                        SetScheduler(realtime: false); // sustained traffic: share the CPU fairly (see DataPlaneOptions)
                    }

                    if (more)
                    {
                        continue; // more is waiting
                    }

                    if (_batchPause > TimeSpan.Zero)
                    {
                        // Traffic is flowing: let the next batch gather while off the TUNs' wait queues, so the
                        // senders' writes do not each pay for waking this thread (interrupt moderation, as NAPI).
                        _ = Libc.ClockNanoSleep(Libc.CLOCK_MONOTONIC, 0, &pause, null);
                    }

                    continue;
                }

                if (busyRounds >= 2 && realtime)
                {
                    SetScheduler(realtime: true);
                }

                busyRounds = 0;
                for (var i = 0; i < count; i++)
                {
                    fds[i].Revents = 0;
                }

                if (Libc.Poll(fds, (nuint)count, TickMilliseconds) > 0 && (fds[count - 1].Revents & Libc.POLLIN) != 0)
                {
                    _ = Libc.Read(_wake, drain, 8);
                }
            }

            while (_requests.TryDequeue(out var request))
            {
                request();
            }

            _stopped.TrySetResult();
        }
        catch (Exception e)
        {
            _stopped.TrySetException(e);
        }
    }

    /// <summary>Switches the calling (data-plane) thread between SCHED_FIFO and the normal scheduler.</summary>
    private unsafe bool SetScheduler(bool realtime)
    {
        var priority = realtime ? _realtimePriority : 0;
        return Libc.SchedSetScheduler(0, realtime ? Libc.SCHED_FIFO : Libc.SCHED_OTHER, &priority) == 0;
    }
}
