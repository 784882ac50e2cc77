namespace NatKit.Traversal.HardNat;

/// <summary>
/// Port prediction for a NAT with a sequential allocator (address- or address-and-port-dependent mapping, each new
/// mapping a fixed step after the last): learn the step from two or more STUN servers (<see cref="NatProfiler"/>),
/// then aim at the ports the peer's next mappings will get. When both sides are such NATs and send their probes to
/// new destinations in the same order at the same moment, probe i of each side leaves from the port that probe i of
/// the other side aims at, and both NATs let the other's probe in.
/// </summary>
public static class PortPredictor
{
    /// <summary>The largest step (in ports) still read as a sequential allocator rather than random ports.</summary>
    public const int MaxStep = 16;

    /// <summary>
    /// The external ports of the next <paramref name="count"/> mappings after <see cref="NatProfile.LastPort"/>, in
    /// the order they will be made: last + step, last + 2 step, ... wrapping inside
    /// [<paramref name="rangeStart"/>, <paramref name="rangeEnd"/>] as an allocator does. Empty when the profile is
    /// not <see cref="NatProfile.IsPredictable"/>.
    /// </summary>
    public static int[] Predict(NatProfile profile, int count, int rangeStart = 1024, int rangeEnd = 65535)
    {
        ArgumentNullException.ThrowIfNull(profile);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfLessThan(rangeStart, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(rangeEnd, 65535);
        ArgumentOutOfRangeException.ThrowIfLessThan(rangeEnd, rangeStart);
        if (!profile.IsPredictable || profile.Step == 0)
        {
            return [];
        }

        var size = rangeEnd - rangeStart + 1;
        var ports = new int[Math.Min(count, size)];
        var port = profile.LastPort;
        for (var i = 0; i < ports.Length; i++)
        {
            port += profile.Step;
            if (port > rangeEnd)
            {
                port -= size;
            }
            else if (port < rangeStart)
            {
                port += size;
            }

            ports[i] = port;
        }

        return ports;
    }
}
