using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace NatKit.Net;

/// <summary>
/// The one TLS set-up of NatKit's servers and clients (STUN, TURN, the peer network's pinned TLS, the tunnel's
/// certificate): loading a certificate with its key, with one clear sentence when it cannot be, and the
/// <see cref="SslServerAuthenticationOptions"/> / <see cref="SslClientAuthenticationOptions"/> every caller starts
/// from. The protocols argument is each caller's policy: <see cref="SslProtocols.None"/> lets the system
/// choose (TLS 1.2 and 1.3 on current systems), the peer network asks for 1.3 only.
/// </summary>
public static class TlsSetup
{
    /// <summary>
    /// A certificate and its private key from files: a PKCS#12 (.pfx) file without a password, or a PEM
    /// certificate with its key in <paramref name="keyPath"/> or in the same file. The result can serve TLS on
    /// every platform (a PEM key is re-imported through PKCS#12, which Linux and Windows both accept).
    /// </summary>
    /// <exception cref="ArgumentException">A missing file, a PEM certificate without a key, a key given for a
    /// PKCS#12 file, or a file that cannot be read as what it claims; the message is one sentence that names the
    /// file and what to give instead (<see cref="ArgumentException.ParamName"/> says which argument).</exception>
    public static X509Certificate2 LoadCertificate(string certificatePath, string? keyPath = null)
    {
        ArgumentNullException.ThrowIfNull(certificatePath);
        if (!File.Exists(certificatePath))
        {
            throw new ArgumentException($"{certificatePath}: no such file.", nameof(certificatePath));
        }

        if (keyPath is not null && !File.Exists(keyPath))
        {
            throw new ArgumentException($"{keyPath}: no such file.", nameof(keyPath));
        }

        var text = File.ReadAllText(certificatePath);
        var pem = text.Contains("-----BEGIN ", StringComparison.Ordinal);
        if (pem && keyPath is null && !text.Contains("PRIVATE KEY-----", StringComparison.Ordinal))
        {
            throw new ArgumentException(
                $"{certificatePath}: a PEM certificate needs its private key; give the key file too.", nameof(keyPath));
        }

        if (!pem && keyPath is not null)
        {
            throw new ArgumentException(
                $"{keyPath}: a key file is only for a PEM certificate, and {certificatePath} is not PEM (a PKCS#12 file holds its own key).",
                nameof(keyPath));
        }

        try
        {
            if (!pem)
            {
                return X509CertificateLoader.LoadPkcs12FromFile(certificatePath, null);
            }

            using var fromPem = X509Certificate2.CreateFromPemFile(certificatePath, keyPath);
            return X509CertificateLoader.LoadPkcs12(fromPem.Export(X509ContentType.Pfx), null);
        }
        catch (CryptographicException e)
        {
            var what = pem
                ? $"as a PEM certificate with the key in {keyPath ?? certificatePath}"
                : "as a PKCS#12 (.pfx) file without a password";
            throw new ArgumentException(
                $"{certificatePath}: cannot be read {what} ({e.Message.TrimEnd('.')}); give a PKCS#12 file, or a PEM certificate with its key.",
                nameof(certificatePath), e);
        }
    }

    /// <summary>Options for a server presenting <paramref name="certificate"/>; no client certificate asked for
    /// unless the caller sets it.</summary>
    public static SslServerAuthenticationOptions ServerOptions(X509Certificate2 certificate,
        SslProtocols protocols = SslProtocols.None)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        return new SslServerAuthenticationOptions
        {
            ServerCertificate = certificate,
            EnabledSslProtocols = protocols,
        };
    }

    /// <summary>Options for a client of <paramref name="targetHost"/> (the name in SNI and, without
    /// <paramref name="validate"/>, the name the server's certificate must carry).</summary>
    public static SslClientAuthenticationOptions ClientOptions(string targetHost,
        RemoteCertificateValidationCallback? validate = null, SslProtocols protocols = SslProtocols.None)
    {
        ArgumentNullException.ThrowIfNull(targetHost);
        return new SslClientAuthenticationOptions
        {
            TargetHost = targetHost,
            RemoteCertificateValidationCallback = validate,
            EnabledSslProtocols = protocols,
        };
    }
}
