using System.Globalization;

namespace NatKit.Linux;

/// <summary>
/// How a namespace-lab link delays, loses and duplicates packets, in the in-memory lab's terms (one-way latency,
/// plus an extra delay drawn uniformly from [0, <see cref="Jitter"/>), independent loss and duplication
/// probabilities), applied on each direction of the link with the kernel's netem queueing discipline.
/// </summary>
/// <param name="Latency">One-way delay.</param>
/// <param name="Jitter">Width of the uniform extra delay.</param>
/// <param name="Loss">Probability (0..1) that a packet is dropped.</param>
/// <param name="Duplicate">Probability (0..1) that a packet is sent twice.</param>
public sealed record LinkImpairment(TimeSpan Latency, TimeSpan Jitter = default, double Loss = 0, double Duplicate = 0)
{
    /// <summary>Packets netem holds per device: enough for a delayed bulk transfer (its default is 1000).</summary>
    private const int QueueLimit = 10000;

    /// <summary>True when the link changes nothing (no qdisc is needed).</summary>
    public bool IsNone => Latency <= TimeSpan.Zero && Jitter <= TimeSpan.Zero && Loss <= 0 && Duplicate <= 0;

    /// <summary>
    /// The netem options (after <c>tc qdisc add dev D root netem</c>). netem draws its jitter uniformly from
    /// delay ± jitter when no distribution table is named, so the lab's [latency, latency + jitter) becomes a delay
    /// of latency + jitter/2 with a jitter of jitter/2.
    /// </summary>
    public IReadOnlyList<string> NetemArguments()
    {
        var args = new List<string> { "limit", QueueLimit.ToString(CultureInfo.InvariantCulture) };
        if (Latency > TimeSpan.Zero || Jitter > TimeSpan.Zero)
        {
            var half = Jitter / 2;
            args.AddRange(["delay", Microseconds(Latency + half)]);
            if (half > TimeSpan.Zero)
            {
                args.Add(Microseconds(half));
            }
        }

        if (Loss > 0)
        {
            args.AddRange(["loss", "random", Percent(Loss)]);
        }

        if (Duplicate > 0)
        {
            args.AddRange(["duplicate", Percent(Duplicate)]);
        }

        return args;
    }

    private static string Microseconds(TimeSpan t) =>
        ((long)Math.Round(t.TotalMicroseconds)).ToString(CultureInfo.InvariantCulture) + "us";

    private static string Percent(double p) => (p * 100).ToString("0.######", CultureInfo.InvariantCulture) + "%";
}
