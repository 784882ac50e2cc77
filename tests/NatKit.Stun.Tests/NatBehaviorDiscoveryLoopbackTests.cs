using System.Net;
using System.Text.Json;
using NatKit.Net;
using NatKit.Stun.Client;
using NatKit.Stun.Discovery;
using NatKit.Stun.Server;

namespace NatKit.Stun.Tests;

public class NatBehaviorDiscoveryLoopbackTests
{
    private static readonly NatDiscoveryOptions Fast = new()
    {
        Client = new StunClientOptions { InitialRto = TimeSpan.FromMilliseconds(100), RequestCount = 3 },
        LocalAddress = IPAddress.Loopback,
    };

    [Fact]
    public async Task Rfc5780_OnLoopback_NoNat_EndpointIndependentFiltering_PortPreserved()
    {
        await using var server = await StunServer.StartAsync(SystemNetwork.Instance, new StunServerOptions
        {
            Primary = new IPEndPoint(IPAddress.Loopback, 0),
            AlternateAddress = IPAddress.Parse("127.0.0.2"),
            RateLimitPerSecond = 0,
        });
        var result = await new NatBehaviorDiscovery(SystemNetwork.Instance, server.UdpEndPoints[0], Fast).RunAsync();
        Assert.True(result.Reachable);
        Assert.True(result.ServerSupportsRfc5780);
        Assert.Equal(NatMapping.NoNat, result.Mapping);
        Assert.Equal(NatFiltering.EndpointIndependent, result.Filtering);
        Assert.True(result.PortPreserved);
        using var json = JsonDocument.Parse(result.ToJson());
        Assert.Equal("no-nat", json.RootElement.GetProperty("mapping").GetString());
        Assert.Equal("endpoint-independent", json.RootElement.GetProperty("filtering").GetString());
    }

    [Fact]
    public async Task ServerWithoutRfc5780_IsReported_NotGuessed()
    {
        await using var server = await StunServer.StartAsync(SystemNetwork.Instance, new StunServerOptions
        {
            Primary = new IPEndPoint(IPAddress.Loopback, 0),
            RateLimitPerSecond = 0,
        });
        var result = await new NatBehaviorDiscovery(SystemNetwork.Instance, server.UdpEndPoints[0], Fast).RunAsync();
        Assert.True(result.Reachable);
        Assert.False(result.ServerSupportsRfc5780);
        Assert.Equal(NatFiltering.Unknown, result.Filtering);
        Assert.NotEmpty(result.Notes);
    }

    [Fact]
    public async Task NoServer_IsUnreachable()
    {
        await using var blackhole = await SystemNetwork.Instance.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0));
        var result = await new NatBehaviorDiscovery(SystemNetwork.Instance, blackhole.LocalEndPoint, Fast).RunAsync();
        Assert.False(result.Reachable);
    }
}
