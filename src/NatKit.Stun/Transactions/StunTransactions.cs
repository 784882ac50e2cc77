using System.Net;
using NatKit.Net;

namespace NatKit.Stun.Transactions;

/// <summary>
/// The one push-based STUN transaction table of a shared socket: a <see cref="StunTransactionTable"/>, a lock, one
/// timer on the network's <see cref="TimeProvider"/> for every retransmission and timeout, and a receiver on the
/// socket's <see cref="DatagramMultiplexer"/> that claims responses to pending transactions (by id, whoever started
/// them) and nothing else. The STUN client, the TURN client and ICE checks run their transactions through it, so a
/// Binding on a socket shared with uTP never reads, let alone drops, a datagram meant for someone else.
/// </summary>
/// <remarks>
/// <para>Two ways in. <see cref="TransactAsync"/> does everything: sends, retransmits on the policy's schedule, and
/// completes with the response or null. <see cref="TryAdd"/> is for owners that send themselves (sans-I/O code, a
/// TURN client over TCP): the table only times and matches, and calls the owner's
/// <see cref="IStunTransactionOwner"/> methods.</para>
/// <para>Lab-safe (docs/lab.md): no thread of its own; responses complete on the receive loop, retransmissions and
/// timeouts on the one timer, with continuations run inline (no thread-pool hop), and never through
/// <c>Task.WhenAny</c>. Callbacks run outside the lock.</para>
/// </remarks>
public sealed class StunTransactions : IDatagramReceiver, IDisposable
{
    private readonly StunTransactionTable _table;
    private readonly Lock _gate = new();
    private readonly TimeProvider _time;
    private readonly long _origin;
    private readonly ITimer _timer;
    private readonly List<StunTransactionDue> _due = [];
    private TimeSpan _armedFor = TimeSpan.MaxValue;
    private bool _closed;

    /// <summary>The table of a shared socket: registers on <paramref name="multiplexer"/> (asked before every other
    /// kind of receiver) and sends through it.</summary>
    public StunTransactions(DatagramMultiplexer multiplexer, TimeProvider timeProvider, int capacity = 4096)
        : this(timeProvider, capacity)
    {
        ArgumentNullException.ThrowIfNull(multiplexer);
        Multiplexer = multiplexer;
        multiplexer.AddReceiver(this, DatagramClaim.ByTransaction);
    }

    /// <summary>A table with no socket: its owners send (<see cref="TryAdd"/>) and hand it what arrives
    /// (<see cref="TryReceive"/>), over a stream say.</summary>
    public StunTransactions(TimeProvider timeProvider, int capacity = 4096)
    {
        ArgumentNullException.ThrowIfNull(timeProvider);
        _table = new StunTransactionTable(capacity);
        _time = timeProvider;
        _origin = timeProvider.GetTimestamp();
        _timer = timeProvider.CreateTimer(static s => ((StunTransactions)s!).OnTimer(), this,
            Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    /// <summary>The shared socket's multiplexer; null for a table with no socket.</summary>
    public DatagramMultiplexer? Multiplexer { get; }

    /// <summary>The clock the table times its transactions with.</summary>
    public TimeProvider TimeProvider => _time;

    /// <summary>Transactions pending now.</summary>
    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _table.Count;
            }
        }
    }

    /// <summary>True once the table was disposed or its socket closed: every transaction was ended
    /// (<see cref="IStunTransactionOwner.OnTimeout"/>) and no new one is taken.</summary>
    public bool IsClosed
    {
        get
        {
            lock (_gate)
            {
                return _closed;
            }
        }
    }

    /// <summary>
    /// One transaction on the shared socket: sends <paramref name="request"/> (a STUN request; its transaction id is
    /// read from it) to <paramref name="destination"/> now and again on <paramref name="policy"/>'s schedule, and
    /// completes with the first response to its id that <paramref name="accept"/> takes (integrity, FINGERPRINT,
    /// source: the caller's rules; others are ignored and the transaction keeps waiting), or null when the last wait
    /// passes. <paramref name="request"/> must stay unchanged until then.
    /// </summary>
    /// <exception cref="InvalidOperationException">The table has no socket, is full, or the id is pending.</exception>
    /// <exception cref="ObjectDisposedException">The table was closed, before or during the transaction.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
    public async Task<StunTransactionResponse?> TransactAsync(ReadOnlyMemory<byte> request, IPEndPoint destination,
        StunRetransmitPolicy policy, DatagramMatch? accept = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(destination);
        var multiplexer = Multiplexer ??
                          throw new InvalidOperationException("a table with no socket only takes owners that send (TryAdd)");
        cancellationToken.ThrowIfCancellationRequested();
        var id = RequestId(request.Span);
        var pending = new PendingTransaction(this, multiplexer, accept, id);
        if (!TryAdd(request, destination, policy, pending))
        {
            ThrowIfClosed();
            throw new InvalidOperationException(
                $"the STUN transaction table is full ({_table.Capacity}) or transaction {id} is pending already");
        }

        using var registration = cancellationToken.UnsafeRegister(
            static (s, token) => ((PendingTransaction)s!).Cancel(token), pending);
        try
        {
            await multiplexer.SendToAsync(request, destination, cancellationToken);
        }
        catch (Exception e) when (e is NetworkException or OperationCanceledException
                                      or ObjectDisposedException)
        {
            Cancel(id);
            throw;
        }

        return await pending.Done.Task;
    }

    /// <summary>
    /// Registers a transaction whose requests <paramref name="owner"/> sends: the first one now (after this returns
    /// true), the rest when <see cref="IStunTransactionOwner.OnRetransmit"/> says so. The table matches responses
    /// and times the schedule. False when the table is full or closed, or the id is pending already.
    /// <paramref name="request"/> (a STUN request; its transaction id is read from it) must stay unchanged until
    /// the transaction ends.
    /// </summary>
    public bool TryAdd(ReadOnlyMemory<byte> request, IPEndPoint destination, StunRetransmitPolicy policy,
        IStunTransactionOwner owner)
    {
        ArgumentNullException.ThrowIfNull(destination);
        ArgumentNullException.ThrowIfNull(owner);
        var id = RequestId(request.Span);
        lock (_gate)
        {
            if (_closed || !_table.TryAdd(id, request, destination, Now(), policy, owner))
            {
                return false;
            }

            ArmLocked();
            return true;
        }
    }

    /// <summary>Ends a pending transaction without a word to its owner. False when it was not pending.</summary>
    public bool Cancel(StunTransactionId id)
    {
        lock (_gate)
        {
            return _table.TryRemove(id, out _);
        }
    }

    /// <summary>
    /// Claims a datagram that is a response to a pending transaction its owner accepts, and ends that transaction
    /// (<see cref="IStunTransactionOwner.OnResponse"/>); leaves everything else alone. The multiplexer calls this;
    /// an owner with no socket calls it with what arrives on its stream.
    /// </summary>
    public bool TryReceive(ReadOnlySpan<byte> datagram, IPEndPoint source)
    {
        if (!StunTransactionTable.IsResponse(datagram))
        {
            return false; // uTP, probes, requests: decided from the bytes, without the lock or the clock
        }

        StunTransactionMatch match;
        lock (_gate)
        {
            if (!_table.TryPeek(datagram, Now(), out match))
            {
                return false;
            }
        }

        var owner = (IStunTransactionOwner)match.Owner!;
        if (!owner.Accepts(datagram, source, match))
        {
            return true; // a response to our id that is not genuine (a forgery): swallowed, the wait goes on
        }

        lock (_gate)
        {
            // It may have timed out or been cancelled meanwhile: then it has had its ending already.
            if (!_table.TryRemove(match.Id, out var removed) || !ReferenceEquals(removed, owner))
            {
                return true;
            }
        }

        owner.OnResponse(datagram, source, match);
        return true;
    }

    void IDatagramReceiver.OnClosed() => Close();

    /// <summary>Ends every pending transaction (<see cref="IStunTransactionOwner.OnTimeout"/>, with
    /// <see cref="IsClosed"/> true), stops the timer and leaves the multiplexer.</summary>
    public void Dispose()
    {
        Multiplexer?.RemoveReceiver(this);
        Close();
    }

    // ------------------------------------------------------------------ timer

    private TimeSpan Now() => _time.GetElapsedTime(_origin);

    private void ArmLocked()
    {
        var next = _table.NextDeadline;
        if (next == _armedFor)
        {
            return;
        }

        _armedFor = next;
        if (next == TimeSpan.MaxValue)
        {
            _timer.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            return;
        }

        var wait = next - Now();
        _timer.Change(wait > TimeSpan.Zero ? wait : TimeSpan.Zero, Timeout.InfiniteTimeSpan);
    }

    private void OnTimer()
    {
        StunTransactionDue[] firing;
        lock (_gate)
        {
            if (_closed)
            {
                return;
            }

            _armedFor = TimeSpan.MaxValue;
            _table.Poll(Now(), _due);
            ArmLocked();
            if (_due.Count == 0)
            {
                return; // early: what it was armed for was answered meanwhile
            }

            // A copy: the timer may fire again on another thread while these callbacks run.
            firing = [.. _due];
            _due.Clear();
        }

        Fire(firing);
    }

    /// <summary>Runs the owners' callbacks for what came due, outside the lock.</summary>
    private static void Fire(IEnumerable<StunTransactionDue> due)
    {
        foreach (var d in due)
        {
            var owner = (IStunTransactionOwner)d.Owner!;
            if (d.Kind == StunTransactionDueKind.Retransmit)
            {
                owner.OnRetransmit(d);
            }
            else
            {
                owner.OnTimeout(d);
            }
        }
    }

    private void Close()
    {
        var ended = new List<StunTransactionDue>();
        lock (_gate)
        {
            if (_closed)
            {
                return;
            }

            _closed = true;
            _table.Clear(ended);
            _timer.Dispose();
        }

        Fire(ended);
    }

    private void ThrowIfClosed()
    {
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_closed, this);
        }
    }

    private static StunTransactionId RequestId(ReadOnlySpan<byte> request)
    {
        if (request.Length < StunMessageReader.HeaderLength || !StunMessageReader.LooksLikeStun(request))
        {
            throw new ArgumentException("request: not a STUN message", nameof(request));
        }

        return StunTransactionId.Read(request.Slice(8, StunTransactionId.Size));
    }

    /// <summary><see cref="TransactAsync"/>'s owner: resends through the multiplexer, completes one task.</summary>
    private sealed class PendingTransaction(StunTransactions table, DatagramMultiplexer multiplexer,
        DatagramMatch? accept, StunTransactionId id) : IStunTransactionOwner
    {
        // Continuations run where the task completes (the receive loop, the timer): no thread-pool hop, so callers
        // awaiting with ConfigureAwait(false) stay on an in-memory lab's loop (docs/lab.md rule 4).
        public TaskCompletionSource<StunTransactionResponse?> Done { get; } = new();

        public bool Accepts(ReadOnlySpan<byte> response, IPEndPoint source, in StunTransactionMatch match) =>
            accept is null || accept(response, source);

        public void OnResponse(ReadOnlySpan<byte> response, IPEndPoint source, in StunTransactionMatch match) =>
            Done.TrySetResult(new StunTransactionResponse(response.ToArray(), source, match.Elapsed,
                match.Transmissions));

        public void OnRetransmit(in StunTransactionDue due)
        {
            ValueTask<int> send;
            try
            {
                send = multiplexer.SendToAsync(due.Request, due.Destination);
            }
            catch (Exception e) when (e is NetworkException or ObjectDisposedException)
            {
                return; // a lost send: the schedule goes on, as it would for a lost datagram
            }

            if (send.IsCompleted)
            {
                Observe(send);
            }
            else
            {
                _ = ObserveAsync(send);
            }
        }

        public void OnTimeout(in StunTransactionDue due)
        {
            if (table.IsClosed)
            {
                Done.TrySetException(new ObjectDisposedException(nameof(StunTransactions)));
            }
            else
            {
                Done.TrySetResult(null);
            }
        }

        public void Cancel(CancellationToken token)
        {
            if (table.Cancel(id))
            {
                Done.TrySetCanceled(token);
            }
        }

        private static void Observe(ValueTask<int> send)
        {
            try
            {
                send.GetAwaiter().GetResult();
            }
            catch (Exception e) when (e is NetworkException or ObjectDisposedException
                                          or OperationCanceledException)
            {
                // UDP: a failed send is a lost datagram; the next retransmission or the timeout deals with it.
            }
        }

        private static async Task ObserveAsync(ValueTask<int> send)
        {
            try
            {
                await send;
            }
            catch (Exception e) when (e is NetworkException or ObjectDisposedException
                                          or OperationCanceledException)
            {
                // as above
            }
        }
    }
}

/// <summary>
/// Whoever started a transaction with <see cref="StunTransactions.TryAdd"/>. Exactly one of
/// <see cref="OnResponse"/> and <see cref="OnTimeout"/> ends each transaction (none when it is cancelled). Called
/// outside the table's lock, on the receive loop (responses) or the table's timer (the rest); calls back into the
/// table are fine.
/// </summary>
public interface IStunTransactionOwner
{
    /// <summary>A response to the transaction's id arrived: is it genuine (integrity, FINGERPRINT, source)? False
    /// ignores it as a forgery and the transaction keeps waiting. The span is valid only during the call.</summary>
    bool Accepts(ReadOnlySpan<byte> response, IPEndPoint source, in StunTransactionMatch match) => true;

    /// <summary>The transaction ended with this response (it is out of the table). The span is valid only during
    /// the call.</summary>
    void OnResponse(ReadOnlySpan<byte> response, IPEndPoint source, in StunTransactionMatch match);

    /// <summary>Send <see cref="StunTransactionDue.Request"/> to <see cref="StunTransactionDue.Destination"/> again,
    /// now.</summary>
    void OnRetransmit(in StunTransactionDue due);

    /// <summary>The last wait passed with no accepted response, or the table closed
    /// (<see cref="StunTransactions.IsClosed"/>): the transaction is over.</summary>
    void OnTimeout(in StunTransactionDue due);
}

/// <summary>The response a transaction ended with: the whole message, who sent it, the time since the first send,
/// and how many sends it took.</summary>
public sealed record StunTransactionResponse(byte[] Message, IPEndPoint Source, TimeSpan Elapsed, int Transmissions);
