using System.Diagnostics.Metrics;
using NatKit.Net;
using NatKit.Stun.Server;

namespace NatKit.Turn.Server;

/// <summary>
/// The server's meters, under the stable meter name <see cref="MeterName"/>:
/// <list type="bullet">
/// <item><c>natkit.turn.allocations.active</c> (gauge), <c>natkit.turn.allocations.created</c>,
///   <c>natkit.turn.allocations.deleted</c></item>
/// <item><c>natkit.turn.relay.packets</c> and <c>natkit.turn.relay.bytes</c>, tagged <c>direction</c> =
///   <c>to_peer</c> or <c>to_client</c></item>
/// <item><c>natkit.turn.refusals</c>: error responses, tagged <c>code</c> (400, 401, 403, 437, 438, ...)</item>
/// <item><c>natkit.turn.drops</c>: packets dropped, tagged <c>reason</c> (no_permission, policy,
///   bandwidth, no_allocation, no_channel, rate_limited, malformed, too_large, fingerprint)</item>
/// <item><c>natkit.turn.connections.active</c> (gauge): TCP and TLS client connections held;
///   <c>natkit.turn.connections.rejected</c>, tagged <c>reason</c> = <c>total_limit</c> or <c>address_limit</c>;
///   <c>natkit.turn.connections.timed_out</c>, tagged <c>reason</c> = <c>handshake</c> or <c>idle</c></item>
/// </list>
/// Tag values are preboxed, so recording allocates nothing.
/// </summary>
public sealed class TurnMetrics : IDisposable
{
    public const string MeterName = "NatKit.Turn";

    private static readonly KeyValuePair<string, object?> ToPeer = new("direction", "to_peer");
    private static readonly KeyValuePair<string, object?> ToClient = new("direction", "to_client");
    private static readonly Dictionary<int, KeyValuePair<string, object?>> Codes = BuildCodes();

    private readonly Meter _meter;
    private readonly Counter<long> _packets;
    private readonly Counter<long> _bytes;
    private readonly Counter<long> _refusals;
    private readonly Counter<long> _drops;
    private readonly long[] _dropCounts = new long[Enum.GetValues<DropReason>().Length];
    private readonly Counter<long> _created;
    private readonly Counter<long> _deleted;
    private readonly TcpConnectionMetrics _tcp;

    internal TurnMetrics(Func<int> activeAllocations, Func<int> activeConnections)
    {
        _meter = new Meter(MeterName);
        _meter.CreateObservableGauge("natkit.turn.allocations.active", activeAllocations, "{allocation}",
            "Allocations currently held");
        _created = _meter.CreateCounter<long>("natkit.turn.allocations.created", "{allocation}");
        _deleted = _meter.CreateCounter<long>("natkit.turn.allocations.deleted", "{allocation}");
        _packets = _meter.CreateCounter<long>("natkit.turn.relay.packets", "{packet}");
        _bytes = _meter.CreateCounter<long>("natkit.turn.relay.bytes", "By");
        _refusals = _meter.CreateCounter<long>("natkit.turn.refusals", "{response}");
        _drops = _meter.CreateCounter<long>("natkit.turn.drops", "{packet}");
        _meter.CreateObservableGauge("natkit.turn.connections.active", activeConnections, "{connection}",
            "TCP and TLS client connections currently held");
        _tcp = new TcpConnectionMetrics(_meter, "natkit.turn");
    }

    /// <summary>TCP and TLS connections closed on accept because a connection cap was reached.</summary>
    public long ConnectionsRejected => _tcp.Rejected;

    /// <summary>TCP and TLS connections closed by the handshake window or the idle timeout.</summary>
    public long ConnectionsTimedOut => _tcp.TimedOut;

    internal void ConnectionRejected(TcpAdmission reason) => _tcp.OnRejected(reason);

    internal void ConnectionTimedOut(TcpTimeout reason) => _tcp.OnTimedOut(reason);

    internal void Relayed(bool toPeer, int bytes)
    {
        var tag = toPeer ? ToPeer : ToClient;
        _packets.Add(1, tag);
        _bytes.Add(bytes, tag);
    }

    internal void Refused(int code)
    {
        if (Codes.TryGetValue(code, out var tag))
        {
            _refusals.Add(1, tag);
        }
        else
        {
            _refusals.Add(1, new KeyValuePair<string, object?>("code", code));
        }
    }

    internal void Dropped(DropReason reason)
    {
        Interlocked.Increment(ref _dropCounts[(int)reason]);
        _drops.Add(1, DropTags[(int)reason]);
    }

    /// <summary>Datagrams dropped for <paramref name="reason"/> so far (what the drops counter has added).</summary>
    internal long DropCount(DropReason reason) => Interlocked.Read(ref _dropCounts[(int)reason]);

    internal void AllocationCreated() => _created.Add(1);

    internal void AllocationDeleted() => _deleted.Add(1);

    public void Dispose() => _meter.Dispose();

    private static readonly KeyValuePair<string, object?>[] DropTags =
    [
        new("reason", "no_permission"),
        new("reason", "policy"),
        new("reason", "bandwidth"),
        new("reason", "no_allocation"),
        new("reason", "no_channel"),
        new("reason", "rate_limited"),
        new("reason", "malformed"),
        new("reason", "too_large"),
        new("reason", "fingerprint"),
    ];

    private static Dictionary<int, KeyValuePair<string, object?>> BuildCodes()
    {
        var d = new Dictionary<int, KeyValuePair<string, object?>>();
        foreach (var c in new[] { 400, 401, 403, 420, 437, 438, 440, 441, 442, 443, 486, 500, 508 })
        {
            d[c] = new KeyValuePair<string, object?>("code", c);
        }

        return d;
    }
}

internal enum DropReason
{
    NoPermission,
    Policy,
    Bandwidth,
    NoAllocation,
    NoChannel,
    RateLimited,
    Malformed,
    TooLarge,
    Fingerprint,
}
