using System.Diagnostics.Metrics;
using NatKit.Stun.Server;

namespace NatKit.Traversal.Rendezvous;

/// <summary>
/// What the rendezvous service did, as plain counters (read by the CLI and the tests) and as the meter
/// <c>NatKit.Traversal.Rendezvous</c> (observable counters with stable names). Written by the handler, which one
/// thread at a time calls.
/// </summary>
public sealed class RendezvousMetrics : IDisposable
{
    public const string MeterName = "NatKit.Traversal.Rendezvous";

    private readonly Meter _meter = new(MeterName);
    private readonly Dictionary<int, long> _refusals = [];

    public RendezvousMetrics()
    {
        _meter.CreateObservableCounter("natkit.rendezvous.datagrams", () => Datagrams);
        _meter.CreateObservableCounter("natkit.rendezvous.registrations", () => Registrations);
        _meter.CreateObservableCounter("natkit.rendezvous.lookups", () => Lookups);
        _meter.CreateObservableCounter("natkit.rendezvous.connects", () => Connects);
        _meter.CreateObservableCounter("natkit.rendezvous.started", () => Started);
        _meter.CreateObservableCounter("natkit.rendezvous.rate_limited", () => RateLimited);
        _meter.CreateObservableCounter("natkit.rendezvous.signature_checks", () => SignatureChecks);
    }

    /// <summary>The Binding side (STUN's own counters).</summary>
    public StunServerMetrics Stun { get; } = new();

    public long Datagrams { get; internal set; }

    /// <summary>Dropped unread: the source's token bucket was empty.</summary>
    public long RateLimited { get; internal set; }

    /// <summary>Dropped: not STUN, a bad FINGERPRINT, an indication, a malformed relay message.</summary>
    public long Malformed { get; internal set; }

    /// <summary>Requests answered with a fresh NONCE (401 or 438).</summary>
    public long NonceChallenges { get; internal set; }

    /// <summary>Signatures checked (the costly step; everything cheaper comes first).</summary>
    public long SignatureChecks { get; internal set; }

    public long Registrations { get; internal set; }

    public long Deregistrations { get; internal set; }

    public long Expired { get; internal set; }

    public long Lookups { get; internal set; }

    public long Connects { get; internal set; }

    /// <summary>Connection attempts that got as far as Start.</summary>
    public long Started { get; internal set; }

    public long Failed { get; internal set; }

    public long Retransmissions { get; internal set; }

    public long UnmatchedResponses { get; internal set; }

    /// <summary>Requests refused with <paramref name="code"/> (after the nonce check).</summary>
    public long RefusedWith(int code) => _refusals.GetValueOrDefault(code);

    /// <summary>All requests refused after the nonce check.</summary>
    public long Refusals => _refusals.Values.Sum();

    internal void Refused(int code) => _refusals[code] = _refusals.GetValueOrDefault(code) + 1;

    public void Dispose()
    {
        _meter.Dispose();
        Stun.Dispose();
    }
}
