using System.Buffers.Binary;
using System.Net;
using System.Text;
using NatKit.Stun;

namespace NatKit.Traversal.Ice;

/// <summary>
/// The STUN messages of ICE (RFC 8445 sections 7.1, 7.3 and 11): the Binding request of a check (USERNAME
/// "rfrag:lfrag", PRIORITY, ICE-CONTROLLING/ICE-CONTROLLED with the tie-breaker, USE-CANDIDATE, MESSAGE-INTEGRITY
/// keyed with the peer's password, FINGERPRINT), its success and error responses, and the keepalive indication.
/// </summary>
internal static class IceMessages
{
    /// <summary>Room for the largest request: a 513-byte USERNAME and the fixed attributes.</summary>
    private const int MaxMessage = 640;

    public static byte[] Request(StunTransactionId id, string remoteUfrag, string localUfrag, byte[] remoteKey,
        uint priority, IceRole role, ulong tieBreaker, bool useCandidate)
    {
        Span<byte> buffer = stackalloc byte[MaxMessage];
        var w = new StunMessageWriter(buffer, StunMethods.Binding, StunClass.Request, id);
        Span<char> username = stackalloc char[remoteUfrag.Length + 1 + localUfrag.Length];
        remoteUfrag.CopyTo(username);
        username[remoteUfrag.Length] = ':';
        localUfrag.CopyTo(username[(remoteUfrag.Length + 1)..]);
        w.AddString(StunAttributeType.Username, username);
        w.AddUInt32(StunAttributeType.Priority, priority);
        BinaryPrimitives.WriteUInt64BigEndian(
            w.Reserve(role == IceRole.Controlling ? StunAttributeType.IceControlling : StunAttributeType.IceControlled, 8),
            tieBreaker);
        if (useCandidate)
        {
            w.Reserve(StunAttributeType.UseCandidate, 0);
        }

        w.AddMessageIntegrity(remoteKey);
        w.AddFingerprint();
        return buffer[..w.Length].ToArray();
    }

    public static byte[] Success(StunTransactionId id, IPEndPoint mapped, byte[] localKey)
    {
        Span<byte> buffer = stackalloc byte[128];
        var w = new StunMessageWriter(buffer, StunMethods.Binding, StunClass.SuccessResponse, id);
        w.AddXorAddress(StunAttributeType.XorMappedAddress, StunAddress.FromEndPoint(mapped));
        w.AddMessageIntegrity(localKey);
        w.AddFingerprint();
        return buffer[..w.Length].ToArray();
    }

    /// <summary>An error response; authenticated with <paramref name="localKey"/> unless it is null (400 and 401
    /// go out without MESSAGE-INTEGRITY: RFC 8489 section 9.1.3).</summary>
    public static byte[] Error(StunTransactionId id, int code, byte[]? localKey, ReadOnlySpan<ushort> unknown = default)
    {
        Span<byte> buffer = stackalloc byte[256];
        var w = new StunMessageWriter(buffer, StunMethods.Binding, StunClass.ErrorResponse, id);
        w.AddErrorCode(code);
        if (!unknown.IsEmpty)
        {
            w.AddUnknownAttributes(unknown);
        }

        if (localKey is not null)
        {
            w.AddMessageIntegrity(localKey);
        }

        w.AddFingerprint();
        return buffer[..w.Length].ToArray();
    }

    /// <summary>The keepalive of RFC 8445 section 11: a Binding indication with FINGERPRINT only.</summary>
    public static byte[] Indication(StunTransactionId id)
    {
        Span<byte> buffer = stackalloc byte[32];
        var w = new StunMessageWriter(buffer, StunMethods.Binding, StunClass.Indication, id);
        w.AddFingerprint();
        return buffer[..w.Length].ToArray();
    }

    /// <summary>Splits USERNAME "a:b" (UTF-8 bytes) at its first colon; false when there is none.</summary>
    public static bool SplitUsername(ReadOnlySpan<byte> username, out ReadOnlySpan<byte> first, out ReadOnlySpan<byte> second)
    {
        var colon = username.IndexOf((byte)':');
        if (colon < 0)
        {
            first = second = default;
            return false;
        }

        first = username[..colon];
        second = username[(colon + 1)..];
        return true;
    }

    /// <summary>True when <paramref name="utf8"/> spells <paramref name="text"/> (an ASCII ufrag).</summary>
    public static bool Equal(ReadOnlySpan<byte> utf8, string text)
    {
        if (utf8.Length != text.Length)
        {
            return false;
        }

        for (var i = 0; i < utf8.Length; i++)
        {
            if (utf8[i] != text[i])
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// The first part of a Binding request's USERNAME (the receiver's ufrag), for a driver that runs several agents
    /// on one socket and routes checks by it. False for anything that is not a well-formed Binding request with
    /// a USERNAME containing a colon.
    /// </summary>
    public static bool TryGetRequestUfrag(ReadOnlySpan<byte> datagram, out string ufrag)
    {
        ufrag = string.Empty;
        if (!StunMessageReader.TryParse(datagram, out var msg) || msg.Class != StunClass.Request ||
            msg.Method != StunMethods.Binding || !msg.TryGet(StunAttributeType.Username, out var username) ||
            !SplitUsername(username, out var first, out _) || first.Length is 0 or > 256)
        {
            return false;
        }

        ufrag = Encoding.UTF8.GetString(first);
        return true;
    }
}
