using System.Diagnostics.Metrics;
using NatKit.Net;

namespace NatKit.Stun.Server;

/// <summary>
/// The server's meters. Names are stable (dashboards depend on them): meter <c>NatKit.Stun.Server</c>;
/// counters <c>natkit.stun.server.requests</c> {transport}, <c>natkit.stun.server.responses</c> {class},
/// <c>natkit.stun.server.errors</c> {code}, <c>natkit.stun.server.dropped</c> {reason};
/// <c>natkit.stun.server.connections.rejected</c> {reason: total_limit, address_limit} and
/// <c>natkit.stun.server.connections.timed_out</c> {reason: handshake, idle} for TCP and TLS connections. Tags
/// are preallocated so counting allocates nothing.
/// </summary>
public sealed class StunServerMetrics : IDisposable
{
    public const string MeterName = "NatKit.Stun.Server";

    private static readonly KeyValuePair<string, object?>[] TransportTags =
        [new("transport", "udp"), new("transport", "tcp"), new("transport", "tls")];

    private static readonly KeyValuePair<string, object?> SuccessTag = new("class", "success");
    private static readonly KeyValuePair<string, object?> ErrorTag = new("class", "error");

    private static readonly KeyValuePair<string, object?>[] DropTags =
    [
        new("reason", "malformed"), new("reason", "rate_limited"), new("reason", "not_request"),
        new("reason", "fingerprint"), new("reason", "unsupported"), new("reason", "connection_limit"),
    ];

    private static readonly int[] KnownCodes = [300, 400, 401, 403, 420, 437, 438, 441, 442, 486, 500, 508];

    private static readonly KeyValuePair<string, object?>[] CodeTags =
        KnownCodes.Select(c => new KeyValuePair<string, object?>("code", c.ToString(System.Globalization.CultureInfo.InvariantCulture))).ToArray();

    private readonly Meter _meter = new(MeterName);
    private readonly Counter<long> _requests;
    private readonly Counter<long> _responses;
    private readonly Counter<long> _errors;
    private readonly Counter<long> _dropped;
    private readonly TcpConnectionMetrics _tcp;
    private long _requestCount;
    private long _responseCount;
    private long _droppedCount;

    public StunServerMetrics()
    {
        _requests = _meter.CreateCounter<long>("natkit.stun.server.requests", "{request}", "STUN messages received");
        _responses = _meter.CreateCounter<long>("natkit.stun.server.responses", "{response}", "responses sent");
        _errors = _meter.CreateCounter<long>("natkit.stun.server.errors", "{response}", "error responses by code");
        _dropped = _meter.CreateCounter<long>("natkit.stun.server.dropped", "{message}", "messages answered with silence");
        _tcp = new TcpConnectionMetrics(_meter, "natkit.stun.server");
    }

    /// <summary>Totals since start (for tests and the CLI's summary line).</summary>
    public long Requests => Interlocked.Read(ref _requestCount);

    public long Responses => Interlocked.Read(ref _responseCount);

    public long Dropped => Interlocked.Read(ref _droppedCount);

    /// <summary>TCP and TLS connections closed on accept because a connection cap was reached.</summary>
    public long ConnectionsRejected => _tcp.Rejected;

    /// <summary>TCP and TLS connections closed by the handshake window or the idle timeout.</summary>
    public long ConnectionsTimedOut => _tcp.TimedOut;

    internal void ConnectionRejected(TcpAdmission reason) => _tcp.OnRejected(reason);

    internal void ConnectionTimedOut(TcpTimeout reason) => _tcp.OnTimedOut(reason);

    internal void Request(StunTransport transport)
    {
        Interlocked.Increment(ref _requestCount);
        _requests.Add(1, TransportTags[(int)transport]);
    }

    internal void Success()
    {
        Interlocked.Increment(ref _responseCount);
        _responses.Add(1, SuccessTag);
    }

    internal void Error(int code)
    {
        Interlocked.Increment(ref _responseCount);
        _responses.Add(1, ErrorTag);
        var i = Array.IndexOf(KnownCodes, code);
        if (i >= 0)
        {
            _errors.Add(1, CodeTags[i]);
        }
    }

    /// <summary>Sees every drop, to log a sample of them (set by the server that owns these meters).</summary>
    internal DropLog? DropLog { get; set; }

    internal void Drop(DropReason reason)
    {
        Interlocked.Increment(ref _droppedCount);
        _dropped.Add(1, DropTags[(int)reason]);
        DropLog?.Dropped(reason);
    }

    public void Dispose() => _meter.Dispose();
}

internal enum DropReason
{
    Malformed,
    RateLimited,
    NotRequest,
    Fingerprint,
    Unsupported,
    ConnectionLimit,
}

/// <summary>The transport a request came over.</summary>
public enum StunTransport
{
    Udp,
    Tcp,
    Tls,
}
