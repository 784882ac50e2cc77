using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using NatKit.Net;
using NatKit.Turn.Client;
using NatKit.Turn.Tests.Support;

namespace NatKit.Turn.Tests.Server;

public class TurnTlsTests
{
    private static X509Certificate2 SelfSigned()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=natkit-turn-test", key, HashAlgorithmName.SHA256);
        using var cert = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        return X509CertificateLoader.LoadPkcs12(cert.Export(X509ContentType.Pfx), null);
    }

    [Fact]
    public async Task Rfc8656_TlsTransport_AllocatesAndRelaysChannelData()
    {
        using var cert = SelfSigned();
        await using var h = await TurnHarness.StartAsync(o => o with
        {
            TlsListen = [new IPEndPoint(IPAddress.Loopback, 0)],
            Certificate = cert,
        });
        var options = new TurnClientOptions(h.Server.TlsEndPoints[0], TurnHarness.User, TurnHarness.Password)
        {
            Transport = TurnTransport.Tls,
            KeepAlive = false,
            TlsHost = "natkit-turn-test",
            CertificateValidation = (_, c, _, _) => c is not null && c.GetCertHashString() == cert.GetCertHashString(),
        };
        var c = await h.ClientAsync(options);
        var peer = await h.PeerAsync();
        await c.BindChannelAsync(peer.LocalEndPoint);
        await c.SendAsync("secret"u8.ToArray(), peer.LocalEndPoint);
        var buffer = new byte[64];
        using var cts = TurnHarness.Deadline();
        var d = await peer.ReceiveFromAsync(buffer, cts.Token);
        Assert.Equal("secret"u8.ToArray(), buffer[..d.Length]);
        await peer.SendToAsync("reply!"u8.ToArray(), c.RelayedEndPoint, cts.Token);
        var r = await c.ReceiveAsync(buffer, cts.Token);
        Assert.Equal("reply!"u8.ToArray(), buffer[..r.Length]);
    }

    [Fact]
    public async Task TlsListener_WithPlainBytes_DropsThatConnectionOnly()
    {
        using var cert = SelfSigned();
        await using var h = await TurnHarness.StartAsync(o => o with
        {
            TlsListen = [new IPEndPoint(IPAddress.Loopback, 0)],
            Certificate = cert,
        });
        await using (var conn = await SystemNetwork.Instance.ConnectTcpAsync(h.Server.TlsEndPoints[0]))
        {
            await conn.Stream.WriteAsync(new byte[64]);
            using var cts = TurnHarness.Deadline();
            Assert.Equal(0, await conn.Stream.ReadAsync(new byte[16], cts.Token));
        }

        Assert.NotEqual(0, (await h.ClientAsync()).RelayedEndPoint.Port);
    }
}
