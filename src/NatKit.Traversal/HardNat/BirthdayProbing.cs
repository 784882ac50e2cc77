namespace NatKit.Traversal.HardNat;

/// <summary>
/// What the hard-NAT methods may spend: probes per second and in total (the easy side's random probes, or the
/// predicted ports tried), and how many sockets the hard side opens for birthday probing. The defaults, 256 sockets
/// and 2,048 probes, meet with probability 99.97% over the 64,512 ports (1024-65535) Linux's <c>masquerade
/// random</c> and NatKit's symmetric preset draw from, and 99.99999% over 32768-65535 (Tailscale's 1,024 probes give
/// 98.3% over 1024-65535: one connection in 60 would fall back to the relay). At 500 a second they take 4.1 s.
/// </summary>
public sealed record ProbeBudget
{
    /// <summary>Probes sent per second at most (each is one small datagram).</summary>
    public int PerSecond { get; init; } = 500;

    /// <summary>Probes in all, per connection attempt.</summary>
    public int Total { get; init; } = 2048;

    /// <summary>Sockets the hard (random-port) side opens, each creating one mapping toward the easy side.</summary>
    public int HardSideSockets { get; init; } = 256;

    /// <summary>Predicted ports tried per side when both NATs allocate sequentially.</summary>
    public int PredictedPorts { get; init; } = 32;

    /// <summary>Throws <see cref="ArgumentException"/> naming the bad field.</summary>
    public ProbeBudget Validated()
    {
        if (PerSecond is < 1 or > 100_000)
        {
            throw new ArgumentException("PerSecond: 1 to 100000 probes a second", nameof(PerSecond));
        }

        if (Total is < 0 or > 65_536)
        {
            throw new ArgumentException("Total: 0 to 65536 probes", nameof(Total));
        }

        if (HardSideSockets is < 0 or > 1024)
        {
            throw new ArgumentException("HardSideSockets: 0 to 1024 sockets", nameof(HardSideSockets));
        }

        if (PredictedPorts is < 0 or > 1024)
        {
            throw new ArgumentException("PredictedPorts: 0 to 1024 ports", nameof(PredictedPorts));
        }

        return this;
    }
}

/// <summary>
/// Birthday-paradox probing through one random-port symmetric NAT (Tailscale's method): the hard side opens many
/// sockets and sends from each to the easy side's stable public endpoint, creating that many mappings on its NAT,
/// each open to the easy side; the easy side sends probes from its one socket to random ports of the hard side's
/// public address. A probe that lands on one of those mappings is let in, and the answer goes back out through it
/// to an endpoint the easy side has just sent to.
/// </summary>
public static class BirthdayProbing
{
    /// <summary>
    /// The chance that at least one of <paramref name="probes"/> distinct ports, drawn at random from
    /// <paramref name="rangeSize"/>, is one of the <paramref name="open"/> mapped ones (sampling without
    /// replacement: 1 - C(R-k, n) / C(R, n)).
    /// </summary>
    public static double SuccessProbability(int open, int rangeSize, int probes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(open);
        ArgumentOutOfRangeException.ThrowIfLessThan(rangeSize, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(probes);
        open = Math.Min(open, rangeSize);
        probes = Math.Min(probes, rangeSize);
        if (open == 0 || probes == 0)
        {
            return 0;
        }

        if (probes > rangeSize - open)
        {
            return 1;
        }

        var logMiss = 0.0;
        for (var i = 0; i < probes; i++)
        {
            logMiss += Math.Log((double)(rangeSize - open - i) / (rangeSize - i));
        }

        return 1 - Math.Exp(logMiss);
    }

    /// <summary>
    /// The range a random allocator draws from, guessed from ports it was seen to hand out: the common 32768-65535
    /// (Linux's and BSDs' ephemeral range, Tailscale natlab's "hard") when every one lies there, else 1024-65535.
    /// </summary>
    public static (int Start, int End) GuessRange(IEnumerable<int> seenPorts)
    {
        ArgumentNullException.ThrowIfNull(seenPorts);
        var any = false;
        foreach (var p in seenPorts)
        {
            any = true;
            if (p < 32768)
            {
                return (1024, 65535);
            }
        }

        return any ? (32768, 65535) : (1024, 65535);
    }

    /// <summary>
    /// <paramref name="count"/> distinct ports from [<paramref name="start"/>, <paramref name="end"/>] in random
    /// order, drawn from <paramref name="random"/> (the lab's, so a run repeats), skipping
    /// <paramref name="exclude"/> (ports already known not to be mapped, like the ones STUN saw).
    /// </summary>
    public static int[] ProbePorts(Random random, int start, int end, int count, IReadOnlySet<int>? exclude = null)
    {
        ArgumentNullException.ThrowIfNull(random);
        ArgumentOutOfRangeException.ThrowIfLessThan(start, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(end, 65535);
        ArgumentOutOfRangeException.ThrowIfLessThan(end, start);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        var size = end - start + 1;
        count = Math.Min(count, size - (exclude?.Count ?? 0));
        var chosen = new HashSet<int>(Math.Max(count, 0));
        var ports = new int[Math.Max(count, 0)];
        var n = 0;
        while (n < ports.Length)
        {
            var p = start + random.Next(size);
            if ((exclude is null || !exclude.Contains(p)) && chosen.Add(p))
            {
                ports[n++] = p;
            }
        }

        return ports;
    }
}
