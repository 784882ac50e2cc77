using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using FsCheck;
using FsCheck.Fluent;
using NatKit.Traversal.Identity;

namespace NatKit.Traversal.Tests.Identity;

public class NodeIdentityTests
{
    [Fact]
    public void NodeId_IsTheTruncatedSha256OfTheSubjectPublicKeyInfo()
    {
        using var identity = NodeIdentity.Create();
        var expected = SHA256.HashData(identity.PublicKey)[..NodeId.Size];
        var written = new byte[NodeId.Size];
        identity.Id.Write(written);
        Assert.Equal(expected, written);
        Assert.Equal(NodePublicKey.EncodedLength, identity.PublicKey.Length);
        Assert.True(NodePublicKey.IsWellFormed(identity.PublicKey));
    }

    [Fact]
    public void NodeId_PrintsAsLowercaseBase32_AndParsesBackInEitherCase()
    {
        // RFC 4648 section 10 test vector "foobar" -> MZXW6YTBOI, here over 20 bytes of a known pattern.
        var bytes = new byte[NodeId.Size];
        "foobar"u8.CopyTo(bytes);
        Assert.True(NodeId.TryRead(bytes, out var id));
        var text = id.ToString();
        Assert.Equal(NodeId.TextLength, text.Length);
        Assert.StartsWith("mzxw6ytboi", text, StringComparison.Ordinal);
        Assert.Equal(new string('a', 22), text[10..]);
        Assert.True(NodeId.TryParse(text.ToUpperInvariant(), out var back));
        Assert.Equal(id, back);
        Assert.Equal(text[..8], id.ToShortString());
    }

    [Fact]
    public void NodeId_FormatThenParse_IsIdentity()
    {
        Prop.ForAll(Gen.ArrayOf(ArbMap.Default.GeneratorFor<byte>(), NodeId.Size).ToArbitrary(), bytes =>
        {
            NodeId.TryRead(bytes, out var id);
            return NodeId.TryParse(id.ToString(), out var back) && back == id &&
                   back.GetHashCode() == id.GetHashCode();
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(500));
    }

    public static TheoryData<string?> NotIds => new()
    {
        null,
        "",
        "mzxw6ytboi",
        "mzxw6ytboi" + new string('a', 23), // 33 characters
        "mzxw6ytboi" + new string('a', 21) + "1", // '1' is not in the alphabet
        "mzxw6ytboi" + new string('a', 21) + "=",
        "mzxw6ytboi" + new string('a', 21) + "\u00e9",
        "mzxw6ytboi" + new string('a', 21) + " ",
    };

    [Theory]
    [MemberData(nameof(NotIds))]
    public void NodeId_TryParse_RefusesWhatIsNotAnId(string? text)
    {
        Assert.False(NodeId.TryParse(text, out var id));
        Assert.True(id.IsEmpty);
        Assert.Throws<FormatException>(() => NodeId.Parse(text ?? ""));
    }

    [Fact]
    public void NodeId_TryParse_NeverThrowsOnRandomText()
    {
        Prop.ForAll(ArbMap.Default.ArbFor<string>(), s =>
        {
            NodeId.TryParse(s, out _);
            return true;
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(2000));
    }

    [Fact]
    public void Signature_VerifiesWithThePublicKey_AndNotWithAnotherOrOverOtherData()
    {
        using var alice = NodeIdentity.Create();
        using var bob = NodeIdentity.Create();
        var data = "register 1"u8.ToArray();
        var signature = alice.Sign(data);
        Assert.Equal(NodePublicKey.SignatureLength, signature.Length);
        Assert.True(NodePublicKey.Verify(alice.PublicKey, data, signature));
        Assert.False(NodePublicKey.Verify(bob.PublicKey, data, signature));
        Assert.False(NodePublicKey.Verify(alice.PublicKey, "register 2"u8, signature));
        signature[10] ^= 1;
        Assert.False(NodePublicKey.Verify(alice.PublicKey, data, signature));
    }

    [Fact]
    public void Verify_NeverThrowsOnMutatedKeysOrSignatures()
    {
        using var alice = NodeIdentity.Create();
        var data = "x"u8.ToArray();
        var signature = alice.Sign(data);
        var gen = from which in Gen.Choose(0, 1)
                  from pos in Gen.Choose(0, 200)
                  from value in ArbMap.Default.GeneratorFor<byte>()
                  from cut in Gen.Choose(0, 3)
                  select (which, pos, value, cut);
        Prop.ForAll(gen.ToArbitrary(), t =>
        {
            var key = (byte[])alice.PublicKey.Clone();
            var sig = (byte[])signature.Clone();
            var target = t.which == 0 ? key : sig;
            target[t.pos % target.Length] = t.value;
            var changed = !key.AsSpan().SequenceEqual(alice.PublicKey) || !sig.AsSpan().SequenceEqual(signature);
            var ok = NodePublicKey.Verify(key.AsSpan(0, key.Length - t.cut), data, sig.AsSpan(0, sig.Length - t.cut));
            return !ok || (!changed && t.cut == 0);
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(300));
    }

    [Fact]
    public void Verify_RefusesAPointNotOnTheCurve()
    {
        using var alice = NodeIdentity.Create();
        var key = (byte[])alice.PublicKey.Clone();
        key[^1] ^= 0x55; // Y no longer matches X
        Assert.True(NodePublicKey.IsWellFormed(key));
        Assert.False(NodePublicKey.Verify(key, "x"u8, alice.Sign("x"u8)));
    }

    [Fact]
    public void Pem_RoundTrips_KeepingTheId()
    {
        using var alice = NodeIdentity.Create();
        using var back = NodeIdentity.FromPem(alice.ExportPem());
        Assert.Equal(alice.Id, back.Id);
        Assert.True(NodePublicKey.Verify(alice.PublicKey, "y"u8, back.Sign("y"u8)));
    }

    [Theory]
    [InlineData("")]
    [InlineData("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")]
    public void FromPem_RefusesWhatIsNotAKey(string pem)
    {
        Assert.Throws<FormatException>(() => NodeIdentity.FromPem(pem));
    }

    [Fact]
    public void FromPem_RefusesAKeyOnAnotherCurve()
    {
        using var p384 = ECDsa.Create(ECCurve.NamedCurves.nistP384);
        var e = Assert.Throws<FormatException>(() => NodeIdentity.FromPem(p384.ExportPkcs8PrivateKeyPem()));
        Assert.Contains("P-256", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Save_WritesAnOwnerOnlyFile_InADirectoryItCreates_AndLoadReadsItBack()
    {
        var dir = Directory.CreateTempSubdirectory("natkit-key-");
        try
        {
            var path = Path.Combine(dir.FullName, "sub", "node.key");
            using var alice = NodeIdentity.Create();
            alice.Save(path);
            if (!OperatingSystem.IsWindows())
            {
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute,
                    File.GetUnixFileMode(Path.GetDirectoryName(path)!));
            }

            using var back = NodeIdentity.Load(path);
            Assert.Equal(alice.Id, back.Id);
            Assert.Single(Directory.GetFiles(Path.GetDirectoryName(path)!)); // no temporary file left

            // An existing key is never overwritten by accident.
            using var bob = NodeIdentity.Create();
            Assert.Throws<IOException>(() => bob.Save(path));
            using (var still = NodeIdentity.Load(path))
            {
                Assert.Equal(alice.Id, still.Id);
            }

            bob.Save(path, overwrite: true);
            using var replaced = NodeIdentity.Load(path);
            Assert.Equal(bob.Id, replaced.Id);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void Load_RefusesAKeyFileOthersCanRead_WithASentenceThatSaysHowToFixIt()
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }

        var dir = Directory.CreateTempSubdirectory("natkit-key-");
        try
        {
            var path = Path.Combine(dir.FullName, "node.key");
            using var alice = NodeIdentity.Create();
            alice.Save(path);
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead);
            var e = Assert.Throws<IOException>(() => NodeIdentity.Load(path));
            Assert.Contains("chmod 600", e.Message, StringComparison.Ordinal);
            Assert.Contains("640", e.Message, StringComparison.Ordinal);
            Assert.Throws<FileNotFoundException>(() => NodeIdentity.Load(path + ".missing"));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void Certificate_CarriesTheNodeKey()
    {
        using var alice = NodeIdentity.Create();
        using var cert = alice.CreateCertificate();
        Assert.Equal(alice.Id, NodeId.FromCertificate(cert));
        Assert.True(cert.HasPrivateKey);
        Assert.Contains(alice.Id.ToString(), cert.Subject, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Tls13OverLoopback_EachSideChecksThePeersNodeId()
    {
        using var server = NodeIdentity.Create();
        using var client = NodeIdentity.Create();
        using var serverCert = server.CreateCertificate();
        using var clientCert = client.CreateCertificate();
        NodeId? seenByServer = null;
        var (protocol, ok) = await HandshakeAsync(
            NodeTls.ServerOptions(serverCert, id =>
            {
                seenByServer = id;
                return id == client.Id;
            }),
            NodeTls.ClientOptions(clientCert, server.Id));
        Assert.True(ok);
        Assert.Equal(SslProtocols.Tls13, protocol);
        Assert.Equal(client.Id, seenByServer);
    }

    [Fact]
    public async Task Tls13OverLoopback_AServerWithAnotherKeyIsRefused()
    {
        using var server = NodeIdentity.Create();
        using var impostor = NodeIdentity.Create();
        using var client = NodeIdentity.Create();
        using var impostorCert = impostor.CreateCertificate();
        using var clientCert = client.CreateCertificate();
        var (_, ok) = await HandshakeAsync(NodeTls.ServerOptions(impostorCert, _ => true),
            NodeTls.ClientOptions(clientCert, server.Id));
        Assert.False(ok);
    }

    [Fact]
    public async Task Tls13OverLoopback_AClientTheServerDoesNotKnowIsRefused()
    {
        using var server = NodeIdentity.Create();
        using var stranger = NodeIdentity.Create();
        using var serverCert = server.CreateCertificate();
        using var strangerCert = stranger.CreateCertificate();
        var known = NodeIdentity.Create();
        var (_, ok) = await HandshakeAsync(NodeTls.ServerOptions(serverCert, id => id == known.Id),
            NodeTls.ClientOptions(strangerCert, server.Id));
        known.Dispose();
        Assert.False(ok);
    }

    /// <summary>A handshake over a real loopback TCP connection; true when both sides completed it.</summary>
    private static async Task<(SslProtocols Protocol, bool Ok)> HandshakeAsync(SslServerAuthenticationOptions serverOptions,
        SslClientAuthenticationOptions clientOptions)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var accept = listener.AcceptTcpClientAsync(cts.Token).AsTask();
        using var tcpClient = new TcpClient();
        await tcpClient.ConnectAsync((IPEndPoint)listener.LocalEndpoint, cts.Token);
        using var accepted = await accept;
        await using var serverStream = new SslStream(accepted.GetStream());
        await using var clientStream = new SslStream(tcpClient.GetStream());
        var serverSide = Try(serverStream.AuthenticateAsServerAsync(serverOptions, cts.Token), serverStream);
        var clientSide = Try(clientStream.AuthenticateAsClientAsync(clientOptions, cts.Token), clientStream);
        var serverOk = await serverSide;
        var clientOk = await clientSide;
        if (serverOk && clientOk)
        {
            // A byte each way, so a TLS 1.3 client certificate refused after the client's Finished shows here.
            await clientStream.WriteAsync(new byte[] { 1 }, cts.Token);
            await clientStream.FlushAsync(cts.Token);
            var buffer = new byte[1];
            var read = await serverStream.ReadAsync(buffer, cts.Token);
            return (clientStream.SslProtocol, read == 1 && buffer[0] == 1);
        }

        return (default, false);
    }

    private static async Task<bool> Try(Task handshake, SslStream stream)
    {
        try
        {
            await handshake;
            return true;
        }
        catch (Exception e) when (e is AuthenticationException or IOException)
        {
            stream.Close(); // wakes the other side, which may wait for a message that will not come
            return false;
        }
    }
}
