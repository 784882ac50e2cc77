using System.Net;
using FsCheck;
using FsCheck.Fluent;

namespace NatKit.Packets.Tests;

public sealed class Ipv4AddressTests
{
    [Theory]
    [InlineData("0.0.0.0", 0u)]
    [InlineData("10.0.0.1", 0x0A000001u)]
    [InlineData("255.255.255.255", 0xFFFFFFFFu)]
    [InlineData("192.0.2.33", 0xC0000221u)]
    public void Parse_AndFormat_RoundTrip(string text, uint value)
    {
        var a = Ipv4Address.Parse(text);
        Assert.Equal(value, a.Value);
        Assert.Equal(text, a.ToString());
    }

    [Theory]
    [InlineData("")]
    [InlineData("1.2.3")]
    [InlineData("1.2.3.4.5")]
    [InlineData("256.0.0.1")]
    [InlineData("01.2.3.4")]
    [InlineData("1..3.4")]
    [InlineData("1.2.3.4 ")]
    [InlineData("+1.2.3.4")]
    [InlineData("1.2.3.4444")]
    [InlineData("a.b.c.d")]
    public void TryParse_RejectsNonDottedQuads(string text) => Assert.False(Ipv4Address.TryParse(text, out _));

    [Fact]
    public void IPAddress_Conversion_RoundTrips() =>
        Check.One(Generators.Config, Prop.ForAll(Generators.Arb(Generators.Address), a =>
            Ipv4Address.FromIPAddress(a.ToIPAddress()) == a && IPAddress.Parse(a.ToString()).Equals(a.ToIPAddress())
            && Ipv4Address.Parse(a.ToString()) == a));

    [Fact]
    public void IPAddress_Conversion_UnmapsIpv4MappedIpv6_AndRejectsOtherIpv6()
    {
        Assert.Equal(Ipv4Address.Parse("192.0.2.1"), Ipv4Address.FromIPAddress(IPAddress.Parse("::ffff:192.0.2.1")));
        Assert.False(Ipv4Address.TryFromIPAddress(IPAddress.IPv6Loopback, out _));
        Assert.Throws<ArgumentException>(() => Ipv4Address.FromIPAddress(IPAddress.IPv6Loopback));
    }

    [Fact]
    public void Prefix_Contains_AndBounds()
    {
        var p = Ipv4Prefix.Parse("100.64.7.9/10");
        Assert.Equal(Ipv4Address.Parse("100.64.0.0"), p.Network);
        Assert.Equal(Ipv4Address.Parse("100.127.255.255"), p.Last);
        Assert.Equal(Ipv4Address.Parse("255.192.0.0"), p.Mask);
        Assert.Equal(1UL << 22, p.Size);
        Assert.True(p.Contains(Ipv4Address.Parse("100.100.1.1")));
        Assert.False(p.Contains(Ipv4Address.Parse("100.128.0.0")));
        Assert.Equal("100.64.0.0/10", p.ToString());
        Assert.True(Ipv4Prefix.Parse("0.0.0.0/0").Contains(Ipv4Address.Broadcast));
        Assert.Equal(32, Ipv4Prefix.Parse("1.2.3.4").Length);
        Assert.Equal(Ipv4Address.Parse("10.0.0.7"), Ipv4Prefix.Parse("10.0.0.0/24").At(7));
        Assert.False(Ipv4Prefix.TryParse("10.0.0.0/33", out _));
        Assert.False(Ipv4Prefix.TryParse("10.0.0.0/", out _));
        Assert.False(Ipv4Prefix.TryParse("10.0.0.0/-1", out _));
    }

    [Fact]
    public void Classification_FollowsTheRfcs()
    {
        Assert.True(Ipv4Address.Parse("172.31.255.255").IsPrivate);
        Assert.False(Ipv4Address.Parse("172.32.0.0").IsPrivate);
        Assert.True(Ipv4Address.Parse("100.64.0.1").IsSharedAddressSpace);
        Assert.True(Ipv4Address.Parse("169.254.1.1").IsLinkLocal);
        Assert.True(Ipv4Address.Parse("127.1.2.3").IsLoopback);
        Assert.True(Ipv4Address.Parse("239.1.1.1").IsMulticast);
    }
}
