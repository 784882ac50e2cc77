using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using NatKit.Net;
using NatKit.Stun.Client;
using NatKit.Stun.Discovery;
using NatKit.Stun.Server;

namespace NatKit.Stun.Tests.Shared;

/// <summary>Where a STUN contract test runs: the client's and the server's network, the client's address, and the
/// server's primary and alternate addresses (no NAT between them, so a mapped address is the socket's own).</summary>
public sealed record StunNetworks(INetwork Client, IPAddress ClientAddress, INetwork Server, IPAddress Primary,
    IPAddress Alternate);

/// <summary>
/// The STUN server's and client's conformance suite, written once (docs/testing.md, "One suite, two networks") and
/// run on <see cref="SystemNetwork"/> over loopback (<see cref="StunServerOnLoopback"/>: UDP is served by the
/// server's blocking threads there) and in the in-memory lab in virtual time (<see cref="StunServerInTheLab"/>: the
/// asynchronous receive loops, the lab's small TCP). Only the server's public API is used.
/// </summary>
public abstract class StunServerContract
{
    /// <summary>Runs <paramref name="body"/> with the networks (on the lab's loop, in virtual time, for the lab).</summary>
    protected abstract void Run(Func<StunNetworks, Task> body);

    protected static readonly StunClientOptions Fast = new() { InitialRto = TimeSpan.FromMilliseconds(100), RequestCount = 4 };

    protected static StunServerOptions Options(StunNetworks n) => new()
    {
        Primary = new IPEndPoint(n.Primary, 0),
        RateLimitPerSecond = 0,
    };

    private static NatDiscoveryOptions Discovery(StunNetworks n) => new()
    {
        Client = new StunClientOptions { InitialRto = TimeSpan.FromMilliseconds(100), RequestCount = 3 },
        LocalAddress = n.ClientAddress,
    };

    [Fact]
    public void Udp_Binding_ReturnsOurSourceEndpoint() => Run(async n =>
    {
        await using var server = await StunServer.StartAsync(n.Server, Options(n));
        await using var socket = await n.Client.BindUdpAsync(new IPEndPoint(n.ClientAddress, 0));
        var client = new StunClient(n.Client, Fast);
        var response = await client.BindingAsync(socket, server.UdpEndPoints[0]);
        Assert.NotNull(response);
        Assert.True(response.IsSuccess);
        Assert.Equal(socket.LocalEndPoint, response.MappedAddress);
    });

    [Fact]
    public void Rfc8489_S6_2_2_Tcp_Binding_Works_WithFraming() => Run(async n =>
    {
        await using var server = await StunServer.StartAsync(n.Server, Options(n));
        var client = new StunClient(n.Client, Fast);
        await using var connection = await n.Client.ConnectTcpAsync(server.TcpEndPoint!);
        for (var i = 0; i < 3; i++)
        {
            var response = await client.BindingStreamAsync(connection.Stream, connection.RemoteEndPoint);
            Assert.NotNull(response);
            Assert.Equal(connection.LocalEndPoint, response.MappedAddress);
        }
    });

    [Fact]
    public void Rfc8489_S6_2_3_Tls_Binding_Works_WithACertificate() => Run(async n =>
    {
        using var rsa = RSA.Create(2048);
        var request = new CertificateRequest("CN=localhost", rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        using var ephemeral = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        using var cert = X509CertificateLoader.LoadPkcs12(ephemeral.Export(X509ContentType.Pfx), null);
        await using var server = await StunServer.StartAsync(n.Server, Options(n) with { TlsCertificate = cert, TlsPort = 0 });
        var client = new StunClient(n.Client, Fast);
        var response = await client.BindingTlsAsync(server.TlsEndPoint!, "localhost", (_, _, _, _) => true);
        Assert.NotNull(response);
        Assert.True(response.IsSuccess);

        // The answer names the TLS connection's own source, as over TCP.
        await using var connection = await n.Client.ConnectTcpAsync(server.TlsEndPoint!);
        await using var tls = new System.Net.Security.SslStream(connection.Stream, leaveInnerStreamOpen: true,
            (_, _, _, _) => true);
        await tls.AuthenticateAsClientAsync("localhost");
        var again = await client.BindingStreamAsync(tls, connection.RemoteEndPoint);
        Assert.Equal(connection.LocalEndPoint, again!.MappedAddress);
    });

    [Fact]
    public void Rfc5780_TwoAddresses_ChangeRequest_ComesFromTheAlternateSocket() => Run(async n =>
    {
        await using var server = await StunServer.StartAsync(n.Server, Options(n) with { AlternateAddress = n.Alternate });
        var eps = server.UdpEndPoints;
        Assert.Equal(4, eps.Count);
        var client = new StunClient(n.Client, Fast);
        await using var socket = await n.Client.BindUdpAsync(new IPEndPoint(n.ClientAddress, 0));
        var plain = await client.BindingAsync(socket, eps[0]);
        Assert.Equal(eps[3], plain!.OtherAddress);
        Assert.Equal(eps[0], plain.ResponseOrigin);
        var both = await client.BindingAsync(socket, eps[0],
            new StunBindingRequest { ChangeAddress = true, ChangePort = true });
        Assert.Equal(eps[3], both!.Source);
        Assert.Equal(eps[3], both.ResponseOrigin);
        var port = await client.BindingAsync(socket, eps[0], new StunBindingRequest { ChangePort = true });
        Assert.Equal(eps[1], port!.Source);
    });

    [Fact]
    public void Credentials_LongTerm_ClientRetriesAfter401_AndSucceeds() => Run(async n =>
    {
        await using var server = await StunServer.StartAsync(n.Server, Options(n) with
        {
            Users = new Dictionary<string, string> { ["carol"] = "hunter2" },
            Realm = "natkit",
        });
        var good = new StunClient(n.Client, Fast with { Username = "carol", Password = "hunter2" });
        var response = await good.BindingAsync(server.UdpEndPoints[0]);
        Assert.True(response!.IsSuccess);
        var bad = new StunClient(n.Client, Fast with { Username = "carol", Password = "nope" });
        Assert.Equal(401, (await bad.BindingAsync(server.UdpEndPoints[0]))!.ErrorCode);
    });

    [Fact]
    public void Udp_BurstsFromManySockets_EveryRequestIsAnsweredToItsOwnSender() => Run(async n =>
    {
        // Requests queue up while the server is busy, so it takes and answers them in batches (its threads on the
        // real network): each reply must still carry its own request's transaction and go back to that sender.
        await using var server = await StunServer.StartAsync(n.Server, Options(n));
        const int perSocket = 6;
        var sockets = new List<IDatagramSocket>();
        try
        {
            var ids = new List<HashSet<StunTransactionId>>();
            for (var s = 0; s < 12; s++)
            {
                sockets.Add(await n.Client.BindUdpAsync(new IPEndPoint(n.ClientAddress, 0)));
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

            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10), n.Client.TimeProvider);
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
    });

    [Fact]
    public void GarbageFlood_DoesNotStopTheServer() => Run(async n =>
    {
        await using var server = await StunServer.StartAsync(n.Server, Options(n));
        await using var socket = await n.Client.BindUdpAsync(new IPEndPoint(n.ClientAddress, 0));
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

        await using var tcp = await n.Client.ConnectTcpAsync(server.TcpEndPoint!);
        await tcp.Stream.WriteAsync(new byte[] { 0x80, 1, 2, 3, 4, 5, 6, 7, 8 });

        var client = new StunClient(n.Client, Fast);
        var response = await client.BindingAsync(server.UdpEndPoints[0]);
        Assert.True(response!.IsSuccess);
        Assert.True((await client.BindingTcpAsync(server.TcpEndPoint!))!.IsSuccess);
    });

    [Fact]
    public void AdvertisedAddresses_BehindOneToOneNat_AreReportedInsteadOfLocalOnes() => Run(async n =>
    {
        await using var server = await StunServer.StartAsync(n.Server, new StunServerOptions
        {
            Primary = new IPEndPoint(n.Primary, 0),
            AlternateAddress = n.Alternate,
            AdvertisedPrimaryAddress = IPAddress.Parse("198.51.100.7"),
            AdvertisedAlternateAddress = IPAddress.Parse("198.51.100.8"),
            EnableTcp = false,
        });
        var r = await new StunClient(n.Client, Fast).BindingAsync(server.UdpEndPoints[0]);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("198.51.100.7"), server.UdpEndPoints[0].Port), r!.ResponseOrigin);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("198.51.100.8"), server.UdpEndPoints[3].Port), r.OtherAddress);
    });

    [Fact]
    public void Rfc8489_S10_TryAlternate_ServerRedirects_ClientFollowsToTheAlternate() => Run(async n =>
    {
        await using var target = await StunServer.StartAsync(n.Server, Options(n) with { EnableTcp = false });
        await using var draining = await StunServer.StartAsync(n.Server, Options(n) with
        {
            EnableTcp = false,
            RedirectTo = target.UdpEndPoints[0],
            RedirectDomain = "stun.example.org",
        });
        var client = new StunClient(n.Client, Fast);
        var response = await client.BindingAsync(draining.UdpEndPoints[0]);
        Assert.NotNull(response);
        Assert.True(response.IsSuccess);
        Assert.Equal(target.UdpEndPoints[0], response.Source);

        await using var socket = await n.Client.BindUdpAsync(new IPEndPoint(n.ClientAddress, 0));
        var raw = await client.TransactAsync(socket, draining.UdpEndPoints[0],
            new StunMessage(StunMethods.Binding, StunClass.Request, new StunTransactionId(1, 2), []).ToArray(),
            new StunTransactionId(1, 2));
        Assert.Equal(StunErrorCode.TryAlternate, raw!.ErrorCode);
        Assert.Equal("stun.example.org", raw.GetString(StunAttributeType.AlternateDomain));
    });

    [Fact]
    public void LoadGenerator_StopsAtMaxRequests_AndCountsEveryAnswer()
    {
        NatKit.Stun.Load.StunLoadResult? result = null;
        Run(async n =>
        {
            await using var server = await StunServer.StartAsync(n.Server, Options(n) with { EnableTcp = false });
            var load = new NatKit.Stun.Load.StunLoadGenerator(n.Client, server.UdpEndPoints[0],
                new NatKit.Stun.Load.StunLoadOptions { Sockets = 4, MaxRequests = 50, Duration = TimeSpan.FromMinutes(1) });
            result = await load.RunAsync();
        });
        Assert.Equal(50, result!.Requests);
        Assert.Equal(50, result.Responses);
        Assert.Equal(0, result.Lost);
        Assert.True(result.Elapsed < TimeSpan.FromMinutes(1));
    }

    [Fact]
    public void Rfc5780_NoNat_EndpointIndependentFiltering_PortPreserved() => Run(async n =>
    {
        await using var server = await StunServer.StartAsync(n.Server, Options(n) with { AlternateAddress = n.Alternate });
        var result = await new NatBehaviorDiscovery(n.Client, server.UdpEndPoints[0], Discovery(n)).RunAsync();
        Assert.True(result.Reachable);
        Assert.True(result.ServerSupportsRfc5780);
        Assert.Equal(NatMapping.NoNat, result.Mapping);
        Assert.Equal(NatFiltering.EndpointIndependent, result.Filtering);
        Assert.True(result.PortPreserved);
        using var json = System.Text.Json.JsonDocument.Parse(result.ToJson());
        Assert.Equal("no-nat", json.RootElement.GetProperty("mapping").GetString());
        Assert.Equal("endpoint-independent", json.RootElement.GetProperty("filtering").GetString());
    });

    [Fact]
    public void Discovery_ServerWithoutRfc5780_IsReported_NotGuessed() => Run(async n =>
    {
        await using var server = await StunServer.StartAsync(n.Server, Options(n));
        var result = await new NatBehaviorDiscovery(n.Client, server.UdpEndPoints[0], Discovery(n)).RunAsync();
        Assert.True(result.Reachable);
        Assert.False(result.ServerSupportsRfc5780);
        Assert.Equal(NatFiltering.Unknown, result.Filtering);
        Assert.NotEmpty(result.Notes);
    });

    [Fact]
    public void Discovery_NoServer_IsUnreachable() => Run(async n =>
    {
        await using var blackhole = await n.Server.BindUdpAsync(new IPEndPoint(n.Primary, 0));
        var result = await new NatBehaviorDiscovery(n.Client, blackhole.LocalEndPoint, Discovery(n)).RunAsync();
        Assert.False(result.Reachable);
    });
}
