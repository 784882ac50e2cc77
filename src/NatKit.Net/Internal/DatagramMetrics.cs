using System.Diagnostics.Metrics;

namespace NatKit.Net.Internal;

/// <summary>
/// The shared-socket meters. Names are stable (dashboards depend on them): meter <c>NatKit.Net</c>; counters
/// <c>natkit.net.mux.received</c>, <c>natkit.net.mux.unclaimed</c>, <c>natkit.net.mux.receiver_faults</c> and
/// <c>natkit.net.datagram_queue.dropped</c> {reason = full | oversize}. Totals over every multiplexer in the
/// process; each instance also counts its own (<see cref="DatagramMultiplexer.Received"/> ...). Tags are preallocated,
/// so counting allocates nothing.
/// </summary>
internal static class DatagramMetrics
{
    public const string MeterName = "NatKit.Net";

    private static readonly Meter Meter = new(MeterName);

    private static readonly Counter<long> ReceivedCounter = Meter.CreateCounter<long>("natkit.net.mux.received",
        "{datagram}", "Datagrams received on sockets shared through a multiplexer");

    private static readonly Counter<long> UnclaimedCounter = Meter.CreateCounter<long>("natkit.net.mux.unclaimed",
        "{datagram}", "Datagrams no receiver claimed, dropped for want of an unclaimed-traffic socket");

    private static readonly Counter<long> FaultCounter = Meter.CreateCounter<long>("natkit.net.mux.receiver_faults",
        "{exception}", "Exceptions thrown by receivers on a multiplexer's loop (the datagram is dropped)");

    private static readonly Counter<long> QueueDropCounter = Meter.CreateCounter<long>(
        "natkit.net.datagram_queue.dropped", "{datagram}",
        "Datagrams a sub-socket's queue dropped: full, or larger than the receive buffer");

    private static readonly KeyValuePair<string, object?> FullTag = new("reason", "full");
    private static readonly KeyValuePair<string, object?> OversizeTag = new("reason", "oversize");

    public static void Received() => ReceivedCounter.Add(1);

    public static void Unclaimed() => UnclaimedCounter.Add(1);

    public static void Fault() => FaultCounter.Add(1);

    public static void QueueDropped(bool oversize) => QueueDropCounter.Add(1, oversize ? OversizeTag : FullTag);
}
