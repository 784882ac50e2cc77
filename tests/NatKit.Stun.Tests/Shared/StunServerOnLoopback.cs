using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using NatKit.Net;
using NatKit.Stun.Client;
using NatKit.Stun.Server;

namespace NatKit.Stun.Tests.Shared;

/// <summary>The STUN contract on the real network: <see cref="SystemNetwork"/> on loopback, ephemeral ports, the
/// alternate address 127.0.0.2. Its sockets offer blocking I/O, so UDP is served by the server's threads.</summary>
public sealed class StunServerOnLoopback : StunServerContract
{
    private static readonly StunNetworks Loopback = new(SystemNetwork.Instance, IPAddress.Loopback,
        SystemNetwork.Instance, IPAddress.Loopback, IPAddress.Parse("127.0.0.2"));

    protected override void Run(Func<StunNetworks, Task> body) =>
        // A safety net so a broken server fails instead of hanging (never a wait for success).
        body(Loopback).WaitAsync(TimeSpan.FromSeconds(60)).GetAwaiter().GetResult();

    /// <summary>Loopback only: the server's TLS accept path hands the lab's stream straight to SslStream, without
    /// the lab's ForForeignAwaiters (docs/lab.md rule 6), so TLS does not run in the lab (docs/testing.md).</summary>
    [Fact]
    public async Task Rfc8489_S6_2_3_Tls_Binding_Works_WithACertificate()
    {
        using var rsa = RSA.Create(2048);
        var request = new CertificateRequest("CN=localhost", rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        using var ephemeral = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        using var cert = X509CertificateLoader.LoadPkcs12(ephemeral.Export(X509ContentType.Pfx), null);
        await using var server = await StunServer.StartAsync(SystemNetwork.Instance,
            Options(Loopback) with { TlsCertificate = cert, TlsPort = 0 });
        var client = new StunClient(SystemNetwork.Instance, Fast);
        var response = await client.BindingTlsAsync(server.TlsEndPoint!, "localhost", (_, _, _, _) => true);
        Assert.NotNull(response);
        Assert.True(response.IsSuccess);

        // The answer names the TLS connection's own source, as over TCP.
        await using var connection = await SystemNetwork.Instance.ConnectTcpAsync(server.TlsEndPoint!);
        await using var tls = new System.Net.Security.SslStream(connection.Stream, leaveInnerStreamOpen: true,
            (_, _, _, _) => true);
        await tls.AuthenticateAsClientAsync("localhost");
        var again = await client.BindingStreamAsync(tls, connection.RemoteEndPoint);
        Assert.Equal(connection.LocalEndPoint, again!.MappedAddress);
    }
}
