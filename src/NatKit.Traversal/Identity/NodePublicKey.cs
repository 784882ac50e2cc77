using System.Security.Cryptography;

namespace NatKit.Traversal.Identity;

/// <summary>
/// Checks signatures made by a <see cref="NodeIdentity"/>, given only its public key as it travels on the wire: the
/// 91-byte SubjectPublicKeyInfo DER of a P-256 key with an uncompressed point. Only that one encoding is accepted,
/// so one key has exactly one <see cref="NodeId"/> (a compressed point or a different DER form of the same key would
/// hash to another id). Nothing here throws on untrusted bytes.
/// </summary>
public static class NodePublicKey
{
    /// <summary>Bytes of a public key on the wire.</summary>
    public const int EncodedLength = 91;

    /// <summary>Bytes of a signature on the wire (IEEE P1363: r then s).</summary>
    public const int SignatureLength = 64;

    /// <summary>The object identifier of curve P-256 (secp256r1).</summary>
    public const string P256Oid = "1.2.840.10045.3.1.7";

    // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) 0x04 || X || Y }.
    private static ReadOnlySpan<byte> Prefix =>
    [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01, 0x06, 0x08, 0x2A, 0x86, 0x48,
        0xCE, 0x3D, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
    ];

    /// <summary>True when <paramref name="subjectPublicKeyInfo"/> has the one accepted shape (the cheap test that
    /// comes before any cryptography: it does not check that the point is on the curve).</summary>
    public static bool IsWellFormed(ReadOnlySpan<byte> subjectPublicKeyInfo) =>
        subjectPublicKeyInfo.Length == EncodedLength && subjectPublicKeyInfo.StartsWith(Prefix);

    /// <summary>
    /// True when <paramref name="signature"/> is a valid signature of <paramref name="data"/> by the key
    /// <paramref name="subjectPublicKeyInfo"/>. False for a malformed key, a point not on the curve, a signature
    /// of the wrong length, or a wrong signature.
    /// </summary>
    public static bool Verify(ReadOnlySpan<byte> subjectPublicKeyInfo, ReadOnlySpan<byte> data,
        ReadOnlySpan<byte> signature)
    {
        if (!IsWellFormed(subjectPublicKeyInfo) || signature.Length != SignatureLength)
        {
            return false;
        }

        // The X and Y coordinates straight from the fixed layout: ImportParameters checks the point is on the curve.
        var parameters = new ECParameters
        {
            Curve = ECCurve.NamedCurves.nistP256,
            Q = new ECPoint
            {
                X = subjectPublicKeyInfo.Slice(Prefix.Length, 32).ToArray(),
                Y = subjectPublicKeyInfo.Slice(Prefix.Length + 32, 32).ToArray(),
            },
        };
        try
        {
            using var key = ECDsa.Create(parameters);
            return key.VerifyData(data, signature, HashAlgorithmName.SHA256,
                DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
        }
        catch (CryptographicException)
        {
            return false;
        }
    }
}
