using System.Buffers.Binary;
using System.Net;
using System.Text;
using NatKit.Stun;
using NatKit.Traversal.Identity;

namespace NatKit.Traversal.Rendezvous;

/// <summary>
/// A peer's registration as a node receives it from a Lookup, checked end to end: the key hashes to the id asked for
/// and the node's own signature covers the candidates, so the service can withhold a registration but not forge one.
/// The reflexive address is the service's word (it is where the service saw the node).
/// </summary>
public sealed record RendezvousPeer(NodeId Id, byte[] PublicKey, IReadOnlyList<string> Candidates,
    IPEndPoint ReflexiveEndPoint, DateTimeOffset SignedAt)
{
    /// <summary>Reads a Lookup success response for <paramref name="expected"/>. Never throws.</summary>
    public static bool TryRead(ReadOnlySpan<byte> response, NodeId expected, out RendezvousPeer peer)
    {
        peer = null!;
        if (!StunMessageReader.TryParse(response, out var msg) || SignedRegistration.Read(msg, out var reg) != 0 ||
            reg.Id != expected || !reg.Verify(msg) ||
            !msg.TryGetXorAddress(RendezvousAttributes.PeerAddress, out var reflexive))
        {
            return false;
        }

        var candidates = new List<string>();
        foreach (var a in msg.Attributes)
        {
            if (a.Type == RendezvousAttributes.Candidate)
            {
                candidates.Add(Encoding.UTF8.GetString(a.Value));
            }
        }

        peer = new RendezvousPeer(reg.Id, reg.PublicKey.ToArray(), candidates, reflexive.ToEndPoint(),
            DateTimeOffset.FromUnixTimeMilliseconds(Math.Clamp(reg.Timestamp, 0, 253402300799999)));
        return true;
    }
}

/// <summary>
/// An initiator's offer as its target receives it in the service's Offer request, checked end to end: the key hashes
/// to the initiator's id, the initiator signed this offer for this target, and the signature is fresh.
/// </summary>
public sealed class RendezvousOffer
{
    private RendezvousOffer(ulong connectionId, NodeId from, byte[] publicKey, IPEndPoint? fromEndPoint,
        string session, long timestamp)
    {
        ConnectionId = connectionId;
        From = from;
        PublicKey = publicKey;
        FromEndPoint = fromEndPoint;
        Session = session;
        Timestamp = timestamp;
    }

    public ulong ConnectionId { get; }

    /// <summary>The initiator.</summary>
    public NodeId From { get; }

    public byte[] PublicKey { get; }

    /// <summary>Where the service sees the initiator (its server-reflexive address).</summary>
    public IPEndPoint? FromEndPoint { get; }

    /// <summary>The offer, opaque to the service (the ICE agent's credentials and candidates).</summary>
    public string Session { get; }

    /// <summary>The initiator's signing time (Unix milliseconds).</summary>
    public long Timestamp { get; }

    /// <summary>Set by the client that received the offer: sends the answer and waits for the Start.</summary>
    internal Func<string, CancellationToken, Task<RendezvousStart>>? Answerer { get; set; }

    /// <summary>Sends <paramref name="answer"/> (signed) back through the service and completes when the service
    /// says when to start.</summary>
    public Task<RendezvousStart> AnswerAsync(string answer, CancellationToken cancellationToken = default) =>
        Answerer is { } a
            ? a(answer, cancellationToken)
            : throw new InvalidOperationException("this offer did not come through a RendezvousClient");

    /// <summary>Reads an Offer request addressed to <paramref name="self"/>, refusing signatures further than
    /// <paramref name="window"/> from <paramref name="nowUnixMs"/>. Never throws.</summary>
    public static bool TryRead(ReadOnlySpan<byte> request, NodeId self, long nowUnixMs, TimeSpan window,
        out RendezvousOffer offer)
    {
        offer = null!;
        if (!StunMessageReader.TryParse(request, out var msg) || msg.Method != RendezvousMethods.Offer ||
            !SessionFields.Read(msg, nowUnixMs, window, out var f))
        {
            return false;
        }

        Span<byte> payload = stackalloc byte[RendezvousSigning.MaxPayload];
        var n = RendezvousSigning.Offer(payload, self, f.Timestamp, f.Session);
        if (!NodePublicKey.Verify(f.PublicKey, payload[..n], f.Signature))
        {
            return false;
        }

        offer = new RendezvousOffer(f.ConnectionId, f.From, f.PublicKey.ToArray(), f.EndPoint,
            Encoding.UTF8.GetString(f.Session), f.Timestamp);
        return true;
    }
}

/// <summary>A target's answer as the initiator receives it in the service's Answer request, checked end to end.</summary>
public sealed record RendezvousAnswer(ulong ConnectionId, NodeId From, byte[] PublicKey, IPEndPoint? FromEndPoint,
    string Session, long Timestamp)
{
    /// <summary>Reads an Answer request to <paramref name="self"/> from <paramref name="expected"/>. Never throws;
    /// false also for the service's failure notice (see <see cref="TryReadFailure"/>).</summary>
    public static bool TryRead(ReadOnlySpan<byte> request, NodeId self, NodeId expected, long nowUnixMs,
        TimeSpan window, out RendezvousAnswer answer)
    {
        answer = null!;
        if (!StunMessageReader.TryParse(request, out var msg) || msg.Method != RendezvousMethods.Answer ||
            !SessionFields.Read(msg, nowUnixMs, window, out var f) || f.From != expected)
        {
            return false;
        }

        Span<byte> payload = stackalloc byte[RendezvousSigning.MaxPayload];
        var n = RendezvousSigning.Answer(payload, self, f.ConnectionId, f.Timestamp, f.Session);
        if (!NodePublicKey.Verify(f.PublicKey, payload[..n], f.Signature))
        {
            return false;
        }

        answer = new RendezvousAnswer(f.ConnectionId, f.From, f.PublicKey.ToArray(), f.EndPoint,
            Encoding.UTF8.GetString(f.Session), f.Timestamp);
        return true;
    }

    /// <summary>The service's notice that connection <paramref name="connectionId"/> failed, with its code.</summary>
    public static bool TryReadFailure(ReadOnlySpan<byte> request, out ulong connectionId, out int code)
    {
        connectionId = 0;
        code = 0;
        return StunMessageReader.TryParse(request, out var msg) && msg.Method == RendezvousMethods.Answer &&
               msg.TryGetUInt64(RendezvousAttributes.ConnectionId, out connectionId) &&
               msg.TryGetErrorCode(out code, out _);
    }
}

/// <summary>When to send the first punch: <see cref="Delay"/> after the Start request arrived (at
/// <see cref="ReceivedAt"/>, a timestamp of the client's <see cref="TimeProvider"/>), and the round trip the service
/// measured to this node.</summary>
public readonly record struct RendezvousStart(ulong ConnectionId, long ReceivedAt, TimeSpan Delay, TimeSpan RoundTrip)
{
    /// <summary>How long from now until the first punch (zero once that moment has passed), on the same clock that
    /// stamped <see cref="ReceivedAt"/>: <c>await Task.Delay(start.DueIn(time), time)</c>, then punch.</summary>
    public TimeSpan DueIn(TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(time);
        var left = Delay - time.GetElapsedTime(ReceivedAt);
        return left > TimeSpan.Zero ? left : TimeSpan.Zero;
    }

    /// <summary>Reads a Start request. Never throws.</summary>
    public static bool TryRead(ReadOnlySpan<byte> request, long receivedAt, out RendezvousStart start)
    {
        start = default;
        if (!StunMessageReader.TryParse(request, out var msg) || msg.Method != RendezvousMethods.Start ||
            !msg.TryGetUInt64(RendezvousAttributes.ConnectionId, out var cid) ||
            !msg.TryGetUInt32(RendezvousAttributes.StartDelay, out var delay))
        {
            return false;
        }

        msg.TryGetUInt32(RendezvousAttributes.RoundTrip, out var rtt);
        start = new RendezvousStart(cid, receivedAt, TimeSpan.FromMicroseconds(delay), TimeSpan.FromMicroseconds(rtt));
        return true;
    }
}

/// <summary>The fields Offer and Answer requests share, read with every length checked.</summary>
internal readonly ref struct SessionFields
{
    public ulong ConnectionId { get; init; }

    public NodeId From { get; init; }

    public ReadOnlySpan<byte> PublicKey { get; init; }

    public IPEndPoint? EndPoint { get; init; }

    public ReadOnlySpan<byte> Session { get; init; }

    public long Timestamp { get; init; }

    public ReadOnlySpan<byte> Signature { get; init; }

    public static bool Read(StunMessageReader msg, long nowUnixMs, TimeSpan window, out SessionFields fields)
    {
        fields = default;
        if (msg.Class != StunClass.Request ||
            !msg.TryGetUInt64(RendezvousAttributes.ConnectionId, out var cid) ||
            !msg.TryGetNodeId(RendezvousAttributes.NodeId, out var from) ||
            !msg.TryGet(RendezvousAttributes.PublicKey, out var key) || !NodePublicKey.IsWellFormed(key) ||
            NodeId.FromPublicKey(key) != from ||
            !msg.TryGet(RendezvousAttributes.Timestamp, out var ts) || ts.Length != 8 ||
            !msg.TryGet(RendezvousAttributes.Session, out var session) ||
            session.Length > RendezvousLimits.MaxSessionLength ||
            !msg.TryGet(RendezvousAttributes.Signature, out var signature) ||
            signature.Length != NodePublicKey.SignatureLength)
        {
            return false;
        }

        var timestamp = BinaryPrimitives.ReadInt64BigEndian(ts);
        var w = (long)window.TotalMilliseconds;
        if (timestamp < nowUnixMs - w || timestamp > nowUnixMs + w)
        {
            return false;
        }

        fields = new SessionFields
        {
            ConnectionId = cid,
            From = from,
            PublicKey = key,
            EndPoint = msg.TryGetXorAddress(RendezvousAttributes.PeerAddress, out var peer) ? peer.ToEndPoint() : null,
            Session = session,
            Timestamp = timestamp,
            Signature = signature,
        };
        return true;
    }
}
