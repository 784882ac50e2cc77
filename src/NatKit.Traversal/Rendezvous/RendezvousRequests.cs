using System.Buffers.Binary;
using System.Text;
using NatKit.Stun;
using NatKit.Traversal.Identity;

namespace NatKit.Traversal.Rendezvous;

/// <summary>
/// Builds the requests a node sends to the service, signed where the protocol says so. Every builder writes one
/// complete message into the buffer and returns its length; a NONCE is added when one is given.
/// </summary>
public static class RendezvousRequests
{
    /// <summary>Register (lifetime 0: deregister). The signature covers the timestamp, the lifetime and the
    /// candidates in order.</summary>
    public static int Register(Span<byte> buffer, StunTransactionId id, NodeIdentity identity,
        IReadOnlyList<string> candidates, long timestamp, uint lifetime, ReadOnlySpan<byte> nonce)
    {
        ArgumentNullException.ThrowIfNull(identity);
        ArgumentNullException.ThrowIfNull(candidates);
        var encoded = new byte[candidates.Count][];
        for (var i = 0; i < candidates.Count; i++)
        {
            encoded[i] = Encoding.UTF8.GetBytes(candidates[i]);
        }

        Span<byte> payload = stackalloc byte[RendezvousSigning.MaxPayload];
        var n = RendezvousSigning.Register(payload, timestamp, lifetime, default, false, encoded);
        if (n < 0)
        {
            throw new ArgumentException("the candidates are too long for one registration", nameof(candidates));
        }

        var w = Start(buffer, RendezvousMethods.Register, id, nonce);
        w.AddNodeId(RendezvousAttributes.NodeId, identity.Id);
        w.Add(RendezvousAttributes.PublicKey, identity.PublicKey);
        foreach (var c in encoded)
        {
            w.Add(RendezvousAttributes.Candidate, c);
        }

        AddTimestamp(ref w, timestamp);
        w.AddUInt32(RendezvousAttributes.Lifetime, lifetime);
        identity.Sign(payload[..n], w.Reserve(RendezvousAttributes.Signature, NodePublicKey.SignatureLength));
        return w.Length;
    }

    /// <summary>Lookup of <paramref name="target"/>.</summary>
    public static int Lookup(Span<byte> buffer, StunTransactionId id, NodeId target, ReadOnlySpan<byte> nonce)
    {
        var w = Start(buffer, RendezvousMethods.Lookup, id, nonce);
        w.AddNodeId(RendezvousAttributes.Target, target);
        return w.Length;
    }

    /// <summary>Connect to <paramref name="target"/> with an offer, signed over target, timestamp and offer.</summary>
    public static int Connect(Span<byte> buffer, StunTransactionId id, NodeIdentity identity, NodeId target,
        ReadOnlySpan<byte> offer, long timestamp, ReadOnlySpan<byte> nonce)
    {
        ArgumentNullException.ThrowIfNull(identity);
        Span<byte> payload = stackalloc byte[RendezvousSigning.MaxPayload];
        var n = RendezvousSigning.Offer(payload, target, timestamp, offer);
        var w = Start(buffer, RendezvousMethods.Connect, id, nonce);
        w.AddNodeId(RendezvousAttributes.NodeId, identity.Id);
        w.AddNodeId(RendezvousAttributes.Target, target);
        AddTimestamp(ref w, timestamp);
        w.Add(RendezvousAttributes.Session, offer);
        identity.Sign(payload[..n], w.Reserve(RendezvousAttributes.Signature, NodePublicKey.SignatureLength));
        return w.Length;
    }

    /// <summary>Answer the offer of <paramref name="initiator"/> in connection <paramref name="connectionId"/>,
    /// signed over initiator, connection id, timestamp and answer.</summary>
    public static int Answer(Span<byte> buffer, StunTransactionId id, NodeIdentity identity, NodeId initiator,
        ulong connectionId, ReadOnlySpan<byte> answer, long timestamp, ReadOnlySpan<byte> nonce)
    {
        ArgumentNullException.ThrowIfNull(identity);
        Span<byte> payload = stackalloc byte[RendezvousSigning.MaxPayload];
        var n = RendezvousSigning.Answer(payload, initiator, connectionId, timestamp, answer);
        var w = Start(buffer, RendezvousMethods.Answer, id, nonce);
        w.AddNodeId(RendezvousAttributes.NodeId, identity.Id);
        w.AddUInt64(RendezvousAttributes.ConnectionId, connectionId);
        AddTimestamp(ref w, timestamp);
        w.Add(RendezvousAttributes.Session, answer);
        identity.Sign(payload[..n], w.Reserve(RendezvousAttributes.Signature, NodePublicKey.SignatureLength));
        return w.Length;
    }

    /// <summary>The empty success response a node sends to the service's Offer, Answer and Start requests.</summary>
    public static int Acknowledge(Span<byte> buffer, ushort method, StunTransactionId id)
    {
        var w = new StunMessageWriter(buffer, method, StunClass.SuccessResponse, id);
        return w.Length;
    }

    /// <summary>An error response a node sends to refuse the service's request (a bad offer).</summary>
    public static int Refuse(Span<byte> buffer, ushort method, StunTransactionId id, int code)
    {
        var w = new StunMessageWriter(buffer, method, StunClass.ErrorResponse, id);
        w.AddErrorCode(code, RendezvousErrors.Reason(code));
        return w.Length;
    }

    private static StunMessageWriter Start(Span<byte> buffer, ushort method, StunTransactionId id,
        ReadOnlySpan<byte> nonce)
    {
        var w = new StunMessageWriter(buffer, method, StunClass.Request, id);
        if (!nonce.IsEmpty)
        {
            w.Add(StunAttributeType.Nonce, nonce);
        }

        return w;
    }

    private static void AddTimestamp(ref StunMessageWriter w, long timestamp) =>
        BinaryPrimitives.WriteInt64BigEndian(w.Reserve(RendezvousAttributes.Timestamp, 8), timestamp);
}
