using System.Runtime.CompilerServices;

namespace NatKit.Nat.Internal;

/// <summary>
/// Expiry without scanning the table: a wheel of one-second slots, each a doubly linked list threaded through
/// <see cref="Session.WheelNext"/>/<see cref="Session.WheelPrev"/>. A refresh only writes
/// <see cref="Session.LastRefresh"/>; when a session's slot comes round, its deadline is recomputed and it is
/// either expired or moved to the slot of its new deadline (lazy re-check). Deadlines further out than the
/// wheel's span park in the farthest slot and are re-checked there.
/// </summary>
internal sealed class TimerWheel
{
    public const int Slots = 4096;

    /// <summary><see cref="Session.WheelPrev"/> of a session that is on no slot.</summary>
    public const int OffWheel = int.MinValue;
    private const int Mask = Slots - 1;
    private readonly int[] _heads = new int[Slots];
    private long _second;
    private long _nextDueMs;

    public TimerWheel(long nowMs)
    {
        Array.Fill(_heads, -1);
        _second = FloorSecond(nowMs);
        _nextDueMs = (_second + 1) * 1000;
    }

    /// <summary>The last second whose slot has been processed.</summary>
    public long Second => _second;

    private static long FloorSecond(long ms) => ms >= 0 ? ms / 1000 : ((ms + 1) / 1000) - 1;

    private static long CeilSecond(long ms) => -FloorSecond(-ms);

    /// <summary>Puts a session (not on the wheel) in the slot of <paramref name="dueMs"/>.</summary>
    public void Schedule(Session[] sessions, int index, long dueMs)
    {
        var second = CeilSecond(dueMs);
        if (second <= _second) second = _second + 1;
        if (second > _second + Mask) second = _second + Mask;
        var slot = (int)(second & Mask);
        ref var s = ref sessions[index];
        var head = _heads[slot];
        s.WheelNext = head;
        s.WheelPrev = ~slot; // negative: "head of this slot"
        if (head >= 0) sessions[head].WheelPrev = index;
        _heads[slot] = index;
    }

    /// <summary>Takes a session off the wheel.</summary>
    public void Unlink(Session[] sessions, int index)
    {
        ref var s = ref sessions[index];
        if (s.WheelPrev == OffWheel) return;
        if (s.WheelPrev < 0) _heads[~s.WheelPrev] = s.WheelNext;
        else sessions[s.WheelPrev].WheelNext = s.WheelNext;
        if (s.WheelNext >= 0) sessions[s.WheelNext].WheelPrev = s.WheelPrev;
        s.WheelNext = -1;
        s.WheelPrev = OffWheel;
    }

    /// <summary>Counts the sessions on the wheel (tests: every live session is on it exactly once).</summary>
    internal int CountScheduled(Session[] sessions)
    {
        var n = 0;
        foreach (var head in _heads)
        {
            for (var i = head; i >= 0; i = sessions[i].WheelNext) n++;
        }

        return n;
    }

    /// <summary>True when a slot is due: the caller then calls <see cref="Advance"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool IsDue(long nowMs) => nowMs >= _nextDueMs;

    /// <summary>
    /// Processes every slot up to <paramref name="nowMs"/>. For each session found, <paramref name="visitor"/>
    /// decides: expire it, or return its new deadline to reschedule.
    /// </summary>
    public void Advance<TVisitor>(FlowTable table, long nowMs, ref TVisitor visitor)
        where TVisitor : struct, IWheelVisitor
    {
        var target = FloorSecond(nowMs);
        if (target - _second > Slots)
        {
            _second = target - Slots; // every slot is visited once; nothing is skipped
        }

        while (_second < target)
        {
            _second++;
            var slot = (int)(_second & Mask);
            var i = _heads[slot];
            _heads[slot] = -1;
            while (i >= 0)
            {
                var sessions = table.Sessions;
                var next = sessions[i].WheelNext;
                sessions[i].WheelNext = -1;
                sessions[i].WheelPrev = OffWheel;
                if (next >= 0) sessions[next].WheelPrev = ~slot;
                var due = visitor.Deadline(i);
                if (due <= nowMs) visitor.Expire(i);
                else Schedule(table.Sessions, i, due);
                i = next;
            }
        }

        _nextDueMs = (_second + 1) * 1000;
    }
}

/// <summary>What the wheel asks of its owner for each session whose slot came round.</summary>
internal interface IWheelVisitor
{
    long Deadline(int session);

    void Expire(int session);
}
