using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using NatKit.Linux.Interop;
using NatKit.Nat;
using NatKit.Packets;

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
/// Runs a <see cref="NatEngine"/> between two TUN devices on one dedicated thread: reads a batch from each side
/// (non-blocking), translates every packet in place, writes it to the side the verdict names, and sleeps in
/// poll(2) when both sides are idle (see <see cref="DataPlaneOptions"/> for how it waits). The engine is only ever touched from that thread; flow snapshots and counters
/// are fetched by handing the thread a request.
/// </summary>
/// <remarks>
/// <para>GSO super-packets (up to 64 KiB of TCP, or UDP with USO) pass through the engine whole: a NAT rewrites only
/// headers, so one translation serves up to 45 segments. When the destination TUN did not accept the same offload
/// the packet is cut with <see cref="GsoSegmenter"/>.</para>
/// <para>Partial checksums (virtio NEEDS_CSUM) hold only the pseudo-header sum, which the engine's RFC 1624 update
/// would push the wrong way. The data plane keeps the field, lets the engine translate, then moves the field by the
/// address change alone (ports are in the bytes the receiver still sums), the way Linux's
/// inet_proto_csum_replace4 treats CHECKSUM_PARTIAL.</para>
/// </remarks>
public sealed class GatewayDataPlane : INatSink, IAsyncDisposable
{
    /// <summary>Meter name for the gateway's instruments (the engine's are on "NatKit.Nat").</summary>
    public const string MeterName = "NatKit.Gateway";

    private const int Headroom = VirtioNetHeader.Size;
    private const int BufferSize = Headroom + 65536 + 128;
    private const int Batch = 64;
    private const int TickMilliseconds = 250;

    private readonly NatEngine _engine;
    private readonly TunDevice _inside;
    private readonly TunDevice _outside;
    private readonly TimeProvider _time;
    private readonly long _start;
    private readonly byte[] _buffer = GC.AllocateUninitializedArray<byte>(BufferSize, pinned: true);
    private readonly byte[] _emitBuffer = GC.AllocateUninitializedArray<byte>(BufferSize, pinned: true);
    private readonly byte[] _segments = GC.AllocateUninitializedArray<byte>(2 * BufferSize, pinned: true);
    private readonly int[] _segmentLengths = new int[512];
    private readonly UdpCoalescer? _insideCoalescer;
    private readonly UdpCoalescer? _outsideCoalescer;
    private readonly ConcurrentQueue<Action> _requests = new();
    private readonly Meter _meter;
    private readonly int _wake;
    private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Thread? _thread;
    private readonly int _realtimePriority;
    private readonly TimeSpan _batchPause;
    private long _batchNow; // the engine's clock for the batch being pumped: read once per batch, not per packet
    private volatile bool _realtime;
    private volatile bool _stopping;
    private int _disposed;

    private long _insideRead;
    private long _outsideRead;
    private long _insideWritten;
    private long _outsideWritten;
    private long _dropped;
    private long _writeFailures;
    private long _superPackets;
    private long _segmented;
    private long _emitted;
    private long _coalesced;
    private long _batches;

    /// <param name="engine">The engine; only the data-plane thread touches it once started.</param>
    /// <param name="inside">The inside link.</param>
    /// <param name="outside">The outside link.</param>
    /// <param name="time">The clock the engine's time is read from.</param>
    /// <param name="options">How the thread waits and is scheduled; <see cref="DataPlaneOptions.Default"/> if null.</param>
    public GatewayDataPlane(NatEngine engine, TunDevice inside, TunDevice outside, TimeProvider? time = null,
        DataPlaneOptions? options = null)
    {
        options ??= DataPlaneOptions.Default;
        if (options.Validate() is { } problem)
        {
            throw new ArgumentException(problem, nameof(options));
        }

        _realtimePriority = options.RealtimePriority;
        _batchPause = options.BatchPause;
        _engine = engine ?? throw new ArgumentNullException(nameof(engine));
        _inside = inside ?? throw new ArgumentNullException(nameof(inside));
        _outside = outside ?? throw new ArgumentNullException(nameof(outside));
        _time = time ?? TimeProvider.System;
        _start = _time.GetTimestamp();
        _insideCoalescer = CanCoalesce(inside) ? new UdpCoalescer() : null;
        _outsideCoalescer = CanCoalesce(outside) ? new UdpCoalescer() : null;
        _wake = Libc.EventFd(0, Libc.EFD_NONBLOCK | Libc.EFD_CLOEXEC);
        if (_wake < 0)
        {
            throw Libc.Error("eventfd");
        }

        _meter = new Meter(MeterName);
        _meter.CreateObservableCounter("natkit.gateway.packets.read", () => new[]
        {
            new Measurement<long>(Volatile.Read(ref _insideRead), new KeyValuePair<string, object?>("side", "inside")),
            new Measurement<long>(Volatile.Read(ref _outsideRead), new KeyValuePair<string, object?>("side", "outside")),
        }, "{packet}", "Packets read from the TUN devices");
        _meter.CreateObservableCounter("natkit.gateway.packets.written", () => new[]
        {
            new Measurement<long>(Volatile.Read(ref _insideWritten), new KeyValuePair<string, object?>("side", "inside")),
            new Measurement<long>(Volatile.Read(ref _outsideWritten), new KeyValuePair<string, object?>("side", "outside")),
        }, "{packet}", "Packets written to the TUN devices");
        _meter.CreateObservableCounter("natkit.gateway.packets.dropped", () => Volatile.Read(ref _dropped), "{packet}",
            "Packets the engine dropped");
        _meter.CreateObservableCounter("natkit.gateway.write_failures", () => Volatile.Read(ref _writeFailures),
            "{packet}", "Writes the kernel refused");
        _meter.CreateObservableCounter("natkit.gateway.gso.whole", () => Volatile.Read(ref _superPackets), "{packet}",
            "GSO super-packets translated whole");
        _meter.CreateObservableCounter("natkit.gateway.gso.segmented", () => Volatile.Read(ref _segmented),
            "{packet}", "GSO super-packets cut into segments");
    }

    public NatEngine Engine => _engine;

    /// <summary>True once the thread runs with the real-time priority it was asked for while idle; false when none
    /// was asked for or the process lacks the privilege.</summary>
    public bool Realtime => _realtime;

    /// <summary>Completes when the data-plane thread has ended (after <see cref="StopAsync"/> or a fatal error).</summary>
    public Task Completion => _stopped.Task;

    /// <summary>A racy but tear-free read of the counters (each is a 64-bit field written by one thread).</summary>
    public GatewayStats Stats => new(Volatile.Read(ref _insideRead), Volatile.Read(ref _outsideRead),
        Volatile.Read(ref _insideWritten), Volatile.Read(ref _outsideWritten), Volatile.Read(ref _dropped),
        Volatile.Read(ref _writeFailures), Volatile.Read(ref _superPackets), Volatile.Read(ref _segmented),
        Volatile.Read(ref _emitted), Volatile.Read(ref _coalesced), Volatile.Read(ref _batches));

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
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        if (_thread is null || _stopped.Task.IsCompleted)
        {
            done.SetResult(query(_engine)); // not running: nobody else touches the engine
            return done.Task;
        }

        _requests.Enqueue(() =>
        {
            try
            {
                done.SetResult(query(_engine));
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

    /// <summary>INatSink: a packet the engine made (ICMP error, fragment) goes out as a plain packet.</summary>
    void INatSink.Emit(ReadOnlySpan<byte> packet, NatSide side)
    {
        if (packet.Length > _emitBuffer.Length - Headroom)
        {
            return;
        }

        _emitted++;
        var device = side == NatSide.Inside ? _inside : _outside;
        Flush(device);
        packet.CopyTo(_emitBuffer.AsSpan(Headroom));
        WritePlain(device, _emitBuffer, packet.Length);
    }

    /// <summary>The engine's clock (milliseconds since the data plane was made).</summary>
    public long EngineNow => Now();

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
            var fds = stackalloc Libc.PollFd[3];
            fds[0] = new Libc.PollFd { Fd = _inside.FileDescriptor, Events = Libc.POLLIN };
            fds[1] = new Libc.PollFd { Fd = _outside.FileDescriptor, Events = Libc.POLLIN };
            fds[2] = new Libc.PollFd { Fd = _wake, Events = Libc.POLLIN };
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
                var now = Now();
                _batchNow = now;
                var inbound = Pump(_inside, NatDirection.Outbound);
                var outbound = Pump(_outside, NatDirection.Inbound);
                Flush(_inside);
                Flush(_outside);
                while (_requests.TryDequeue(out var request))
                {
                    request();
                }

                if (now - lastTick >= TickMilliseconds)
                {
                    _engine.Tick(now, this);
                    lastTick = now;
                }

                if (inbound + outbound > 0)
                {
                    _batches++;
                    if (++busyRounds == 2 && realtime)
                    {
                        SetScheduler(realtime: false); // sustained traffic: share the CPU fairly (see DataPlaneOptions)
                    }

                    if (inbound == Batch || outbound == Batch)
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
                fds[0].Revents = fds[1].Revents = fds[2].Revents = 0;
                if (Libc.Poll(fds, 3, TickMilliseconds) > 0 && (fds[2].Revents & Libc.POLLIN) != 0)
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

    /// <summary>Reads and forwards up to <see cref="Batch"/> packets from one side; returns how many came.</summary>
    private int Pump(TunDevice source, NatDirection direction)
    {
        var offset = Headroom - source.HeaderRoom;
        for (var i = 0; i < Batch; i++)
        {
            var n = source.Read(_buffer.AsSpan(offset));
            if (n == 0)
            {
                return i;
            }

            if (direction == NatDirection.Outbound)
            {
                _insideRead++;
            }
            else
            {
                _outsideRead++;
            }

            Forward(source, direction, n - source.HeaderRoom);
        }

        return Batch;
    }

    private static bool CanCoalesce(TunDevice device) =>
        device.HasVirtioHeader && (device.Offloads & TunOffloads.Uso4) != 0;

    private UdpCoalescer? CoalescerOf(TunDevice device) =>
        ReferenceEquals(device, _inside) ? _insideCoalescer : _outsideCoalescer;

    /// <summary>Writes what the coalescer of <paramref name="device"/> gathered.</summary>
    private void Flush(TunDevice device)
    {
        var coalescer = CoalescerOf(device);
        if (coalescer is null || coalescer.Count == 0)
        {
            return;
        }

        if (coalescer.Count > 1)
        {
            _coalesced += coalescer.Count;
        }

        Count(device, device.Write(coalescer.Take()));
    }

    private void Forward(TunDevice source, NatDirection direction, int length)
    {
        var header = VirtioNetHeader.None;
        if (source.HasVirtioHeader)
        {
            _ = VirtioNetHeader.TryRead(_buffer, out header);
        }

        var packet = _buffer.AsSpan(Headroom);
        if (length <= 0)
        {
            _dropped++;
            return;
        }

        // A partial checksum (see remarks): remember the field and the addresses around the engine's rewrite.
        var checksumField = header.ChecksumStart + header.ChecksumOffset;
        var partial = header.NeedsChecksumCompletion && length >= 20 && packet[0] >> 4 == 4 &&
                      checksumField + 2 <= length;
        ushort partialSum = 0;
        uint oldSource = 0, oldDestination = 0;
        if (partial)
        {
            partialSum = BinaryPrimitives.ReadUInt16BigEndian(packet[checksumField..]);
            oldSource = BinaryPrimitives.ReadUInt32BigEndian(packet[12..]);
            oldDestination = BinaryPrimitives.ReadUInt32BigEndian(packet[16..]);
        }

        var verdict = _engine.Process(packet, ref length, direction, _batchNow, this);
        TunDevice destination;
        if (verdict.Action == NatAction.ForwardOutside)
        {
            destination = _outside;
        }
        else if (verdict.Action == NatAction.ForwardInside)
        {
            destination = _inside;
        }
        else
        {
            if (verdict.Action == NatAction.Drop)
            {
                _dropped++;
            }

            return;
        }

        if (partial && checksumField + 2 <= length)
        {
            MovePartialChecksum(packet, checksumField, partialSum, oldSource, oldDestination);
        }

        var coalescer = CoalescerOf(destination);
        if (coalescer is not null)
        {
            var translated = _buffer.AsSpan(Headroom, length);
            if (coalescer.TryAppend(translated, header))
            {
                return;
            }

            Flush(destination);
            if (UdpCoalescer.CanStart(translated, header))
            {
                coalescer.Start(translated);
                return;
            }
        }

        Send(destination, header, length);
    }

    /// <summary>
    /// After a translation of an IPv4 packet whose L4 checksum is partial: restores the field the engine updated
    /// (<paramref name="partialSum"/>, the pseudo-header sum before translation) and moves it by the address change
    /// only. The field holds S, not ~S: S' = S - old + new, so the RFC 1624 update is applied to ~S.
    /// </summary>
    internal static void MovePartialChecksum(Span<byte> packet, int checksumField, ushort partialSum, uint oldSource,
        uint oldDestination)
    {
        var newSource = BinaryPrimitives.ReadUInt32BigEndian(packet[12..]);
        var newDestination = BinaryPrimitives.ReadUInt32BigEndian(packet[16..]);
        var complemented = (ushort)~partialSum;
        complemented = Checksum.Update(complemented, oldSource, newSource);
        complemented = Checksum.Update(complemented, oldDestination, newDestination);
        BinaryPrimitives.WriteUInt16BigEndian(packet[checksumField..], (ushort)~complemented);
    }

    private void Send(TunDevice destination, in VirtioNetHeader header, int length)
    {
        if (header.IsGso)
        {
            if (destination.HasVirtioHeader && Carries(destination.Offloads, header, ipv6: _buffer[Headroom] >> 4 == 6))
            {
                _superPackets++;
                header.Write(_buffer);
                Count(destination, destination.Write(_buffer.AsSpan(0, Headroom + length)));
                return;
            }

            _segmented++;
            var count = GsoSegmenter.Split(_buffer.AsSpan(Headroom, length), header, _segments,
                destination.HeaderRoom, _segmentLengths);
            if (count < 0)
            {
                _dropped++;
                return;
            }

            var position = 0;
            for (var i = 0; i < count; i++)
            {
                Count(destination, destination.Write(_segments.AsSpan(position, _segmentLengths[i])));
                position += _segmentLengths[i];
            }

            return;
        }

        if (header.NeedsChecksumCompletion)
        {
            if ((destination.Offloads & TunOffloads.Checksum) != 0)
            {
                header.Write(_buffer);
                Count(destination, destination.Write(_buffer.AsSpan(0, Headroom + length)));
                return;
            }

            _ = GsoSegmenter.CompleteChecksum(_buffer.AsSpan(Headroom, length), header);
        }

        WritePlain(destination, _buffer, length);
    }

    /// <summary>Writes the packet at <paramref name="buffer"/>[Headroom..] with a plain virtio header if needed.</summary>
    private void WritePlain(TunDevice destination, byte[] buffer, int length)
    {
        if (destination.HasVirtioHeader)
        {
            buffer.AsSpan(0, Headroom).Clear();
            Count(destination, destination.Write(buffer.AsSpan(0, Headroom + length)));
        }
        else
        {
            Count(destination, destination.Write(buffer.AsSpan(Headroom, length)));
        }
    }

    /// <summary>Whether a link with <paramref name="offloads"/> takes this GSO super-packet whole: TSO4/TSO6 for
    /// TCP, USO4 or USO6 by the packet's IP version for UDP, and nothing for a GSO type this code does not know.</summary>
    internal static bool Carries(TunOffloads offloads, in VirtioNetHeader header, bool ipv6)
    {
        var needed = (header.GsoType & ~VirtioGsoType.Ecn) switch
        {
            VirtioGsoType.TcpV4 => TunOffloads.Tso4,
            VirtioGsoType.TcpV6 => TunOffloads.Tso6,
            VirtioGsoType.UdpL4 => ipv6 ? TunOffloads.Uso6 : TunOffloads.Uso4,
            _ => TunOffloads.None,
        };
        return needed != TunOffloads.None && (offloads & needed) == needed;
    }

    private void Count(TunDevice destination, bool written)
    {
        if (!written)
        {
            _writeFailures++;
        }
        else if (ReferenceEquals(destination, _inside))
        {
            _insideWritten++;
        }
        else
        {
            _outsideWritten++;
        }
    }
}
