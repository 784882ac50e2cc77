using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using NatKit.Net;

namespace NatKit.Traversal.Identity;

/// <summary>
/// TLS 1.3 between nodes that know each other by <see cref="NodeId"/>: each side presents the self-signed
/// certificate of its <see cref="NodeIdentity"/> and accepts the other's only when the certificate's key hashes to the
/// id it expects. No certificate authority and no name is involved: the TLS handshake proves the peer holds the
/// private key (CertificateVerify), and the pin says which key that must be. Nothing older than TLS 1.3 is offered.
/// </summary>
public static class NodeTls
{
    /// <summary>The name in SNI; the pin, not the name, authenticates.</summary>
    public const string TargetHost = "natkit-node";

    /// <summary>Options for the side that connects, to the node <paramref name="expected"/>.</summary>
    public static SslClientAuthenticationOptions ClientOptions(X509Certificate2 certificate, NodeId expected)
    {
        var options = TlsSetup.ClientOptions(TargetHost, (_, peer, _, _) => IsPinned(peer, expected), SslProtocols.Tls13);
        options.ClientCertificates = [certificate];
        options.CertificateRevocationCheckMode = X509RevocationMode.NoCheck;
        return options;
    }

    /// <summary>Options for the side that accepts: it requires a client certificate and accepts it when
    /// <paramref name="accept"/> says yes to the client's node id (a fixed peer, or a lookup in a list of known
    /// nodes).</summary>
    public static SslServerAuthenticationOptions ServerOptions(X509Certificate2 certificate, Func<NodeId, bool> accept)
    {
        ArgumentNullException.ThrowIfNull(accept);
        var options = TlsSetup.ServerOptions(certificate, SslProtocols.Tls13);
        options.ClientCertificateRequired = true;
        options.RemoteCertificateValidationCallback = (_, peer, _, _) => TryGetNodeId(peer, out var id) && accept(id);
        options.CertificateRevocationCheckMode = X509RevocationMode.NoCheck;
        return options;
    }

    /// <summary>The node id of the key in a certificate a TLS peer presented; false when there is none.</summary>
    public static bool TryGetNodeId(X509Certificate? certificate, out NodeId id)
    {
        id = default;
        if (certificate is null)
        {
            return false;
        }

        if (certificate is X509Certificate2 full)
        {
            id = NodeId.FromCertificate(full);
            return true;
        }

        using var copy = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        id = NodeId.FromCertificate(copy);
        return true;
    }

    /// <summary>True when <paramref name="certificate"/> carries the key of node <paramref name="expected"/>.</summary>
    public static bool IsPinned(X509Certificate? certificate, NodeId expected) =>
        TryGetNodeId(certificate, out var id) && id == expected;
}
