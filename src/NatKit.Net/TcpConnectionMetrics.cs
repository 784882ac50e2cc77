using System.Diagnostics.Metrics;

namespace NatKit.Net;

/// <summary>
/// The counters of the TCP connection discipline (<see cref="TcpConnectionLimits"/>, <see cref="TcpConnectionWatchdog"/>),
/// one implementation for the STUN and the TURN server, on the server's own meter:
/// <c>{prefix}.connections.rejected</c> {reason: total_limit, address_limit} and
/// <c>{prefix}.connections.timed_out</c> {reason: handshake, idle}, with totals since start. Tags are preboxed, so
/// counting allocates nothing.
/// </summary>
public sealed class TcpConnectionMetrics
{
    private static readonly KeyValuePair<string, object?> TotalLimitTag = new("reason", "total_limit");
    private static readonly KeyValuePair<string, object?> AddressLimitTag = new("reason", "address_limit");
    private static readonly KeyValuePair<string, object?> HandshakeTag = new("reason", "handshake");
    private static readonly KeyValuePair<string, object?> IdleTag = new("reason", "idle");

    private readonly Counter<long> _rejected;
    private readonly Counter<long> _timedOut;
    private long _rejectedCount;
    private long _timedOutCount;

    /// <param name="meter">The server's meter.</param>
    /// <param name="prefix">The server's instrument prefix, e.g. <c>natkit.turn</c>.</param>
    public TcpConnectionMetrics(Meter meter, string prefix)
    {
        ArgumentNullException.ThrowIfNull(meter);
        _rejected = meter.CreateCounter<long>(prefix + ".connections.rejected", "{connection}",
            "TCP and TLS connections closed on accept by a connection cap");
        _timedOut = meter.CreateCounter<long>(prefix + ".connections.timed_out", "{connection}",
            "TCP and TLS connections closed by the handshake window or the idle timeout");
    }

    /// <summary>TCP and TLS connections closed on accept because a connection cap was reached.</summary>
    public long Rejected => Interlocked.Read(ref _rejectedCount);

    /// <summary>TCP and TLS connections closed by the handshake window or the idle timeout.</summary>
    public long TimedOut => Interlocked.Read(ref _timedOutCount);

    public void OnRejected(TcpAdmission reason)
    {
        Interlocked.Increment(ref _rejectedCount);
        _rejected.Add(1, reason == TcpAdmission.AddressLimit ? AddressLimitTag : TotalLimitTag);
    }

    public void OnTimedOut(TcpTimeout reason)
    {
        Interlocked.Increment(ref _timedOutCount);
        _timedOut.Add(1, reason == TcpTimeout.Handshake ? HandshakeTag : IdleTag);
    }
}
