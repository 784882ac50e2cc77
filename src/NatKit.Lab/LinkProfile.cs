namespace NatKit.Lab;

/// <summary>
/// How a link between a node and a segment treats packets. A hop crosses two links (the sender's and the
/// receiver's): latencies add, each link's loss, duplication and reordering apply in turn, and the smaller MTU
/// wins. Every random choice comes from the lab's seeded <see cref="Random"/>, and a probability of zero draws
/// nothing, so adding an impaired link elsewhere does not change what a clean link does.
/// </summary>
public sealed record LinkProfile
{
    /// <summary>A link with no delay, no loss and a 1500-byte MTU.</summary>
    public static LinkProfile Perfect { get; } = new();

    /// <summary>One-way delay of the link.</summary>
    public TimeSpan Latency { get; init; }

    /// <summary>Extra delay per packet, uniform in [0, Jitter). Jitter alone can reorder packets.</summary>
    public TimeSpan Jitter { get; init; }

    /// <summary>Probability (0..1) that a packet is lost.</summary>
    public double Loss { get; init; }

    /// <summary>Probability (0..1) that a packet is delivered twice.</summary>
    public double Duplicate { get; init; }

    /// <summary>Probability (0..1) that a packet is held back by <see cref="ReorderDelay"/>, so later packets
    /// overtake it.</summary>
    public double Reorder { get; init; }

    /// <summary>How long a reordered packet is held back.</summary>
    public TimeSpan ReorderDelay { get; init; } = TimeSpan.FromMilliseconds(5);

    /// <summary>Largest IPv4 packet the link carries. Bigger ones are dropped on the link; routers answer with
    /// ICMP Fragmentation Needed (or fragment) before that, as their NAT configuration says.</summary>
    public int Mtu { get; init; } = 1500;

    /// <summary>One sentence per invalid field, each starting with the field name; empty when valid.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (Latency < TimeSpan.Zero) errors.Add($"latency: {Latency} is negative.");
        if (Jitter < TimeSpan.Zero) errors.Add($"jitter: {Jitter} is negative.");
        if (ReorderDelay < TimeSpan.Zero) errors.Add($"reorder-delay: {ReorderDelay} is negative.");
        Probability("loss", Loss);
        Probability("duplicate", Duplicate);
        Probability("reorder", Reorder);
        if (Mtu is < 68 or > 65535) errors.Add($"mtu: {Mtu} must be between 68 (RFC 791) and 65535.");
        return errors;

        void Probability(string name, double p)
        {
            if (double.IsNaN(p) || p < 0 || p > 1) errors.Add($"{name}: {p} is not a probability between 0 and 1.");
        }
    }
}
