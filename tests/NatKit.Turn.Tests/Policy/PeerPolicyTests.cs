using System.Net;
using FsCheck;
using FsCheck.Fluent;
using NatKit.Turn.Policy;

namespace NatKit.Turn.Tests.Policy;

public class PeerPolicyTests
{
    public static TheoryData<string, string> DeniedPeers => new()
    {
        { "0.0.0.0", "unspecified" },
        { "0.1.2.3", "unspecified" },
        { "10.0.0.1", "private" },
        { "10.255.255.255", "private" },
        { "100.64.0.1", "CGNAT" },
        { "100.127.255.254", "CGNAT" },
        { "127.0.0.1", "loopback" },
        { "127.255.0.9", "loopback" },
        { "169.254.169.254", "link-local" },
        { "169.254.0.1", "link-local" },
        { "172.16.0.1", "private" },
        { "172.31.255.255", "private" },
        { "192.0.0.8", "IETF" },
        { "192.0.2.1", "documentation" },
        { "192.168.1.1", "private" },
        { "198.18.0.1", "benchmarking" },
        { "198.19.255.255", "benchmarking" },
        { "198.51.100.7", "documentation" },
        { "203.0.113.9", "documentation" },
        { "224.0.0.251", "multicast" },
        { "239.255.255.250", "multicast" },
        { "240.0.0.1", "reserved" },
        { "255.255.255.255", "broadcast" },
        { "::", "unspecified" },
        { "::1", "loopback" },
        { "::ffff:127.0.0.1", "loopback" },
        { "::ffff:10.1.2.3", "private" },
        { "::ffff:169.254.169.254", "link-local" },
        { "::ffff:0:127.0.0.1", "loopback" },
        { "::127.0.0.1", "loopback" },
        { "::ffff:0.0.0.0", "unspecified" },
        { "64:ff9b::7f00:1", "NAT64" },
        { "64:ff9b::808:808", "NAT64" },
        { "64:ff9b:1::1", "NAT64" },
        { "100::1", "discard" },
        { "2001:db8::1", "documentation" },
        { "2002:7f00:1::1", "6to4" },
        { "fc00::1", "unique local" },
        { "fd12:3456::1", "unique local" },
        { "fe80::1", "link-local" },
        { "febf::1", "link-local" },
        { "fec0::1", "site-local" },
        { "ff02::1", "multicast" },
        { "ff0e::1", "multicast" },
    };

    [Theory]
    [MemberData(nameof(DeniedPeers))]
    public void DefaultPolicy_DeniesInsideAddresses(string address, string why)
    {
        var d = PeerPolicy.Default.Check(IPAddress.Parse(address), 4000);
        Assert.False(d.Allowed, $"{address} ({why}) must be denied");
        Assert.Contains(why, d.Reason, StringComparison.OrdinalIgnoreCase);
        Assert.False(PeerPolicy.Default.CheckAddress(IPAddress.Parse(address)).Allowed);
    }

    [Theory]
    [InlineData("8.8.8.8")]
    [InlineData("1.1.1.1")]
    [InlineData("100.63.255.255")]
    [InlineData("100.128.0.0")]
    [InlineData("172.15.255.255")]
    [InlineData("172.32.0.0")]
    [InlineData("198.17.255.255")]
    [InlineData("198.20.0.0")]
    [InlineData("223.255.255.255")]
    [InlineData("169.253.255.255")]
    [InlineData("2606:4700::1111")]
    [InlineData("2001:4860:4860::8888")]
    [InlineData("::ffff:8.8.8.8")]
    [InlineData("fe00::1")]
    public void DefaultPolicy_AllowsPublicAddresses(string address)
    {
        Assert.True(PeerPolicy.Default.Check(IPAddress.Parse(address), 3478).Allowed);
    }

    [Theory]
    [MemberData(nameof(DeniedPeers))]
    public void AllowRule_OpensADeniedRange_ButADenyRuleWinsOverIt(string address, string why)
    {
        _ = why;
        var ip = IPAddress.Parse(address);
        var key = IpKey.Normalized(ip);
        var exactRule = new PeerRule(new IpPrefix(key.IsV4, key.Bits, key.IsV4 ? 32 : 128));
        var allowed = new PeerPolicy(allow: [exactRule]);
        Assert.True(allowed.Check(ip, 4000).Allowed);
        Assert.Equal(PeerPolicy.ReasonAllowRule, allowed.Check(ip, 4000).Reason);

        var both = new PeerPolicy(allow: [exactRule], deny: [exactRule]);
        Assert.False(both.Check(ip, 4000).Allowed);
        Assert.Equal(PeerPolicy.ReasonDenyRule, both.Check(ip, 4000).Reason);
    }

    [Fact]
    public void ServerListeningEndPoint_IsNeverRelayable_EvenWhenAllowed()
    {
        var listen = new IPEndPoint(IPAddress.Loopback, 3478);
        var p = new PeerPolicy(allow: [PeerRule.Parse("127.0.0.0/8")], serverEndPoints: [listen],
            ownAddresses: [IPAddress.Loopback]);
        Assert.False(p.Check(listen).Allowed);
        Assert.Equal(PeerPolicy.ReasonServerEndPoint, p.Check(listen).Reason);
        Assert.False(p.Check(IPAddress.Parse("::ffff:127.0.0.1"), 3478).Allowed);
        Assert.True(p.Check(IPAddress.Loopback, 3479).Allowed);
    }

    [Fact]
    public void ServerOwnAddress_IsDeniedOnEveryPort_UnlessAllowed()
    {
        var own = IPAddress.Parse("8.8.4.4");
        var p = new PeerPolicy(serverEndPoints: [new IPEndPoint(own, 3478)], ownAddresses: [own]);
        Assert.False(p.Check(own, 22).Allowed);
        Assert.Equal(PeerPolicy.ReasonOwnAddress, p.Check(own, 22).Reason);
        Assert.False(p.CheckAddress(own).Allowed);
        var opened = new PeerPolicy(allow: [PeerRule.Parse("8.8.4.4:5000")],
            serverEndPoints: [new IPEndPoint(own, 3478)], ownAddresses: [own]);
        Assert.True(opened.Check(own, 5000).Allowed);
        Assert.False(opened.Check(own, 22).Allowed);
    }

    [Fact]
    public void PortRules_ApplyPerPort()
    {
        var p = new PeerPolicy(allow: [PeerRule.Parse("127.0.0.0/8:5000-5010")],
            deny: [PeerRule.Parse("8.8.8.8:53")]);
        Assert.True(p.Check(IPAddress.Loopback, 5000).Allowed);
        Assert.True(p.Check(IPAddress.Loopback, 5010).Allowed);
        Assert.False(p.Check(IPAddress.Loopback, 5011).Allowed);
        Assert.False(p.Check(IPAddress.Parse("8.8.8.8"), 53).Allowed);
        Assert.True(p.Check(IPAddress.Parse("8.8.8.8"), 54).Allowed);
        // A permission (address only) is possible where some port is allowed.
        Assert.True(p.CheckAddress(IPAddress.Loopback).Allowed);
        Assert.True(p.CheckAddress(IPAddress.Parse("8.8.8.8")).Allowed);
    }

    [Theory]
    [InlineData("10.0.0.0/8", "10.0.0.0/8")]
    [InlineData("10.1.2.3", "10.1.2.3/32")]
    [InlineData("10.1.2.3:80", "10.1.2.3/32:80")]
    [InlineData("127.0.0.0/8:5000-6000", "127.0.0.0/8:5000-6000")]
    [InlineData("fc00::/7", "fc00::/7")]
    [InlineData("::1", "::1/128")]
    [InlineData("[::1]:80", "[::1/128]:80")]
    [InlineData("[fc00::/7]:80-90", "[fc00::/7]:80-90")]
    public void PeerRule_ParsesAndPrints(string text, string printed)
    {
        Assert.Equal(printed, PeerRule.Parse(text).ToString());
    }

    [Theory]
    [InlineData("")]
    [InlineData("10.0.0.0/33")]
    [InlineData("::1/129")]
    [InlineData("10.0.0.1:70000")]
    [InlineData("10.0.0.1:90-80")]
    [InlineData("[::1")]
    [InlineData("[::1]x")]
    [InlineData("nonsense")]
    [InlineData("10.0.0.1:")]
    public void PeerRule_RefusesMalformedText(string text)
    {
        Assert.False(PeerRule.TryParse(text, out _));
    }

    [Fact]
    public void Property_MappedForm_IsJudgedLikeTheIPv4Address()
    {
        var policy = new PeerPolicy(allow: [PeerRule.Parse("10.9.0.0/16")], deny: [PeerRule.Parse("8.8.0.0/16")]);
        Prop.ForAll<uint, ushort>((raw, port) =>
        {
            var v4 = new IPAddress(BitConverter.GetBytes(raw));
            return policy.Check(v4, port) == policy.Check(v4.MapToIPv6(), port);
        }).QuickCheckThrowOnFailure();
    }

    [Fact]
    public void Property_RuleParsing_NeverThrows()
    {
        Prop.ForAll<string>(s =>
        {
            _ = PeerRule.TryParse(s, out _);
            return true;
        }).QuickCheckThrowOnFailure();
    }
}
