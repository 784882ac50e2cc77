using System.Net;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Threading.Channels;

namespace NatKit.Net.Tests;

/// <summary>The one accept loop: what ends it, what it reports and goes on after, and what a failing connection
/// does (nothing to the loop). Driven by a scripted listener: no socket.</summary>
public class StreamAcceptLoopTests
{
    private sealed class ScriptedListener : IStreamListener
    {
        private readonly Channel<Func<IStreamConnection>> _next = Channel.CreateUnbounded<Func<IStreamConnection>>();

        public IPEndPoint LocalEndPoint { get; } = new(IPAddress.Loopback, 1);

        public void Yield(IStreamConnection connection) => _next.Writer.TryWrite(() => connection);

        public void Fail(Exception e) => _next.Writer.TryWrite(() => throw e);

        public async ValueTask<IStreamConnection> AcceptAsync(CancellationToken cancellationToken = default)
        {
            var next = await _next.Reader.ReadAsync(cancellationToken);
            return next();
        }

        public ValueTask DisposeAsync()
        {
            _next.Writer.TryWrite(() => throw new ObjectDisposedException(nameof(ScriptedListener)));
            return ValueTask.CompletedTask;
        }
    }

    private sealed class Connection(int port) : IStreamConnection
    {
        public int Disposed;

        public TaskCompletionSource Closed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Stream Stream { get; } = new MemoryStream();

        public IPEndPoint LocalEndPoint { get; } = new(IPAddress.Loopback, 1);

        public IPEndPoint RemoteEndPoint { get; } = new(IPAddress.Loopback, port);

        public void ShutdownSend()
        {
        }

        public ValueTask DisposeAsync()
        {
            Interlocked.Increment(ref Disposed);
            Closed.TrySetResult();
            return ValueTask.CompletedTask;
        }
    }

    private static CancellationToken Deadline() => new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token;

    [Fact]
    public async Task TransientAcceptErrors_AreReported_AndTheLoopGoesOn_ThenTheClosedListenerEndsIt()
    {
        var listener = new ScriptedListener();
        var failures = new List<Exception>();
        var served = Channel.CreateUnbounded<IStreamConnection>();
        var loop = StreamAcceptLoop.RunAsync(listener, c => served.Writer.WriteAsync(c).AsTask(), failures.Add);

        listener.Fail(new NetworkException(SocketError.ConnectionReset, "reset before accept"));
        listener.Fail(new NetworkException(SocketError.TooManyOpenSockets, "EMFILE"));
        var a = new Connection(1000);
        listener.Yield(a);
        Assert.Same(a, await served.Reader.ReadAsync(Deadline()));
        Assert.Equal(2, failures.Count);
        Assert.All(failures, f => Assert.IsType<NetworkException>(f));

        await listener.DisposeAsync();
        await loop.WaitAsync(Deadline()); // ends without throwing
        Assert.Equal(0, a.Disposed); // the loop leaves a served connection to its handler
    }

    [Fact]
    public async Task CancellingStop_EndsTheLoop()
    {
        using var stop = new CancellationTokenSource();
        var loop = StreamAcceptLoop.RunAsync(new ScriptedListener(), _ => Task.CompletedTask, stop: stop.Token);
        Assert.False(loop.IsCompleted);
        await stop.CancelAsync();
        await loop.WaitAsync(Deadline());
    }

    [Fact]
    public async Task AHandlerBug_IsReported_ItsConnectionClosed_AndTheNextConnectionIsServed()
    {
        var listener = new ScriptedListener();
        var reported = new List<(IStreamConnection, Exception)>();
        var served = Channel.CreateUnbounded<IStreamConnection>();
        var bad = new Connection(1);
        var good = new Connection(2);
        var loop = StreamAcceptLoop.RunAsync(listener, c => ReferenceEquals(c, bad)
                ? throw new InvalidOperationException("a bug")
                : served.Writer.WriteAsync(c).AsTask(),
            serveFailed: (c, e) => reported.Add((c, e)));

        listener.Yield(bad);
        listener.Yield(good);
        Assert.Same(good, await served.Reader.ReadAsync(Deadline()));
        var (who, what) = Assert.Single(reported);
        Assert.Same(bad, who);
        Assert.IsType<InvalidOperationException>(what);
        Assert.Equal(1, bad.Disposed);
        await listener.DisposeAsync();
        await loop.WaitAsync(Deadline());
    }

    [Theory]
    [InlineData(typeof(IOException))]
    [InlineData(typeof(OperationCanceledException))]
    [InlineData(typeof(AuthenticationException))]
    public async Task AConnectionError_ClosesTheConnectionQuietly(Type error)
    {
        var listener = new ScriptedListener();
        var reported = 0;
        var failing = new Connection(1);
        var served = Channel.CreateUnbounded<IStreamConnection>();
        var loop = StreamAcceptLoop.RunAsync(listener, async c =>
        {
            await Task.Yield();
            if (ReferenceEquals(c, failing))
            {
                throw (Exception)Activator.CreateInstance(error)!;
            }

            await served.Writer.WriteAsync(c);
        }, serveFailed: (_, _) => Interlocked.Increment(ref reported));

        listener.Yield(failing);
        var after = new Connection(2);
        listener.Yield(after);
        Assert.Same(after, await served.Reader.ReadAsync(Deadline()));
        await listener.DisposeAsync();
        await loop.WaitAsync(Deadline());
        await failing.Closed.Task.WaitAsync(Deadline()); // the failing handler's close runs on its own flow

        Assert.Equal(0, reported);
        Assert.True(StreamAcceptLoop.IsConnectionError((Exception)Activator.CreateInstance(error)!));
    }

    [Fact]
    public async Task ServeRunsBeforeTheNextAccept_SoAnAdmissionCheckSeesConnectionsInOrder()
    {
        var listener = new ScriptedListener();
        var order = new List<int>();
        var all = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var loop = StreamAcceptLoop.RunAsync(listener, c =>
        {
            order.Add(c.RemoteEndPoint.Port); // synchronous part: runs on the accepting flow
            if (order.Count == 3)
            {
                all.TrySetResult();
            }

            return new TaskCompletionSource().Task; // a connection that stays open
        });
        for (var i = 1; i <= 3; i++)
        {
            listener.Yield(new Connection(i));
        }

        await all.Task.WaitAsync(Deadline());
        Assert.Equal([1, 2, 3], order);
        await listener.DisposeAsync();
        await loop.WaitAsync(Deadline());
    }
}
