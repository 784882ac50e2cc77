namespace NatKit.Turn.Server;

/// <summary>
/// Deadlines for many items without scanning them all: a min-heap of (item, deadline) where an item whose
/// deadline moved later (a Refresh) is simply re-queued when its old entry comes up. Each tick pops only what is
/// due: O(due * log n). The caller owns locking.
/// </summary>
internal sealed class ExpiryQueue<T>
    where T : class
{
    private readonly PriorityQueue<T, long> _heap = new();

    public int Count => _heap.Count;

    public void Add(T item, long deadline) => _heap.Enqueue(item, deadline);

    /// <summary>Pops the next item whose queued deadline is at or before <paramref name="now"/>. The caller
    /// checks the item's current deadline and calls <see cref="Add"/> again if it moved.</summary>
    public bool TryPopDue(long now, out T item)
    {
        if (_heap.TryPeek(out var next, out var deadline) && deadline <= now)
        {
            _heap.Dequeue();
            item = next;
            return true;
        }

        item = null!;
        return false;
    }
}
