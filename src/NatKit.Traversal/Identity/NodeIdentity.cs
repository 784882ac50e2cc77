using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace NatKit.Traversal.Identity;

/// <summary>
/// A node's key pair: ECDSA over P-256 with SHA-256 (.NET has no Ed25519), its <see cref="NodeId"/>, signatures in
/// the fixed 64-byte IEEE P1363 form, the PEM file it lives in (PKCS#8, owner-only permissions) and a self-signed
/// certificate for TLS 1.3 between pinned node ids (<see cref="NodeTls"/>).
/// </summary>
public sealed class NodeIdentity : IDisposable
{
    private readonly ECDsa _key;

    private NodeIdentity(ECDsa key)
    {
        _key = key;
        PublicKey = key.ExportSubjectPublicKeyInfo();
        Id = NodeId.FromPublicKey(PublicKey);
    }

    public NodeId Id { get; }

    /// <summary>The public key as SubjectPublicKeyInfo DER (<see cref="NodePublicKey.EncodedLength"/> bytes).</summary>
    public byte[] PublicKey { get; }

    /// <summary>A new random key pair.</summary>
    public static NodeIdentity Create() => new(ECDsa.Create(ECCurve.NamedCurves.nistP256));

    /// <summary>A key pair from a PEM "PRIVATE KEY" (PKCS#8) or "EC PRIVATE KEY" block.</summary>
    /// <exception cref="FormatException">The text holds no P-256 private key.</exception>
    public static NodeIdentity FromPem(ReadOnlySpan<char> pem)
    {
        var key = ECDsa.Create();
        try
        {
            key.ImportFromPem(pem);
            if (key.KeySize != 256 || key.ExportParameters(false).Curve.Oid.Value != NodePublicKey.P256Oid)
            {
                throw new FormatException($"the key is not on curve P-256 (it has {key.KeySize} bits)");
            }

            return new NodeIdentity(key);
        }
        catch (Exception e) when (e is ArgumentException or CryptographicException)
        {
            key.Dispose();
            throw new FormatException("no P-256 private key in the PEM text: " + e.Message, e);
        }
        catch
        {
            key.Dispose();
            throw;
        }
    }

    /// <summary>The private key as PEM ("PRIVATE KEY", PKCS#8). Keep it secret.</summary>
    public string ExportPem() => _key.ExportPkcs8PrivateKeyPem();

    /// <summary>
    /// Loads a key file written by <see cref="Save"/>. A file that others than its owner may read or write (any
    /// group or other permission bit) is refused, as ssh refuses such keys.
    /// </summary>
    /// <exception cref="IOException">No such file, or its permissions are too loose (the message says how to fix
    /// it).</exception>
    /// <exception cref="FormatException">The file holds no P-256 private key.</exception>
    public static NodeIdentity Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"key file {path} does not exist", path);
        }

        if (!OperatingSystem.IsWindows())
        {
            var mode = File.GetUnixFileMode(path);
            var loose = mode & (UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute |
                                UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute);
            if (loose != 0)
            {
                throw new IOException(
                    $"key file {path} is accessible by others (mode {Convert.ToString((int)mode, 8)}); " +
                    $"run chmod 600 {path}");
            }
        }

        try
        {
            return FromPem(File.ReadAllText(path));
        }
        catch (FormatException e)
        {
            throw new FormatException($"key file {path}: {e.Message}", e);
        }
    }

    /// <summary>
    /// Writes the key as PEM to <paramref name="path"/>, readable and writable by its owner only (0600), creating
    /// the directory (0700) if it is missing. The file is written under a temporary name and renamed, so a reader
    /// never sees half a key. An existing file is kept unless <paramref name="overwrite"/>: losing a key loses an
    /// identity.
    /// </summary>
    /// <exception cref="IOException">The file exists (without <paramref name="overwrite"/>) or cannot be written.</exception>
    public void Save(string path, bool overwrite = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var full = Path.GetFullPath(path);
        if (!overwrite && File.Exists(full))
        {
            throw new IOException($"key file {path} exists already; not overwriting it");
        }

        var directory = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(directory))
        {
            if (OperatingSystem.IsWindows())
            {
                Directory.CreateDirectory(directory);
            }
            else
            {
                Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite |
                                                     UnixFileMode.UserExecute);
            }
        }

        var temporary = Path.Combine(directory, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        try
        {
            using (var stream = new FileStream(temporary, options))
            using (var writer = new StreamWriter(stream))
            {
                writer.Write(ExportPem());
                writer.Write('\n');
            }

            File.Move(temporary, full, overwrite);
        }
        finally
        {
            File.Delete(temporary);
        }
    }

    /// <summary>Signs <paramref name="data"/> (SHA-256, IEEE P1363: r then s, 32 bytes each).</summary>
    public void Sign(ReadOnlySpan<byte> data, Span<byte> signature)
    {
        if (signature.Length < NodePublicKey.SignatureLength)
        {
            throw new ArgumentException($"needs {NodePublicKey.SignatureLength} bytes", nameof(signature));
        }

        if (!_key.TrySignData(data, signature, HashAlgorithmName.SHA256,
                DSASignatureFormat.IeeeP1363FixedFieldConcatenation, out var written) ||
            written != NodePublicKey.SignatureLength)
        {
            throw new CryptographicException("ECDSA signing failed");
        }
    }

    /// <summary>Signs <paramref name="data"/> into a new array.</summary>
    public byte[] Sign(ReadOnlySpan<byte> data)
    {
        var signature = new byte[NodePublicKey.SignatureLength];
        Sign(data, signature);
        return signature;
    }

    /// <summary>
    /// A self-signed certificate for this key (subject CN = the node id), for TLS 1.3 between pinned node ids: the
    /// peer checks the key's id, not a chain (<see cref="NodeTls"/>). Valid from an hour before now (clock skew)
    /// for <paramref name="validity"/> (default one year).
    /// </summary>
    public X509Certificate2 CreateCertificate(TimeProvider? time = null, TimeSpan? validity = null)
    {
        var now = (time ?? TimeProvider.System).GetUtcNow();
        var request = new CertificateRequest($"CN={Id}", _key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            [new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], false)); // server and client auth
        return request.CreateSelfSigned(now.AddHours(-1), now + (validity ?? TimeSpan.FromDays(365)));
    }

    public void Dispose() => _key.Dispose();
}
