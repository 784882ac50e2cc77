using System.Buffers.Binary;
using System.Text;
using NatKit.Stun;
using NatKit.Traversal.Identity;

namespace NatKit.Traversal.Rendezvous;

/// <summary>
/// A node's registration as it travels: in a Lookup response, and in the shared registry (Redis) between service
/// instances. <see cref="Message"/> is a STUN message (method Record) holding the node's signed attributes (NODE-ID,
/// PUBLIC-KEY, CANDIDATEs, TIMESTAMP, LIFETIME, SIGNATURE), PEER-ADDRESS (where the service saw the node) and, in
/// the shared registry, INSTANCE (which instance holds the node's NAT mapping).
/// </summary>
public sealed class RendezvousRecord
{
    private RendezvousRecord(NodeId id, byte[] message, StunAddress reflexive, string? instance)
    {
        Id = id;
        Message = message;
        Reflexive = reflexive;
        Instance = instance;
    }

    public NodeId Id { get; }

    /// <summary>The encoded record.</summary>
    public byte[] Message { get; }

    /// <summary>The node's server-reflexive address as the registering instance saw it.</summary>
    public StunAddress Reflexive { get; }

    /// <summary>The instance that holds the node's registration (null: not said).</summary>
    public string? Instance { get; }

    /// <summary>The record of a registration: the signed attributes of <paramref name="register"/> (a checked
    /// Register request), the source it came from, and optionally the instance.</summary>
    internal static byte[] Encode(StunMessageReader register, StunAddress source, string? instance)
    {
        Span<byte> buffer = stackalloc byte[RendezvousLimits.MaxMessageLength + 128];
        var w = new StunMessageWriter(buffer, RendezvousMethods.Record, StunClass.Indication, default);
        CopySigned(register, ref w);
        w.AddXorAddress(RendezvousAttributes.PeerAddress, source);
        if (instance is not null)
        {
            w.AddString(RendezvousAttributes.Instance, instance);
        }

        return w.Written.ToArray();
    }

    /// <summary>Copies the signed registration attributes from <paramref name="from"/> into <paramref name="to"/>.</summary>
    internal static void CopySigned(StunMessageReader from, ref StunMessageWriter to)
    {
        foreach (var a in from.Attributes)
        {
            switch (a.Type)
            {
                case RendezvousAttributes.NodeId:
                case RendezvousAttributes.PublicKey:
                case RendezvousAttributes.Candidate:
                case RendezvousAttributes.Timestamp:
                case RendezvousAttributes.Lifetime:
                case RendezvousAttributes.Signature:
                    to.Add(a.Type, a.Value);
                    break;
            }
        }
    }

    /// <summary>The same record, said to be held by <paramref name="instance"/>.</summary>
    internal static byte[] WithInstance(ReadOnlySpan<byte> record, string instance)
    {
        if (!StunMessageReader.TryParse(record, out var r))
        {
            throw new ArgumentException("not a record", nameof(record));
        }

        Span<byte> buffer = stackalloc byte[RendezvousLimits.MaxMessageLength + 128];
        var w = new StunMessageWriter(buffer, RendezvousMethods.Record, StunClass.Indication, r.TransactionId);
        foreach (var a in r.Attributes)
        {
            if (a.Type != RendezvousAttributes.Instance)
            {
                w.Add(a.Type, a.Value);
            }
        }

        w.AddString(RendezvousAttributes.Instance, instance);
        return w.Written.ToArray();
    }

    /// <summary>Reads a record from the shared registry: false for anything that is not a well-formed one whose
    /// signature verifies (a store is trusted, but not blindly). Never throws.</summary>
    public static bool TryDecode(ReadOnlySpan<byte> data, out RendezvousRecord record)
    {
        record = null!;
        if (!StunMessageReader.TryParse(data, out var r) || r.Method != RendezvousMethods.Record ||
            SignedRegistration.Read(r, out var signed) != 0 || !signed.Verify(r) ||
            !r.TryGetXorAddress(RendezvousAttributes.PeerAddress, out var reflexive))
        {
            return false;
        }

        string? instance = null;
        if (r.TryGet(RendezvousAttributes.Instance, out var i))
        {
            if (i.Length is 0 or > 128)
            {
                return false;
            }

            instance = Encoding.UTF8.GetString(i);
        }

        record = new RendezvousRecord(signed.Id, data.ToArray(), reflexive, instance);
        return true;
    }
}

/// <summary>
/// The signed fields of a registration, read from a message (a Register request, a Lookup response, a record) with
/// every length checked: a view, nothing is copied.
/// </summary>
internal readonly ref struct SignedRegistration
{
    public NodeId Id { get; init; }

    public ReadOnlySpan<byte> PublicKey { get; init; }

    public long Timestamp { get; init; }

    public uint Lifetime { get; init; }

    public ReadOnlySpan<byte> Signature { get; init; }

    /// <summary>0 with the fields read, or 400 when one is missing or malformed, the key does not hash to the id,
    /// or the candidates break a limit.</summary>
    public static int Read(StunMessageReader msg, out SignedRegistration registration)
    {
        registration = default;
        if (!msg.TryGet(RendezvousAttributes.NodeId, out var idBytes) || !NodeId.TryRead(idBytes, out var id) ||
            !msg.TryGet(RendezvousAttributes.PublicKey, out var key) || !NodePublicKey.IsWellFormed(key) ||
            !msg.TryGet(RendezvousAttributes.Timestamp, out var ts) || ts.Length != 8 ||
            !msg.TryGetUInt32(RendezvousAttributes.Lifetime, out var lifetime) ||
            !msg.TryGet(RendezvousAttributes.Signature, out var signature) ||
            signature.Length != NodePublicKey.SignatureLength)
        {
            return RendezvousErrors.BadRequest;
        }

        int count = 0, bytes = 0;
        foreach (var a in msg.Attributes)
        {
            if (a.Type == RendezvousAttributes.Candidate)
            {
                if (a.Value.Length is 0 or > RendezvousLimits.MaxCandidateLength)
                {
                    return RendezvousErrors.BadRequest;
                }

                count++;
                bytes += StunMessageReader.AttributeHeaderLength + ((a.Value.Length + 3) & ~3);
            }
        }

        if (count > RendezvousLimits.MaxCandidates || bytes > RendezvousLimits.MaxCandidateBytes)
        {
            return RendezvousErrors.BadRequest;
        }

        // Cheap before costly: the id must be the key's hash before anyone checks a signature with that key.
        if (NodeId.FromPublicKey(key) != id)
        {
            return RendezvousErrors.BadRequest;
        }

        registration = new SignedRegistration
        {
            Id = id,
            PublicKey = key,
            Timestamp = BinaryPrimitives.ReadInt64BigEndian(ts),
            Lifetime = lifetime,
            Signature = signature,
        };
        return 0;
    }

    /// <summary>True when the signature covers these fields and the message's candidates.</summary>
    public bool Verify(StunMessageReader msg)
    {
        Span<byte> payload = stackalloc byte[RendezvousSigning.MaxPayload];
        var n = RendezvousSigning.Register(payload, Timestamp, Lifetime, msg.Message, true, null);
        return n > 0 && NodePublicKey.Verify(PublicKey, payload[..n], Signature);
    }
}
