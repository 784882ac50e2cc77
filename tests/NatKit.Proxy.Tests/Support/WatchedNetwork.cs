using System.Collections.Concurrent;
using System.Net;
using NatKit.Net;

namespace NatKit.Proxy.Tests.Support;

/// <summary>
/// Another network's connections (accepted and dialled), each behind a <see cref="WatchedStream"/> that tells a
/// test what the proxy does with it: when a write blocks (the kernel did not take it at once: the peer is not
/// reading), whether that write's cancellation was requested, how many bytes completed writes moved, and when a
/// read starts. Aborts pass through to the real connection.
/// </summary>
public sealed class WatchedNetwork(INetwork inner) : INetwork
{
    public TimeProvider TimeProvider => inner.TimeProvider;

    public IReadOnlyList<IPAddress> LocalAddresses => inner.LocalAddresses;

    /// <summary>Connections the proxy accepted, in order.</summary>
    public BlockingCollection<WatchedStream> Accepted { get; } = [];

    /// <summary>Connections the proxy dialled, in order.</summary>
    public BlockingCollection<WatchedStream> Dialled { get; } = [];

    public ValueTask<IDatagramSocket> BindUdpAsync(IPEndPoint localEndPoint, CancellationToken cancellationToken = default) =>
        inner.BindUdpAsync(localEndPoint, cancellationToken);

    public async ValueTask<IStreamListener> ListenTcpAsync(IPEndPoint localEndPoint, int backlog = 512,
        CancellationToken cancellationToken = default) =>
        new Listener(await inner.ListenTcpAsync(localEndPoint, backlog, cancellationToken), Accepted);

    public async ValueTask<IStreamConnection> ConnectTcpAsync(IPEndPoint remoteEndPoint, IPEndPoint? localEndPoint = null,
        CancellationToken cancellationToken = default) =>
        Watch(await inner.ConnectTcpAsync(remoteEndPoint, localEndPoint, cancellationToken), Dialled);

    /// <summary>The first connection in <paramref name="list"/>, within 15 s.</summary>
    public static WatchedStream First(BlockingCollection<WatchedStream> list) =>
        list.TryTake(out var s, TimeSpan.FromSeconds(15)) ? s : throw new TimeoutException("no connection");

    private static Connection Watch(IStreamConnection c, BlockingCollection<WatchedStream> list)
    {
        var w = new Connection(c);
        list.Add((WatchedStream)w.Stream);
        return w;
    }

    private sealed class Listener(IStreamListener l, BlockingCollection<WatchedStream> accepted) : IStreamListener
    {
        public IPEndPoint LocalEndPoint => l.LocalEndPoint;

        public async ValueTask<IStreamConnection> AcceptAsync(CancellationToken cancellationToken = default) =>
            Watch(await l.AcceptAsync(cancellationToken), accepted);

        public ValueTask DisposeAsync() => l.DisposeAsync();
    }

    private sealed class Connection(IStreamConnection c) : IStreamConnection, IStreamAbort
    {
        public Stream Stream { get; } = new WatchedStream(c.Stream);

        public IPEndPoint LocalEndPoint => c.LocalEndPoint;

        public IPEndPoint RemoteEndPoint => c.RemoteEndPoint;

        public void ShutdownSend() => c.ShutdownSend();

        public void Abort()
        {
            ((WatchedStream)Stream).Aborted = true;
            if (c is IStreamAbort a)
            {
                a.Abort();
            }
            else
            {
                c.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
        }

        public ValueTask DisposeAsync() => c.DisposeAsync();
    }
}

/// <summary>A stream that reports on its writes and reads (see <see cref="WatchedNetwork"/>).</summary>
public sealed class WatchedStream(Stream s) : DelegatingStream(s)
{
    private readonly Lock _gate = new();
    private TaskCompletionSource _blocked = New();
    private TaskCompletionSource _readStarted = New();
    private long _written;
    private int _pending;
    private CancellationToken _lastWrite;

    /// <summary>Bytes of writes that completed.</summary>
    public long Written => Interlocked.Read(ref _written);

    /// <summary>Whether the latest write's cancellation has been requested (set synchronously when the proxy's
    /// deadline is cancelled, e.g. from a timer fired by a virtual clock's Advance).</summary>
    public bool LastWriteCancelled
    {
        get
        {
            lock (_gate)
            {
                return _lastWrite.IsCancellationRequested;
            }
        }
    }

    /// <summary>True once the proxy aborted the connection (reset).</summary>
    public bool Aborted { get; set; }

    /// <summary>Completes when a write is blocked: at once if one is pending now, else when the next write does
    /// not complete at once (the kernel did not take it: the peer is not reading fast enough).</summary>
    public Task WhenWriteBlocked()
    {
        lock (_gate)
        {
            if (_pending > 0)
            {
                return Task.CompletedTask;
            }

            if (_blocked.Task.IsCompleted)
            {
                _blocked = New();
            }

            return _blocked.Task;
        }
    }

    /// <summary>Completes when a read starts (since the last <see cref="ResetReadStarted"/>).</summary>
    public Task ReadStarted
    {
        get
        {
            lock (_gate)
            {
                return _readStarted.Task;
            }
        }
    }

    public void ResetReadStarted()
    {
        lock (_gate)
        {
            _readStarted = New();
        }
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (buffer.Length > 0)
        {
            lock (_gate)
            {
                _readStarted.TrySetResult();
            }
        }

        return Inner.ReadAsync(buffer, cancellationToken);
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            _lastWrite = cancellationToken;
        }

        var write = Inner.WriteAsync(buffer, cancellationToken);
        if (write.IsCompletedSuccessfully)
        {
            Interlocked.Add(ref _written, buffer.Length);
            return ValueTask.CompletedTask;
        }

        lock (_gate)
        {
            _pending++;
            _blocked.TrySetResult();
        }

        return Finish(write, buffer.Length);
    }

    private static TaskCompletionSource New() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    private async ValueTask Finish(ValueTask write, int length)
    {
        try
        {
            await write;
            Interlocked.Add(ref _written, length);
        }
        finally
        {
            lock (_gate)
            {
                _pending--;
            }
        }
    }
}
