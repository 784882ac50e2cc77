using System.Net;
using System.Net.Security;
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

    private static async Task<TurnHarness> StartTlsAsync(X509Certificate2 cert, int maxConnections = 1024) =>
        await TurnHarness.StartAsync(o => o with
        {
            TlsListen = [new IPEndPoint(IPAddress.Loopback, 0)],
            Certificate = cert,
            MaxTcpConnections = maxConnections,
            MaxTcpConnectionsPerAddress = maxConnections,
        });

    [Fact]
    public async Task TlsConnections_CountTowardsTheSameCap()
    {
        using var cert = SelfSigned();
        await using var h = await StartTlsAsync(cert, maxConnections: 1);
        await using var tcp = await RawClient.ConnectTcpAsync(h.Tcp);
        Assert.True(await tcp.BindingAnsweredAsync());
        await using (var tls = await RawClient.ConnectTcpAsync(h.Server.TlsEndPoints[0]))
        {
            Assert.True(await tls.IsClosedByServerAsync());
        }

        Assert.Equal(1, h.Server.Metrics.ConnectionsRejected);
        Assert.True(await tcp.BindingAnsweredAsync());
    }

    [Fact]
    public async Task TlsConnection_ThatNeverHandshakes_OrNeverSpeaksAfter_IsClosedAfterTheWindow()
    {
        using var cert = SelfSigned();
        await using var h = await StartTlsAsync(cert);
        h.Time.ResetArmed();
        await using var silent = await RawClient.ConnectTcpAsync(h.Server.TlsEndPoints[0]);
        await h.Time.TimerArmed.WaitAsync(TimeSpan.FromSeconds(10));
        h.Time.Advance(TimeSpan.FromSeconds(10));
        Assert.True(await silent.IsClosedByServerAsync());

        // A finished TLS handshake does not count as the first message.
        h.Time.ResetArmed();
        await using var conn = await SystemNetwork.Instance.ConnectTcpAsync(h.Server.TlsEndPoints[0]);
        await h.Time.TimerArmed.WaitAsync(TimeSpan.FromSeconds(10));
        await using var ssl = new SslStream(conn.Stream, leaveInnerStreamOpen: true,
            (_, c, _, _) => c is not null && c.GetCertHashString() == cert.GetCertHashString());
        using var cts = TurnHarness.Deadline();
        await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions { TargetHost = "natkit-turn-test" }, cts.Token);
        h.Time.Advance(TimeSpan.FromSeconds(10));
        try
        {
            Assert.Equal(0, await ssl.ReadAsync(new byte[16], cts.Token));
        }
        catch (IOException)
        {
            // a reset is a close too
        }

        Assert.Equal(2, h.Server.Metrics.ConnectionsTimedOut);
    }
}
