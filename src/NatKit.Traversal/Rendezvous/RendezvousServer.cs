using System.Net;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using NatKit.Net;

namespace NatKit.Traversal.Rendezvous;

/// <summary>
/// The rendezvous service on an <see cref="INetwork"/> (real sockets or the lab): one UDP socket, a receive loop and
/// a timer around <see cref="RendezvousHandler"/>, which does all the work. With a shared registry it also looks up
/// nodes registered at other instances and carries connections between instances over the registry's bus.
/// </summary>
public sealed partial class RendezvousServer : IAsyncDisposable
{
    /// <summary>Lookups in the shared registry in flight at once; beyond this, requests that need one are dropped
    /// (the node retransmits).</summary>
    public const int MaxLookupsInFlight = 1024;

    private const int ReceiveBufferLength = 2048;

    private readonly IDatagramSocket _socket;
    private readonly IRendezvousSharedRegistry? _shared;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();
    private readonly ITimer _timer;
    private readonly TimeProvider _timeProvider;
    private readonly List<RendezvousOutput> _outputs = [];
    private readonly byte[] _reply = new byte[RendezvousHandler.MaxReplyLength];
    private readonly CancellationTokenSource _stop = new();
    private Task _loop = Task.CompletedTask;
    private int _lookups;
    private bool _disposed;
    private TaskCompletionSource? _drained;

    private RendezvousServer(IDatagramSocket socket, RendezvousHandler handler, IRendezvousSharedRegistry? shared,
        TimeProvider time, ILogger logger)
    {
        _socket = socket;
        Handler = handler;
        _shared = shared;
        _logger = logger;
        _timeProvider = time;
        _timer = time.CreateTimer(_ => OnTimer(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    /// <summary>The UDP endpoint the service listens on.</summary>
    public IPEndPoint LocalEndPoint => _socket.LocalEndPoint;

    /// <summary>The pure core (for its counters and table sizes; the server serializes calls into it).</summary>
    public RendezvousHandler Handler { get; }

    public RendezvousMetrics Metrics => Handler.Metrics;

    /// <summary>Binds <see cref="RendezvousServerOptions.Listen"/> and starts serving.</summary>
    /// <exception cref="ArgumentException">The options are invalid (the message names the field).</exception>
    /// <exception cref="NetworkException">The address is in use or not on this host.</exception>
    public static async Task<RendezvousServer> StartAsync(INetwork network, RendezvousServerOptions options,
        IRendezvousSharedRegistry? shared = null, ILogger? logger = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(network);
        ArgumentNullException.ThrowIfNull(options);
        options = options with { SharedRegistry = shared is not null };
        options.Validate();
        var socket = await network.BindUdpAsync(options.Listen, cancellationToken);
        RendezvousServer? server = null;
        try
        {
            var handler = new RendezvousHandler(options, socket.LocalEndPoint, network.TimeProvider);
            server = new RendezvousServer(socket, handler, shared, network.TimeProvider,
                logger ?? NullLogger.Instance);
            if (shared is not null)
            {
                await shared.SubscribeAsync(handler.Instance, server.OnRelay);
            }

            server._loop = server.ReceiveLoopAsync();
            LogStarted(server._logger, socket.LocalEndPoint, handler.Instance, shared is not null);
            return server;
        }
        catch
        {
            if (server is not null)
            {
                await server.DisposeAsync();
            }
            else
            {
                await socket.DisposeAsync();
            }

            throw;
        }
    }

    private async Task ReceiveLoopAsync()
    {
        var buffer = new byte[ReceiveBufferLength];
        var reply = new byte[RendezvousHandler.MaxReplyLength];
        var sends = new List<RendezvousOutput>();
        while (!_stop.IsCancellationRequested)
        {
            ReceivedDatagram datagram;
            try
            {
                datagram = await _socket.ReceiveFromAsync(buffer, CancellationToken.None);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
#pragma warning disable CA1031 // No receive error may end the loop (an ICMP error for an earlier send, say).
            catch (Exception e)
#pragma warning restore CA1031
            {
                LogReceiveFailed(_logger, e.Message);
                try
                {
                    await Task.Delay(TimeSpan.FromMilliseconds(10), _timeProvider, _stop.Token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                continue;
            }

            RendezvousVerdict verdict;
            int length;
            sends.Clear();
            lock (_gate)
            {
                if (_disposed)
                {
                    return;
                }

                // The loop's own reply buffer: nothing else writes it, so the reply leaves without a copy.
                verdict = Handler.Handle(buffer.AsSpan(0, datagram.Length), datagram.RemoteEndPoint, reply, _outputs);
                length = verdict.ReplyLength;
                TakeOutputs(sends);
                Rearm();
            }

            if (verdict.NeedsLookup)
            {
                StartLookup(buffer.AsSpan(0, datagram.Length).ToArray(), datagram.RemoteEndPoint, verdict);
            }

            if (length > 0 && HasStore(sends))
            {
                // A registration answers once its record is in the shared registry: a node that holds its Register
                // response can be found at every instance. The loop goes on meanwhile.
                _ = StoreThenReplyAsync([.. sends], reply.AsMemory(0, length).ToArray(), datagram.RemoteEndPoint);
                continue;
            }

            if (length > 0)
            {
                try
                {
                    await _socket.SendToAsync(reply.AsMemory(0, length), datagram.RemoteEndPoint, CancellationToken.None);
                }
                catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
                {
                    return;
                }
#pragma warning disable CA1031 // A reply the OS refuses (no route to a spoofed source) is lost alone.
                catch (Exception e)
#pragma warning restore CA1031
                {
                    LogSharedFailed(_logger, "reply", e.Message);
                }
            }

            if (sends.Count > 0)
            {
                await PerformAsync(sends);
            }
        }
    }

    private static bool HasStore(List<RendezvousOutput> outputs)
    {
        foreach (var o in outputs)
        {
            if (o.Kind == RendezvousOutputKind.Store)
            {
                return true;
            }
        }

        return false;
    }

    private async Task StoreThenReplyAsync(List<RendezvousOutput> outputs, byte[] reply, IPEndPoint destination)
    {
        await PerformAsync(outputs);
        outputs.Clear();
        outputs.Add(new RendezvousOutput(RendezvousOutputKind.Send, reply, destination));
        await PerformAsync(outputs);
    }

    private void StartLookup(byte[] datagram, IPEndPoint source, RendezvousVerdict verdict)
    {
        if (_shared is null || Interlocked.Increment(ref _lookups) > MaxLookupsInFlight)
        {
            Interlocked.Decrement(ref _lookups);
            return;
        }

        _ = LookupAsync(datagram, source, verdict);
    }

    private async Task LookupAsync(byte[] datagram, IPEndPoint source, RendezvousVerdict verdict)
    {
        try
        {
            var record = await _shared!.LookupAsync(verdict.Lookup, _stop.Token);
            var sends = new List<RendezvousOutput>();
            lock (_gate)
            {
                if (_disposed)
                {
                    return;
                }

                var again = Handler.Handle(datagram, source, _reply, _outputs,
                    record is null ? RemoteLookup.NotFound : RemoteLookup.Found(record));
                if (again.ReplyLength > 0)
                {
                    sends.Add(new RendezvousOutput(RendezvousOutputKind.Send,
                        _reply.AsMemory(0, again.ReplyLength).ToArray(), source));
                }

                TakeOutputs(sends);
                Rearm();
            }

            await PerformAsync(sends);
        }
#pragma warning disable CA1031 // A failed lookup loses that one request (the node retransmits); it is logged.
        catch (Exception e) when (e is not OperationCanceledException)
#pragma warning restore CA1031
        {
            LogSharedFailed(_logger, "lookup", e.Message);
        }
        catch (OperationCanceledException)
        {
        }
        finally
        {
            Interlocked.Decrement(ref _lookups);
        }
    }

    /// <summary>A message from another instance over the shared registry's bus.</summary>
    private void OnRelay(ReadOnlyMemory<byte> message)
    {
        var sends = new List<RendezvousOutput>();
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            Handler.HandleRelay(message.Span, _outputs);
            TakeOutputs(sends);
            Rearm();
        }

        _ = PerformAsync(sends);
    }

    private void OnTimer()
    {
        var sends = new List<RendezvousOutput>();
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            Handler.Poll(_outputs);
            TakeOutputs(sends);
            Rearm();
        }

        _ = PerformAsync(sends);
    }

    private void TakeOutputs(List<RendezvousOutput> into)
    {
        into.AddRange(_outputs);
        _outputs.Clear();
    }

    private void Rearm()
    {
        _timer.Change(Handler.DueIn, Timeout.InfiniteTimeSpan);
        if (_drained is { } drained && Handler.PendingConnections == 0)
        {
            drained.TrySetResult();
        }
    }

    /// <summary>Drain: new connection attempts are refused (508, <see cref="RendezvousHandler.Draining"/>) while the
    /// ones in progress run to their Start or their timeout, for at most <paramref name="timeout"/>. Registrations
    /// and lookups are still answered meanwhile. Returns how many attempts (<see cref="ConnectionAttempts"/>) were still in progress then (disposing
    /// the server ends them).</summary>
    public async Task<int> DrainAsync(TimeSpan timeout)
    {
        var drained = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            Handler.Draining = true; // before the first await: a caller may say "draining" once this returns a task
            _drained = drained;
            if (Handler.PendingConnections == 0)
            {
                drained.TrySetResult();
            }
        }

        // the timer completes the same task (no WhenAny: this also runs in the lab, see docs/lab.md)
        await using (_timeProvider.CreateTimer(_ => drained.TrySetResult(), null, timeout, Timeout.InfiniteTimeSpan))
        {
            await drained.Task.ConfigureAwait(true);
        }

        return ConnectionAttempts;
    }

    /// <summary>Connection attempts in progress (<see cref="RendezvousHandler.ConnectionAttempts"/>), read under the
    /// server's lock.</summary>
    public int ConnectionAttempts
    {
        get
        {
            lock (_gate)
            {
                return Handler.ConnectionAttempts;
            }
        }
    }

    private async Task PerformAsync(List<RendezvousOutput> outputs)
    {
        foreach (var o in outputs)
        {
            try
            {
                switch (o.Kind)
                {
                    case RendezvousOutputKind.Send:
                        await _socket.SendToAsync(o.Data, o.Destination!, CancellationToken.None);
                        break;
                    case RendezvousOutputKind.Store when _shared is not null:
                        await _shared.StoreAsync(o.Node, o.Data, o.Lifetime);
                        break;
                    case RendezvousOutputKind.Relay when _shared is not null:
                        await _shared.RelayAsync(o.Instance!, o.Data);
                        break;
                }
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
#pragma warning disable CA1031 // One failed send or store loses that message only; the service keeps serving.
            catch (Exception e)
#pragma warning restore CA1031
            {
                LogSharedFailed(_logger, o.Kind.ToString(), e.Message);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
        }

        // Cancel, not CancelAsync: the callbacks must run here, on the caller's thread (the lab's loop).
        _stop.Cancel();
        await _timer.DisposeAsync();
        await _socket.DisposeAsync();
        await _loop;
        _stop.Dispose();
        Handler.Metrics.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Information,
        Message = "rendezvous on {EndPoint}, instance {Instance}, shared registry {Shared}")]
    private static partial void LogStarted(ILogger logger, IPEndPoint endPoint, string instance, bool shared);

    [LoggerMessage(Level = LogLevel.Debug, Message = "receive failed: {Reason}")]
    private static partial void LogReceiveFailed(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Operation} failed: {Reason}")]
    private static partial void LogSharedFailed(ILogger logger, string operation, string reason);
}
