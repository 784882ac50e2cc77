using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using NatKit.Net;
using NatKit.Stun.Client;
using NatKit.Stun.Server;

namespace NatKit.Stun.Tests;

/// <summary>The server and client on real loopback sockets (ephemeral ports).</summary>
public class StunServerLoopbackTests
{
    private static readonly StunClientOptions Fast = new() { InitialRto = TimeSpan.FromMilliseconds(100), RequestCount = 4 };

    private static StunServerOptions Loopback => new()
    {
        Primary = new IPEndPoint(IPAddress.Loopback, 0),
        RateLimitPerSecond = 0,
    };

    [Fact]
    public async Task Udp_Binding_ReturnsOurSourceEndpoint()
    {
        await using var server = await StunServer.StartAsync(SystemNetwork.Instance, Loopback);
        await using var socket = await SystemNetwork.Instance.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        var client = new StunClient(SystemNetwork.Instance, Fast);
        var response = await client.BindingAsync(socket, server.UdpEndPoints[0]);
        Assert.NotNull(response);
        Assert.True(response.IsSuccess);
        Assert.Equal(socket.LocalEndPoint, response.MappedAddress);
    }

    [Fact]
    public async Task Rfc8489_S6_2_2_Tcp_Binding_Works_WithFraming()
    {
        await using var server = await StunServer.StartAsync(SystemNetwork.Instance, Loopback);
        var client = new StunClient(SystemNetwork.Instance, Fast);
        await using var connection = await SystemNetwork.Instance.ConnectTcpAsync(server.TcpEndPoint!);
        for (var i = 0; i < 3; i++)
        {
            var response = await client.BindingStreamAsync(connection.Stream, connection.RemoteEndPoint);
            Assert.NotNull(response);
            Assert.Equal(connection.LocalEndPoint, response.MappedAddress);
        }
    }

    [Fact]
    public async Task Rfc8489_S6_2_3_Tls_Binding_Works_WithACertificate()
    {
        using var rsa = RSA.Create(2048);
        var request = new CertificateRequest("CN=localhost", rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        using var ephemeral = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        using var cert = X509CertificateLoader.LoadPkcs12(ephemeral.Export(X509ContentType.Pfx), null);
        await using var server = await StunServer.StartAsync(SystemNetwork.Instance,
            Loopback with { TlsCertificate = cert, TlsPort = 0 });
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

    [Fact]
    public async Task Rfc5780_TwoAddresses_ChangeRequest_ComesFromTheAlternateSocket()
    {
        await using var server = await StunServer.StartAsync(SystemNetwork.Instance,
            Loopback with { AlternateAddress = IPAddress.Parse("127.0.0.2") });
        var eps = server.UdpEndPoints;
        Assert.Equal(4, eps.Count);
        var client = new StunClient(SystemNetwork.Instance, Fast);
        await using var socket = await SystemNetwork.Instance.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        var plain = await client.BindingAsync(socket, eps[0]);
        Assert.Equal(eps[3], plain!.OtherAddress);
        Assert.Equal(eps[0], plain.ResponseOrigin);
        var both = await client.BindingAsync(socket, eps[0],
            new StunBindingRequest { ChangeAddress = true, ChangePort = true });
        Assert.Equal(eps[3], both!.Source);
        Assert.Equal(eps[3], both.ResponseOrigin);
        var port = await client.BindingAsync(socket, eps[0], new StunBindingRequest { ChangePort = true });
        Assert.Equal(eps[1], port!.Source);
    }

    [Fact]
    public async Task Credentials_LongTerm_ClientRetriesAfter401_AndSucceeds()
    {
        await using var server = await StunServer.StartAsync(SystemNetwork.Instance, Loopback with
        {
            Users = new Dictionary<string, string> { ["carol"] = "hunter2" },
            Realm = "natkit",
        });
        var good = new StunClient(SystemNetwork.Instance, Fast with { Username = "carol", Password = "hunter2" });
        var response = await good.BindingAsync(server.UdpEndPoints[0]);
        Assert.True(response!.IsSuccess);
        var bad = new StunClient(SystemNetwork.Instance, Fast with { Username = "carol", Password = "nope" });
        Assert.Equal(401, (await bad.BindingAsync(server.UdpEndPoints[0]))!.ErrorCode);
    }

    [Fact]
    public async Task Udp_BurstsFromManySockets_EveryRequestIsAnsweredToItsOwnSender()
    {
        // Requests queue up while the server's thread is busy, so it takes and answers them in batches: each
        // reply must still carry its own request's transaction and go back to that request's sender.
        await using var server = await StunServer.StartAsync(SystemNetwork.Instance, Loopback);
        const int perSocket = 6;
        var sockets = new List<IDatagramSocket>();
        try
        {
            var ids = new List<HashSet<StunTransactionId>>();
            for (var s = 0; s < 12; s++)
            {
                sockets.Add(await SystemNetwork.Instance.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0)));
                ids.Add([]);
            }

            var request = new byte[StunMessageReader.HeaderLength];
            for (var round = 0; round < perSocket; round++)
            {
                for (var s = 0; s < sockets.Count; s++)
                {
                    var id = StunTransactionId.NewRandom();
                    ids[s].Add(id);
                    _ = new StunMessageWriter(request, StunMethods.Binding, StunClass.Request, id);
                    await sockets[s].SendToAsync(request, server.UdpEndPoints[0]);
                }
            }

            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            var buffer = new byte[1500];
            for (var s = 0; s < sockets.Count; s++)
            {
                for (var k = 0; k < perSocket; k++)
                {
                    var got = await sockets[s].ReceiveFromAsync(buffer, cts.Token);
                    Assert.Equal(server.UdpEndPoints[0], got.RemoteEndPoint);
                    Assert.True(StunMessageReader.TryParse(buffer.AsSpan(0, got.Length), out var reply));
                    Assert.True(ids[s].Remove(reply.TransactionId), "a reply for another socket's request");
                    Assert.True(reply.TryGetXorAddress(StunAttributeType.XorMappedAddress, out var mapped));
                    Assert.Equal(sockets[s].LocalEndPoint, mapped.ToEndPoint());
                }

                Assert.Empty(ids[s]);
            }
        }
        finally
        {
            foreach (var s in sockets)
            {
                await s.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task GarbageFlood_DoesNotStopTheServer()
    {
        await using var server = await StunServer.StartAsync(SystemNetwork.Instance, Loopback);
        await using var socket = await SystemNetwork.Instance.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        var random = new Random(42);
        var valid = new StunMessage(StunMethods.Binding, StunClass.Request, StunTransactionId.NewRandom(), []).ToArray();
        for (var i = 0; i < 2000; i++)
        {
            var bytes = i % 2 == 0 ? new byte[random.Next(0, 600)] : (byte[])valid.Clone();
            if (i % 2 == 0)
            {
                random.NextBytes(bytes);
            }
            else
            {
                bytes[random.Next(bytes.Length)] = (byte)random.Next(256);
            }

            await socket.SendToAsync(bytes, server.UdpEndPoints[0]);
        }

        await using var tcp = await SystemNetwork.Instance.ConnectTcpAsync(server.TcpEndPoint!);
        await tcp.Stream.WriteAsync(new byte[] { 0x80, 1, 2, 3, 4, 5, 6, 7, 8 });

        var client = new StunClient(SystemNetwork.Instance, Fast);
        var response = await client.BindingAsync(server.UdpEndPoints[0]);
        Assert.True(response!.IsSuccess);
        Assert.True((await client.BindingTcpAsync(server.TcpEndPoint!))!.IsSuccess);
    }
}

public class StunServerConfigurationTests
{
    [Fact]
    public async Task AdvertisedAddresses_BehindOneToOneNat_AreReportedInsteadOfLocalOnes()
    {
        await using var server = await StunServer.StartAsync(SystemNetwork.Instance, new StunServerOptions
        {
            Primary = new IPEndPoint(IPAddress.Loopback, 0),
            AlternateAddress = IPAddress.Parse("127.0.0.2"),
            AdvertisedPrimaryAddress = IPAddress.Parse("198.51.100.7"),
            AdvertisedAlternateAddress = IPAddress.Parse("198.51.100.8"),
            EnableTcp = false,
        });
        var client = new StunClient(SystemNetwork.Instance,
            new StunClientOptions { InitialRto = TimeSpan.FromMilliseconds(100), RequestCount = 4 });
        var r = await client.BindingAsync(server.UdpEndPoints[0]);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("198.51.100.7"), server.UdpEndPoints[0].Port), r!.ResponseOrigin);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("198.51.100.8"), server.UdpEndPoints[3].Port), r.OtherAddress);
    }

    [Fact]
    public async Task Metrics_UseStableNames_AndCountRequestsAndDrops()
    {
        var seen = new Dictionary<string, long>();
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == StunServerMetrics.MeterName)
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, _, _) =>
        {
            lock (seen)
            {
                seen[instrument.Name] = seen.GetValueOrDefault(instrument.Name) + value;
            }
        });
        listener.Start();
        await using var server = await StunServer.StartAsync(SystemNetwork.Instance, new StunServerOptions
        {
            Primary = new IPEndPoint(IPAddress.Loopback, 0),
            EnableTcp = false,
        });
        // One send and a long wait: a retransmission on a loaded machine (after a 100 ms RTO, say) would be
        // answered too and count twice.
        var client = new StunClient(SystemNetwork.Instance,
            new StunClientOptions { InitialRto = TimeSpan.FromSeconds(30), RequestCount = 1, LastWaitMultiplier = 1 });
        Assert.NotNull(await client.BindingAsync(server.UdpEndPoints[0]));
        Assert.Equal(1, server.Metrics.Responses);
        lock (seen)
        {
            Assert.True(seen.GetValueOrDefault("natkit.stun.server.requests") >= 1);
            Assert.True(seen.GetValueOrDefault("natkit.stun.server.responses") >= 1);
        }
    }

    [Fact]
    public void Options_Validate_NamesTheBadField()
    {
        var e = Assert.Throws<ArgumentException>(() => new StunServerOptions
        {
            AlternateAddress = IPAddress.Loopback,
        }.Validate());
        Assert.Contains("AlternateAddress", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<ArgumentException>(() => new StunServerOptions { Realm = "r" }.Validate());
        Assert.Contains("Realm", e.Message, StringComparison.Ordinal);
    }
}

public class StunRedirectTests
{
    [Fact]
    public async Task Rfc8489_S10_TryAlternate_ServerRedirects_ClientFollowsToTheAlternate()
    {
        await using var target = await StunServer.StartAsync(SystemNetwork.Instance, new StunServerOptions
        {
            Primary = new IPEndPoint(IPAddress.Loopback, 0),
            EnableTcp = false,
        });
        await using var draining = await StunServer.StartAsync(SystemNetwork.Instance, new StunServerOptions
        {
            Primary = new IPEndPoint(IPAddress.Loopback, 0),
            EnableTcp = false,
            RedirectTo = target.UdpEndPoints[0],
            RedirectDomain = "stun.example.org",
        });
        var client = new StunClient(SystemNetwork.Instance,
            new StunClientOptions { InitialRto = TimeSpan.FromMilliseconds(100), RequestCount = 4 });
        var response = await client.BindingAsync(draining.UdpEndPoints[0]);
        Assert.NotNull(response);
        Assert.True(response.IsSuccess);
        Assert.Equal(target.UdpEndPoints[0], response.Source);

        await using var socket = await SystemNetwork.Instance.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        var raw = await client.TransactAsync(socket, draining.UdpEndPoints[0],
            new StunMessage(StunMethods.Binding, StunClass.Request, new StunTransactionId(1, 2), []).ToArray(),
            new StunTransactionId(1, 2));
        Assert.Equal(StunErrorCode.TryAlternate, raw!.ErrorCode);
        Assert.Equal("stun.example.org", raw.GetString(StunAttributeType.AlternateDomain));
    }
}
