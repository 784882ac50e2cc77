using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace NatKit.Net.Internal;

/// <summary>
/// One thread of the process that relays socket pairs with splice(2): an edge-triggered epoll set holds both
/// sockets of every relay, and any event on either runs both directions of that relay until the kernel says
/// "would block". Bytes go socket -> pipe -> socket and never into the process.
/// </summary>
/// <remarks>
/// .NET's own socket engine keeps its registration of the same descriptors; it sees readiness events with no
/// operation waiting and ignores them. The relay owns a reference on each socket's handle while it runs, so the
/// descriptor cannot be closed and reused under it. splice(2) blocks on a blocking socket whatever its flags say,
/// so the relay makes both descriptors non-blocking while it runs and gives them back their own flags after.
/// </remarks>
internal sealed unsafe class SpliceReactor
{
    private const int MaxEvents = 128;
    private const long WakeToken = 0; // a GCHandle is never 0

    private static readonly Lazy<SpliceReactor?> SharedReactor = new(Create, LazyThreadSafetyMode.ExecutionAndPublication);

    private readonly int _epoll;
    private readonly int _wake;
    private readonly ConcurrentQueue<(SpliceRelay Relay, Exception? Error, bool Abort)> _commands = new();
    private readonly List<SpliceRelay> _finished = [];

    private SpliceReactor(int epoll, int wake)
    {
        _epoll = epoll;
        _wake = wake;
        new Thread(Run) { IsBackground = true, Name = "natkit-splice" }.Start();
    }

    /// <summary>The process's reactor, started on first use; null where epoll and splice do not exist.</summary>
    public static SpliceReactor? Shared => SharedReactor.Value;

    private static SpliceReactor? Create() =>
        Libc.TryCreateEpollWithWake(WakeToken, out var epoll, out var wake) ? new SpliceReactor(epoll, wake) : null;

    /// <summary>What a socket is first watched for: everything, so no edge before the first run is lost.</summary>
    public const uint AllEvents = Libc.EPOLLIN | Libc.EPOLLOUT | Libc.EPOLLRDHUP | Libc.EPOLLET;

    public bool Watch(int fd, long token) => Libc.EpollControl(_epoll, Libc.EPOLL_CTL_ADD, fd, AllEvents, token) == 0;

    /// <summary>Changes what a watched socket wakes the reactor for. The kernel checks the socket against the new
    /// set at once, so an edge that is already there is not missed.</summary>
    public void Interest(int fd, uint events, long token) => _ = Libc.EpollControl(_epoll, Libc.EPOLL_CTL_MOD, fd, events, token);

    public void Unwatch(int fd) => _ = Libc.EpollControl(_epoll, Libc.EPOLL_CTL_DEL, fd, 0, 0);

    /// <summary>Ends a relay from any thread: canceled when <paramref name="error"/> is null.</summary>
    public void Abort(SpliceRelay relay, Exception? error) => Post(relay, error, abort: true);

    /// <summary>Runs a relay once from any thread (a relay just started: edges before that were not acted on).</summary>
    public void Kick(SpliceRelay relay) => Post(relay, null, abort: false);

    private void Post(SpliceRelay relay, Exception? error, bool abort)
    {
        _commands.Enqueue((relay, error, abort));
        ulong one = 1;
        _ = Libc.write(_wake, (byte*)&one, sizeof(ulong));
    }

    /// <summary>Called by a relay as it finishes, on this thread: its handle is freed once the batch of events that
    /// may still name it is done.</summary>
    public void Retire(SpliceRelay relay) => _finished.Add(relay);

    private void Run()
    {
        var stride = Libc.EpollEventSize;
        var events = stackalloc byte[MaxEvents * 16];
        while (true)
        {
            var n = Libc.epoll_wait(_epoll, events, MaxEvents, -1);
            for (var i = 0; i < n; i++)
            {
                var token = BinaryPrimitives.ReadInt64LittleEndian(new ReadOnlySpan<byte>(events + i * stride + Libc.EpollDataOffset, 8));
                if (token == WakeToken)
                {
                    ulong value;
                    _ = Libc.read(_wake, (byte*)&value, sizeof(ulong));
                    continue;
                }

                if (GCHandle.FromIntPtr((nint)token).Target is SpliceRelay relay && !relay.Finished)
                {
                    relay.Progress();
                }
            }

            while (_commands.TryDequeue(out var command))
            {
                if (command.Relay.Finished)
                {
                    continue;
                }

                if (command.Abort)
                {
                    command.Relay.Finish(command.Error, canceled: command.Error is null);
                }
                else
                {
                    command.Relay.Progress();
                }
            }

            foreach (var relay in _finished)
            {
                relay.Free();
            }

            _finished.Clear();
        }
    }
}

/// <summary>Both directions between two sockets, each through its own pipe; run only on the reactor's thread once
/// started.</summary>
internal sealed class SpliceRelay
{
    private const int PipeSize = 1 << 20;

    private readonly SpliceReactor _reactor;
    private readonly SafeHandle _handleA;
    private readonly SafeHandle _handleB;
    private readonly int _a;
    private readonly int _b;
    private readonly int _flagsA;
    private readonly int _flagsB;
    private readonly Action<bool, long> _moved;
    private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Direction _fromA;
    private Direction _fromB;
    private GCHandle _self;
    private uint _eventsA = SpliceReactor.AllEvents;
    private uint _eventsB = SpliceReactor.AllEvents;

    private SpliceRelay(SpliceReactor reactor, SafeHandle a, SafeHandle b, Direction fromA, Direction fromB,
        Action<bool, long> moved)
    {
        _reactor = reactor;
        _handleA = a;
        _handleB = b;
        _a = (int)a.DangerousGetHandle();
        _b = (int)b.DangerousGetHandle();
        _flagsA = NonBlocking(_a);
        _flagsB = NonBlocking(_b);
        _fromA = fromA;
        _fromB = fromB;
        _moved = moved;
    }

    /// <summary>Set (on the reactor's thread) once the relay has ended.</summary>
    public bool Finished { get; private set; }

    /// <summary>Set once both sockets are watched; until then events are not acted on, so the relay cannot end
    /// (and its handle be freed) while the second socket is still being added.</summary>
    private volatile bool _started;

    /// <summary>Starts relaying between <paramref name="a"/> and <paramref name="b"/>; null when it cannot (no
    /// reactor, no pipes, or the sockets cannot be watched), having moved nothing.</summary>
    public static Task? TryStart(Socket a, Socket b, Action<bool, long> moved, CancellationToken cancellationToken)
    {
        if (SpliceReactor.Shared is not { } reactor)
        {
            return null;
        }

        if (cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled(cancellationToken);
        }

        if (!Direction.TryCreate(out var fromA))
        {
            return null;
        }

        if (!Direction.TryCreate(out var fromB))
        {
            fromA.Close();
            return null;
        }

        var handleA = a.SafeHandle;
        var handleB = b.SafeHandle;
        bool refA = false, refB = false;
        try
        {
            handleA.DangerousAddRef(ref refA);
            handleB.DangerousAddRef(ref refB);
        }
        catch (ObjectDisposedException)
        {
            Release(handleA, refA, handleB, refB);
            fromA.Close();
            fromB.Close();
            return null;
        }

        var relay = new SpliceRelay(reactor, handleA, handleB, fromA, fromB, moved);
        relay._self = GCHandle.Alloc(relay);
        var token = (long)GCHandle.ToIntPtr(relay._self);
        if (relay._flagsA < 0 || relay._flagsB < 0 || !reactor.Watch(relay._a, token))
        {
            relay._self.Free();
            RestoreFlags(relay._a, relay._flagsA);
            RestoreFlags(relay._b, relay._flagsB);
            Release(handleA, refA, handleB, refB);
            fromA.Close();
            fromB.Close();
            return null;
        }

        // From here events may name the relay: every later failure goes through the reactor.
        if (!reactor.Watch(relay._b, token))
        {
            reactor.Abort(relay, new IOException("cannot watch a socket for the relay"));
        }
        else
        {
            relay._started = true;
            reactor.Kick(relay); // edges that came before this were skipped
        }

        var cancellation = cancellationToken.UnsafeRegister(static s =>
        {
            var r = (SpliceRelay)s!;
            r._reactor.Abort(r, null);
        }, relay);
        return WaitAsync(relay._done.Task, cancellation);
    }

    private static async Task WaitAsync(Task done, CancellationTokenRegistration cancellation)
    {
        try
        {
            await done.ConfigureAwait(false);
        }
        finally
        {
            // Unregister, not Dispose: a late callback only queues an abort the reactor ignores for an ended relay.
            _ = cancellation.Unregister();
        }
    }

    /// <summary>Runs both directions as far as the kernel lets them; ends the relay on an error or when both are
    /// done.</summary>
    public void Progress()
    {
        if (!_started)
        {
            return;
        }

        var errno = Pump(ref _fromA, _a, _b, fromA: true);
        if (errno == 0)
        {
            errno = Pump(ref _fromB, _b, _a, fromA: false);
        }

        if (errno != 0)
        {
            Finish(new IOException($"relay: {(errno == Libc.EPIPE ? "the peer closed" : "splice failed")} (errno {errno})"),
                canceled: false);
        }
        else if (_fromA.Done && _fromB.Done)
        {
            Finish(null, canceled: false);
        }
        else
        {
            // Wake only for what can move: a direction whose pipe still holds bytes waits for room at its
            // destination, not for more input. Under bulk load a full destination otherwise costs a wake-up per
            // segment that arrives at the source (errors and hang-ups are reported whatever the set).
            Watch(_a, ref _eventsA, Wanted(_fromA, _fromB));
            Watch(_b, ref _eventsB, Wanted(_fromB, _fromA));
        }
    }

    /// <summary>The events one socket should wake the reactor for: input while its direction's pipe is empty and
    /// the stream goes on, room while the other direction's pipe holds bytes for it.</summary>
    private static uint Wanted(in Direction from, in Direction to) =>
        Libc.EPOLLRDHUP | Libc.EPOLLET
        | (from.Pending == 0 && !from.EndOfStream ? Libc.EPOLLIN : 0)
        | (to.Pending > 0 ? Libc.EPOLLOUT : 0);

    private void Watch(int fd, ref uint current, uint wanted)
    {
        if (wanted != current)
        {
            _reactor.Interest(fd, wanted, (long)GCHandle.ToIntPtr(_self));
            current = wanted;
        }
    }

    /// <summary>Ends the relay on the reactor's thread and completes its task.</summary>
    public void Finish(Exception? error, bool canceled)
    {
        Finished = true;
        _reactor.Unwatch(_a);
        _reactor.Unwatch(_b);
        _fromA.Close();
        _fromB.Close();
        RestoreFlags(_a, _flagsA);
        RestoreFlags(_b, _flagsB);
        Release(_handleA, true, _handleB, true);
        _reactor.Retire(this);
        if (error is not null)
        {
            _done.TrySetException(error);
        }
        else if (canceled)
        {
            _done.TrySetCanceled();
        }
        else
        {
            _done.TrySetResult();
        }
    }

    /// <summary>Frees the handle epoll events name the relay by (after the last batch that could hold one).</summary>
    public void Free()
    {
        if (_self.IsAllocated)
        {
            _self.Free();
        }
    }

    /// <summary>Sets O_NONBLOCK; returns the flags before, or -1.</summary>
    private static int NonBlocking(int fd)
    {
        var flags = Libc.fcntl(fd, Libc.F_GETFL, 0);
        return flags < 0 || ((flags & Libc.O_NONBLOCK) == 0 && Libc.fcntl(fd, Libc.F_SETFL, flags | Libc.O_NONBLOCK) < 0)
            ? -1
            : flags;
    }

    private static void RestoreFlags(int fd, int flags)
    {
        if (flags >= 0 && (flags & Libc.O_NONBLOCK) == 0)
        {
            _ = Libc.fcntl(fd, Libc.F_SETFL, flags);
        }
    }

    private static void Release(SafeHandle a, bool refA, SafeHandle b, bool refB)
    {
        if (refA)
        {
            a.DangerousRelease();
        }

        if (refB)
        {
            b.DangerousRelease();
        }
    }

    /// <summary>Moves bytes from <paramref name="source"/> to <paramref name="destination"/> until either would
    /// block; passes end-of-stream on as a half-close. Returns 0, or the errno that broke the direction.</summary>
    private unsafe int Pump(ref Direction d, int source, int destination, bool fromA)
    {
        while (true)
        {
            if (d.Pending > 0)
            {
                var m = (long)Libc.splice(d.Read, null, destination, null, (nuint)d.Pending,
                    Libc.SPLICE_F_MOVE | Libc.SPLICE_F_NONBLOCK);
                if (m > 0)
                {
                    d.Pending -= m;
                    _moved(fromA, m);
                    continue;
                }

                var errno = Marshal.GetLastPInvokeError();
                return m < 0 && errno == Libc.EAGAIN ? 0 : (m == 0 ? Libc.EPIPE : errno);
            }

            if (d.EndOfStream)
            {
                if (!d.Done)
                {
                    _ = Libc.shutdown(destination, Libc.SHUT_WR);
                    d.Done = true;
                }

                return 0;
            }

            var n = (long)Libc.splice(source, null, d.Write, null, PipeSize, Libc.SPLICE_F_MOVE | Libc.SPLICE_F_NONBLOCK);
            if (n > 0)
            {
                d.Pending = n;
                continue;
            }

            if (n == 0)
            {
                d.EndOfStream = true;
                continue;
            }

            var e = Marshal.GetLastPInvokeError();
            return e == Libc.EAGAIN ? 0 : e;
        }
    }

    /// <summary>One direction: its pipe and what is in it.</summary>
    private unsafe struct Direction
    {
        public int Read;
        public int Write;
        public long Pending;
        public bool EndOfStream;
        public bool Done;

        public static bool TryCreate(out Direction direction)
        {
            direction = new Direction { Read = -1, Write = -1 };
            var fds = stackalloc int[2];
            if (Libc.pipe2(fds, Libc.O_NONBLOCK | Libc.O_CLOEXEC) != 0)
            {
                return false;
            }

            _ = Libc.fcntl(fds[1], Libc.F_SETPIPE_SZ, PipeSize); // bigger moves per call; the default still works
            direction = new Direction { Read = fds[0], Write = fds[1] };
            return true;
        }

        public void Close()
        {
            if (Read >= 0)
            {
                _ = Libc.close(Read);
                _ = Libc.close(Write);
                Read = Write = -1;
            }
        }
    }
}
