namespace NatKit.Stun.Server;

/// <summary>What <see cref="StunRequestValidation.Screen"/> makes of a message.</summary>
public enum StunScreen
{
    /// <summary>Well-formed, and its FINGERPRINT (if any) matches: go on.</summary>
    Ok,

    /// <summary>Not a well-formed STUN message: discard silently.</summary>
    Malformed,

    /// <summary>FINGERPRINT present and wrong (RFC 8489 section 7.3): discard silently.</summary>
    BadFingerprint,
}

/// <summary>
/// The checks the STUN server and the TURN server make on every message they receive, one implementation for
/// both, in RFC 8489's order: <see cref="Screen"/> first (parse; a FINGERPRINT that is present and wrong means
/// discard, section 7.3, whatever the method or class); then the server's own authentication checks (section 9,
/// where the method needs them); then <see cref="FindUnknown"/> on every request that got that far, signed or not,
/// Binding included, answered with 420 and UNKNOWN-ATTRIBUTES (section 6.3.1). Nothing here throws or allocates.
/// </summary>
public static class StunRequestValidation
{
    /// <summary>Step one, before anything else is read: parse, and check FINGERPRINT when present.</summary>
    /// <param name="data">The datagram or stream frame.</param>
    /// <param name="message">The parsed view (meaningful when the answer is <see cref="StunScreen.Ok"/>).</param>
    /// <param name="allowRfc3489">Accept RFC 3489 messages (no magic cookie, hence no FINGERPRINT).</param>
    public static StunScreen Screen(ReadOnlySpan<byte> data, out StunMessageReader message, bool allowRfc3489 = false)
    {
        if (StunMessageReader.Parse(data, out message, allowRfc3489) != StunParseStatus.Ok)
        {
            return StunScreen.Malformed;
        }

        return message.HasFingerprint && !message.IsFingerprintValid() ? StunScreen.BadFingerprint : StunScreen.Ok;
    }

    /// <summary>Step three, after the authentication checks: the comprehension-required attributes
    /// <paramref name="registry"/> does not know, for a 420 with UNKNOWN-ATTRIBUTES. Returns how many were written
    /// to <paramref name="unknown"/> (0: none, go on).</summary>
    public static int FindUnknown(in StunMessageReader message, StunAttributeRegistry registry, Span<ushort> unknown) =>
        message.FindUnknownComprehensionRequired(registry, unknown);
}
