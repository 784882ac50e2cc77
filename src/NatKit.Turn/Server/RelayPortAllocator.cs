namespace NatKit.Turn.Server;

/// <summary>
/// Hands out relay ports from a configured range (RFC 8656 section 7.2: ports chosen at random, so an attacker
/// cannot guess the next one; EVEN-PORT asks for an even one, and its R bit for the next port too). A bitmap
/// of ports in use; a random start and a linear probe from there. The caller binds the port and calls
/// <see cref="Release"/> if binding fails (another program holds it) or when the allocation ends. Not
/// thread-safe: the server guards it.
/// </summary>
internal sealed class RelayPortAllocator
{
    private readonly ulong[] _used;
    private readonly Random _random;
    private int _inUse;

    public RelayPortAllocator(int firstPort, int lastPort, Random? random = null)
    {
        if (firstPort < 1 || lastPort > 65535 || firstPort > lastPort)
        {
            throw new ArgumentOutOfRangeException(nameof(firstPort), $"relay port range {firstPort}-{lastPort} is not within 1-65535");
        }

        FirstPort = firstPort;
        LastPort = lastPort;
        _used = new ulong[((lastPort - firstPort) / 64) + 1];
        _random = random ?? Random.Shared;
    }

    public int FirstPort { get; }

    public int LastPort { get; }

    public int Size => LastPort - FirstPort + 1;

    public int InUse => _inUse;

    /// <summary>Takes a free port (an even one when <paramref name="even"/>; with <paramref name="andNext"/> also
    /// the port after it, which must be free too). False when the range has none.</summary>
    public bool TryTake(bool even, bool andNext, out int port)
    {
        var size = Size;
        var start = _random.Next(size);
        for (var i = 0; i < size; i++)
        {
            var candidate = FirstPort + ((start + i) % size);
            if (even && (candidate & 1) != 0)
            {
                continue;
            }

            if (IsUsed(candidate) || (andNext && (candidate == LastPort || IsUsed(candidate + 1))))
            {
                continue;
            }

            Mark(candidate);
            if (andNext)
            {
                Mark(candidate + 1);
            }

            port = candidate;
            return true;
        }

        port = 0;
        return false;
    }

    /// <summary>Takes one specific port (the one a RESERVATION-TOKEN held) if it is in range and free.</summary>
    public bool TryTakeSpecific(int port)
    {
        if (port < FirstPort || port > LastPort || IsUsed(port))
        {
            return false;
        }

        Mark(port);
        return true;
    }

    /// <summary>Returns a port to the range.</summary>
    public void Release(int port)
    {
        if (port < FirstPort || port > LastPort || !IsUsed(port))
        {
            return;
        }

        var i = port - FirstPort;
        _used[i >> 6] &= ~(1UL << (i & 63));
        _inUse--;
    }

    public bool IsUsed(int port)
    {
        var i = port - FirstPort;
        return (_used[i >> 6] & (1UL << (i & 63))) != 0;
    }

    private void Mark(int port)
    {
        var i = port - FirstPort;
        _used[i >> 6] |= 1UL << (i & 63);
        _inUse++;
    }
}
