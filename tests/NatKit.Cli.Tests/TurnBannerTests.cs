using System.Net;
using NatKit.Cli.Commands;
using NatKit.Turn.Policy;
using NatKit.Turn.Server;

namespace NatKit.Cli.Tests;

/// <summary>The TURN banner says where relays bind and what they announce, whether IPv6 relays exist, the peer
/// rules in force, and warns when a public listener hands out loopback relayed addresses.</summary>
public sealed class TurnBannerTests
{
    private static readonly IPEndPoint Loopback = new(IPAddress.Loopback, 3478);

    [Fact]
    public void APublicListener_WithALoopbackRelay_IsWarnedAbout()
    {
        var lines = TurnCommands.Banner(new TurnServerOptions(), [new IPEndPoint(IPAddress.Any, 3478)], "1 user(s)");
        Assert.StartsWith("warning: listening on 0.0.0.0:3478 but relaying from loopback 127.0.0.1", lines[^1], StringComparison.Ordinal);
        Assert.DoesNotContain(TurnCommands.Banner(new TurnServerOptions(), [Loopback], "1 user(s)"), l => l.StartsWith("warning", StringComparison.Ordinal));
        Assert.DoesNotContain(TurnCommands.Banner(new TurnServerOptions { RelayAddress = IPAddress.Parse("192.0.2.10") },
            [new IPEndPoint(IPAddress.Any, 3478)], "1 user(s)"), l => l.StartsWith("warning", StringComparison.Ordinal));
    }

    [Fact]
    public void TheBanner_ShowsTheExternalAddress_TheIpv6Relay_AndTheEffectiveDenyList()
    {
        var options = new TurnServerOptions
        {
            RelayAddress = IPAddress.Parse("10.0.0.5"),
            ExternalAddress = IPAddress.Parse("203.0.113.7"),
            RelayAddressV6 = IPAddress.Parse("2001:db8::5"),
            Policy = new PeerPolicy([PeerRule.Parse("10.0.0.0/8")], [PeerRule.Parse("10.9.0.0/16")]),
        };
        var lines = TurnCommands.Banner(options, [Loopback], "1 user(s)");
        Assert.Equal("relay 10.0.0.5, announced as 203.0.113.7, ports 49152-65535; IPv6 relay 2001:db8::5; realm natkit, 1 user(s)", lines[0]);
        Assert.StartsWith("peers allowed: [10.0.0.0/8]; denied: [10.9.0.0/16], the server's own addresses, and unless allowed: 0.0.0.0/8", lines[1], StringComparison.Ordinal);
        Assert.Contains("169.254.0.0/16 (link-local", lines[1], StringComparison.Ordinal);
        Assert.Contains("IPv6 relay off (IPv6 allocations refused with 440", TurnCommands.Banner(new TurnServerOptions(), [Loopback], "x")[0], StringComparison.Ordinal);
    }
}
