using System.Buffers.Binary;
using NatKit.Stun;
using NatKit.Traversal.Identity;

namespace NatKit.Traversal.Rendezvous;

/// <summary>
/// The rendezvous protocol's vocabulary (docs/rendezvous.md): STUN methods and comprehension-optional attributes of
/// NatKit's own, carried in RFC 8489 framing so that rendezvous shares the node's one UDP socket with STUN, ICE checks
/// and uTP, and its responses go through the socket's shared STUN transaction table.
/// </summary>
internal static class RendezvousMethods
{
    /// <summary>Node to service: record my node id, key, candidates; signed, with a fresh timestamp.</summary>
    public const ushort Register = 0xA01;

    /// <summary>Node to service: the registration of a node id.</summary>
    public const ushort Lookup = 0xA02;

    /// <summary>Initiator to service: relay my signed offer to a node.</summary>
    public const ushort Connect = 0xA03;

    /// <summary>Service to target: an initiator's signed offer.</summary>
    public const ushort Offer = 0xA04;

    /// <summary>Target to service, then service to initiator: the target's signed answer.</summary>
    public const ushort Answer = 0xA05;

    /// <summary>Service to both sides: start punching after START-DELAY.</summary>
    public const ushort Start = 0xA06;

    /// <summary>Service to service (over the shared registry's bus): a step of a connection between nodes registered
    /// at different instances.</summary>
    public const ushort Relay = 0xA07;

    /// <summary>A registration as the shared registry stores it.</summary>
    public const ushort Record = 0xA08;

    /// <summary>True for the methods a node sends to the service.</summary>
    public static bool IsNodeRequest(ushort method) => method is Register or Lookup or Connect or Answer;

    public static string Name(ushort method) => method switch
    {
        StunMethods.Binding => "Binding",
        Register => "Register",
        Lookup => "Lookup",
        Connect => "Connect",
        Offer => "Offer",
        Answer => "Answer",
        Start => "Start",
        Relay => "Relay",
        Record => "Record",
        _ => $"0x{method:X3}",
    };
}

/// <summary>The attributes (all comprehension-optional, 0xCA01-0xCA0F) and the error codes of the protocol.</summary>
internal static class RendezvousAttributes
{
    /// <summary>20 bytes: the sender's (or the record's) node id.</summary>
    public const ushort NodeId = 0xCA01;

    /// <summary>91 bytes: SubjectPublicKeyInfo DER of a P-256 key.</summary>
    public const ushort PublicKey = 0xCA02;

    /// <summary>UTF-8, opaque to the service (ICE's candidate lines); repeatable.</summary>
    public const ushort Candidate = 0xCA03;

    /// <summary>8 bytes: Unix time in milliseconds at signing; per node and kind strictly increasing (the sequence).</summary>
    public const ushort Timestamp = 0xCA04;

    /// <summary>4 bytes: seconds a registration lives (asked for in Register, granted in its response).</summary>
    public const ushort Lifetime = 0xCA05;

    /// <summary>64 bytes: ECDSA P-256/SHA-256 signature (IEEE P1363) over the kind's signed fields.</summary>
    public const ushort Signature = 0xCA06;

    /// <summary>20 bytes: the node a Lookup or Connect is about.</summary>
    public const ushort Target = 0xCA07;

    /// <summary>Opaque to the service: an offer or an answer (ICE credentials and candidates).</summary>
    public const ushort Session = 0xCA08;

    /// <summary>8 bytes: the service's id of one connection attempt.</summary>
    public const ushort ConnectionId = 0xCA09;

    /// <summary>4 bytes: microseconds from receiving the Start request to the first punch.</summary>
    public const ushort StartDelay = 0xCA0A;

    /// <summary>XOR-encoded address: where the service sees a node (its server-reflexive address).</summary>
    public const ushort PeerAddress = 0xCA0B;

    /// <summary>UTF-8: a service instance's id on the shared registry's bus.</summary>
    public const ushort Instance = 0xCA0C;

    /// <summary>8 bytes: Unix time in microseconds (service to service: when both sides start).</summary>
    public const ushort StartAt = 0xCA0D;

    /// <summary>4 bytes: a round-trip time in microseconds the service measured.</summary>
    public const ushort RoundTrip = 0xCA0E;

    /// <summary>What a Relay message carries (<see cref="RelayKind"/>).</summary>
    public const ushort RelayKind = 0xCA0F;

    /// <summary>The attributes a rendezvous message may carry besides STUN's own.</summary>
    public static StunAttributeRegistry Registry { get; } = StunAttributeRegistry.Stun.With(NodeId, PublicKey,
        Candidate, Timestamp, Lifetime, Signature, Target, Session, ConnectionId, StartDelay, PeerAddress, Instance,
        StartAt, RoundTrip, RelayKind);
}

/// <summary>Error codes of the protocol (ERROR-CODE, RFC 8489 section 14.8). 400, 401, 403, 438, 486 and 508 mean
/// what STUN and TURN say; 404, 406 and 409 are the protocol's own.</summary>
public static class RendezvousErrors
{
    /// <summary>A request without a valid NONCE: retry with the NONCE in the error.</summary>
    public const int Unauthenticated = StunErrorCode.Unauthenticated;

    /// <summary>The NONCE expired: retry with the new one in the error.</summary>
    public const int StaleNonce = StunErrorCode.StaleNonce;

    /// <summary>Missing or malformed attributes; a key that does not hash to NODE-ID.</summary>
    public const int BadRequest = StunErrorCode.BadRequest;

    /// <summary>The signature does not verify, or the sender is not registered (from this address).</summary>
    public const int Forbidden = StunErrorCode.Forbidden;

    /// <summary>No registration for the node, or no connection with the id.</summary>
    public const int UnknownNode = 404;

    /// <summary>The TIMESTAMP is outside the service's window around its own clock.</summary>
    public const int StaleTimestamp = 406;

    /// <summary>The TIMESTAMP is not newer than the last one accepted for the node (a replay).</summary>
    public const int Replayed = 409;

    /// <summary>The source address has as many registrations (or pending connections) as it may.</summary>
    public const int QuotaReached = StunErrorCode.AllocationQuotaReached;

    /// <summary>The service is full (registrations or pending connections).</summary>
    public const int InsufficientCapacity = StunErrorCode.InsufficientCapacity;

    /// <summary>The target declined the offer or did not answer it.</summary>
    public const int NoAnswer = 480;

    public static string Reason(int code) => code switch
    {
        UnknownNode => "Unknown Node",
        StaleTimestamp => "Stale Timestamp",
        Replayed => "Replayed",
        NoAnswer => "No Answer",
        _ => StunErrorCode.Reason(code),
    };
}

/// <summary>What a Relay message between service instances carries.</summary>
public enum RelayKind : byte
{
    /// <summary>Initiator's instance to target's: deliver this offer.</summary>
    Offer = 1,

    /// <summary>Target's instance to initiator's: the target's answer and its round-trip time.</summary>
    Answer = 2,

    /// <summary>Initiator's instance to target's: start at START-AT.</summary>
    Start = 3,

    /// <summary>Either way: the attempt failed (ERROR-CODE says why).</summary>
    Fail = 4,
}

/// <summary>
/// The bytes a signature covers, built the same way by signer and verifier: a context string naming the kind (so a
/// signature of one kind never verifies as another) followed by fixed fields and length-prefixed variable ones.
/// </summary>
internal static class RendezvousSigning
{
    /// <summary>Largest signed payload (the message size bounds it).</summary>
    public const int MaxPayload = RendezvousLimits.MaxMessageLength + 64;

    private static ReadOnlySpan<byte> RegisterContext => "natkit-rendezvous/register/1\0"u8;

    private static ReadOnlySpan<byte> OfferContext => "natkit-rendezvous/offer/1\0"u8;

    private static ReadOnlySpan<byte> AnswerContext => "natkit-rendezvous/answer/1\0"u8;

    /// <summary>Register: timestamp, lifetime, then each candidate as length and bytes. Returns the length written,
    /// or -1 when it does not fit.</summary>
    public static int Register(Span<byte> destination, long timestamp, uint lifetime,
        ReadOnlySpan<byte> message, bool fromMessage, IReadOnlyList<byte[]>? candidates)
    {
        var w = new PayloadWriter(destination);
        w.Bytes(RegisterContext);
        w.UInt64((ulong)timestamp);
        w.UInt32(lifetime);
        if (fromMessage)
        {
            // The candidates in message order, straight from a parsed message.
            if (StunMessageReader.TryParse(message, out var reader))
            {
                foreach (var a in reader.Attributes)
                {
                    if (a.Type == RendezvousAttributes.Candidate)
                    {
                        w.Prefixed(a.Value);
                    }
                }
            }
        }
        else if (candidates is not null)
        {
            foreach (var c in candidates)
            {
                w.Prefixed(c);
            }
        }

        return w.Length;
    }

    /// <summary>An offer: the target, the timestamp, the session.</summary>
    public static int Offer(Span<byte> destination, NodeId target, long timestamp, ReadOnlySpan<byte> session)
    {
        var w = new PayloadWriter(destination);
        w.Bytes(OfferContext);
        w.Id(target);
        w.UInt64((ulong)timestamp);
        w.Prefixed(session);
        return w.Length;
    }

    /// <summary>An answer: the initiator, the connection id, the timestamp, the session.</summary>
    public static int Answer(Span<byte> destination, NodeId initiator, ulong connectionId, long timestamp,
        ReadOnlySpan<byte> session)
    {
        var w = new PayloadWriter(destination);
        w.Bytes(AnswerContext);
        w.Id(initiator);
        w.UInt64(connectionId);
        w.UInt64((ulong)timestamp);
        w.Prefixed(session);
        return w.Length;
    }

    private ref struct PayloadWriter
    {
        private readonly Span<byte> _buffer;
        private int _length;

        public PayloadWriter(Span<byte> buffer)
        {
            _buffer = buffer;
            _length = 0;
        }

        /// <summary>Bytes written, or -1 once something did not fit.</summary>
        public readonly int Length => _length;

        public void Bytes(scoped ReadOnlySpan<byte> bytes)
        {
            if (_length < 0 || bytes.Length > _buffer.Length - _length)
            {
                _length = -1;
                return;
            }

            bytes.CopyTo(_buffer[_length..]);
            _length += bytes.Length;
        }

        public void Prefixed(scoped ReadOnlySpan<byte> bytes)
        {
            Span<byte> n = stackalloc byte[2];
            BinaryPrimitives.WriteUInt16BigEndian(n, (ushort)bytes.Length);
            Bytes(n);
            Bytes(bytes);
        }

        public void UInt64(ulong value)
        {
            Span<byte> b = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64BigEndian(b, value);
            Bytes(b);
        }

        public void UInt32(uint value)
        {
            Span<byte> b = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(b, value);
            Bytes(b);
        }

        public void Id(NodeId id)
        {
            Span<byte> b = stackalloc byte[Identity.NodeId.Size];
            id.Write(b);
            Bytes(b);
        }
    }
}

/// <summary>Size limits of the protocol: every message fits one unfragmented IPv6 datagram.</summary>
public static class RendezvousLimits
{
    /// <summary>Largest message a node sends or the service accepts.</summary>
    public const int MaxMessageLength = 1200;

    /// <summary>Most candidates in one registration.</summary>
    public const int MaxCandidates = 16;

    /// <summary>Largest candidate (bytes of UTF-8).</summary>
    public const int MaxCandidateLength = 256;

    /// <summary>Largest offer or answer (bytes).</summary>
    public const int MaxSessionLength = 800;

    /// <summary>Most bytes all candidates of one registration take, attribute headers and padding included.</summary>
    public const int MaxCandidateBytes = 800;
}
