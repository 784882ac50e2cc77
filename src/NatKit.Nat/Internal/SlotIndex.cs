using System.Numerics;
using System.Runtime.CompilerServices;

namespace NatKit.Nat.Internal;

/// <summary>Matches a probe key against the entry at an index (a struct so the JIT inlines it).</summary>
internal interface IEntryMatcher
{
    bool Matches(int index);
}

/// <summary>Recomputes the hash of a stored entry (for backward-shift deletion and resizing).</summary>
internal interface IEntryHasher
{
    uint HashOf(int index);
}

/// <summary>
/// An open-addressing hash index from a key to an entry index: linear probing, no tombstones (backward-shift
/// deletion), load factor at most 1/2. A slot holds the entry index + 1 in its low 24 bits and 7 bits of the
/// hash above them, so most non-matching probes are rejected without touching the entry. 4 bytes per slot.
/// </summary>
internal sealed class SlotIndex
{
    private const int IndexBits = 24;
    private const int IndexMask = (1 << IndexBits) - 1;
    private int[] _slots;
    private int _mask;

    public SlotIndex(int capacity)
    {
        var size = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(16, capacity));
        _slots = new int[size];
        _mask = size - 1;
    }

    public int Count { get; private set; }

    public int Capacity => _slots.Length;

    public long Bytes => (long)_slots.Length * sizeof(int);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Tag(uint hash) => (int)((hash >> 25) | 1) << IndexBits;

    /// <summary>The entry index whose key matches, or -1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Find<TMatcher>(uint hash, ref TMatcher matcher)
        where TMatcher : struct, IEntryMatcher
    {
        var slots = _slots;
        var mask = _mask;
        var tag = Tag(hash);
        var i = (int)hash & mask;
        while (true)
        {
            var s = slots[i];
            if (s == 0)
            {
                return -1;
            }

            if ((s & ~IndexMask) == tag)
            {
                var index = (s & IndexMask) - 1;
                if (matcher.Matches(index))
                {
                    return index;
                }
            }

            i = (i + 1) & mask;
        }
    }

    /// <summary>Adds an entry (the caller knows its key is not present). Grows when half full.</summary>
    public void Insert<THasher>(uint hash, int index, ref THasher hasher)
        where THasher : struct, IEntryHasher
    {
        if ((Count + 1) * 2 > _slots.Length)
        {
            Resize(_slots.Length * 2, ref hasher);
        }

        Place(_slots, _mask, hash, index);
        Count++;
    }

    private static void Place(int[] slots, int mask, uint hash, int index)
    {
        var i = (int)hash & mask;
        while (slots[i] != 0)
        {
            i = (i + 1) & mask;
        }

        slots[i] = Tag(hash) | (index + 1);
    }

    /// <summary>Removes the entry <paramref name="index"/> stored under <paramref name="hash"/>.</summary>
    public void Remove<THasher>(uint hash, int index, ref THasher hasher)
        where THasher : struct, IEntryHasher
    {
        var slots = _slots;
        var mask = _mask;
        var i = (int)hash & mask;
        var want = index + 1;
        while (true)
        {
            var s = slots[i];
            if (s == 0)
            {
                return; // not present
            }

            if ((s & IndexMask) == want)
            {
                break;
            }

            i = (i + 1) & mask;
        }

        // Backward-shift: move later entries of the cluster into the hole when their home allows it.
        var hole = i;
        var j = i;
        while (true)
        {
            j = (j + 1) & mask;
            var s = slots[j];
            if (s == 0)
            {
                break;
            }

            var home = (int)hasher.HashOf((s & IndexMask) - 1) & mask;
            var between = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
            if (!between)
            {
                slots[hole] = s;
                hole = j;
            }
        }

        slots[hole] = 0;
        Count--;
    }

    private void Resize<THasher>(int size, ref THasher hasher)
        where THasher : struct, IEntryHasher
    {
        var old = _slots;
        var slots = new int[size];
        var mask = size - 1;
        foreach (var s in old)
        {
            if (s != 0)
            {
                var index = (s & IndexMask) - 1;
                Place(slots, mask, hasher.HashOf(index), index);
            }
        }

        _slots = slots;
        _mask = mask;
    }

    public void Clear()
    {
        Array.Clear(_slots);
        Count = 0;
    }
}
