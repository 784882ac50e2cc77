using System.Globalization;
using System.Net;
using NatKit.Net;
using NatKit.Stun.Client;
using NatKit.Stun.Discovery;
using NatKit.Stun.Server;
using NatKit.TestSupport;

namespace NatKit.Interop.Tests;

/// <summary>NatKit's STUN against coturn and Debian's stun client, on loopback.</summary>
public class StunInteropTests
{
    private static readonly TimeSpan PeerTimeout = TimeSpan.FromSeconds(60);

    private static readonly StunClientOptions Fast = new() { InitialRto = TimeSpan.FromMilliseconds(200), RequestCount = 5 };

    private static Task<StunServer> StartNatKitAsync(bool rfc5780) =>
        StunServer.StartAsync(SystemNetwork.Instance, new StunServerOptions
        {
            Primary = new IPEndPoint(IPAddress.Loopback, StunPorts.FreePair()),
            AlternateAddress = rfc5780 ? IPAddress.Parse("127.0.0.2") : null,
            RateLimitPerSecond = 0,
        });

    private static string Port(StunServer s) => s.UdpEndPoints[0].Port.ToString(CultureInfo.InvariantCulture);

    [PeerFact("turnutils_stunclient")]
    public async Task CoturnStunclient_AgainstNatKit_GetsReflexiveAddress()
    {
        await using var server = await StartNatKitAsync(rfc5780: false);
        var (_, output, errors) = await ExternalProcess.RunAsync("turnutils_stunclient",
            ["-p", Port(server), "127.0.0.1"], PeerTimeout);
        Assert.Contains("UDP reflexive addr: 127.0.0.1:", output + errors, StringComparison.Ordinal);
    }

    [PeerFact("turnutils_stunclient")]
    public async Task CoturnStunclient_Rfc5780_AgainstNatKit_SeesOtherAddressAndChangedOrigin()
    {
        await using var server = await StartNatKitAsync(rfc5780: true);
        var (_, output, errors) = await ExternalProcess.RunAsync("turnutils_stunclient",
            ["-f", "-p", Port(server), "127.0.0.1"], PeerTimeout);
        var all = output + errors;
        var alternate = server.UdpEndPoints[3].ToString();
        Assert.Contains("UDP reflexive addr: 127.0.0.1:", all, StringComparison.Ordinal);
        Assert.Contains("Other addr: : " + alternate, all, StringComparison.Ordinal);
        // The CHANGE-REQUEST (address and port) answers come from the alternate socket.
        Assert.Contains("Response origin: : " + alternate, all, StringComparison.Ordinal);
        Assert.Equal(0, server.Metrics.Dropped);
    }

    [PeerFact("stun")]
    public async Task DebianStunClient_Rfc3489_AgainstNatKit_SeesOpenInternet()
    {
        await using var server = await StartNatKitAsync(rfc5780: true);
        var (_, output, errors) = await ExternalProcess.RunAsync("stun",
            ["127.0.0.1:" + Port(server)], PeerTimeout);
        Assert.Contains("Primary: Open", output + errors, StringComparison.Ordinal);
    }

    [PeerFact("turnserver")]
    public async Task NatKitClient_AgainstCoturn_UdpAndTcp()
    {
        await using var coturn = await StunCoturn.StartAsync(rfc5780: false);
        var client = new StunClient(SystemNetwork.Instance, Fast);
        await using var socket = await SystemNetwork.Instance.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        var udp = await client.BindingAsync(socket, coturn.EndPoint);
        Assert.NotNull(udp);
        Assert.True(udp.IsSuccess, coturn.Log);
        Assert.Equal(socket.LocalEndPoint, udp.MappedAddress);

        await using var connection = await SystemNetwork.Instance.ConnectTcpAsync(coturn.EndPoint);
        var tcp = await client.BindingStreamAsync(connection.Stream, connection.RemoteEndPoint);
        Assert.NotNull(tcp);
        Assert.Equal(connection.LocalEndPoint, tcp.MappedAddress);
    }

    [PeerFact("turnserver")]
    public async Task NatKitDiscovery_AgainstCoturnRfc5780_SeesNoNatAndOpenFiltering()
    {
        await using var coturn = await StunCoturn.StartAsync(rfc5780: true);
        var result = await new NatBehaviorDiscovery(SystemNetwork.Instance, coturn.EndPoint, new NatDiscoveryOptions
        {
            Client = Fast,
            LocalAddress = IPAddress.Loopback,
        }).RunAsync();
        Assert.True(result.ServerSupportsRfc5780, coturn.Log);
        Assert.Equal(NatMapping.NoNat, result.Mapping);
        Assert.Equal(NatFiltering.EndpointIndependent, result.Filtering);
    }
}
